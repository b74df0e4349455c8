"""The Hugging Face side of a Search-R3 model: load, add the embed token, encode, embed.

The embedding is the final-norm hidden state (``last_hidden_state``) at the last
``<|embed_token|>`` of each sequence, L2-normalised; the prompts are rendered with
:class:`sr3desk.model.prompts.ChatTemplate` on the tokenizer's own chat template, so
training, export and the app's llama.cpp runtime all see the same strings and token ids.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import torch
import torch.nn.functional as F

from sr3desk.model.prompts import EMBED_TOKEN, ChatTemplate, PromptSet

if TYPE_CHECKING:
    from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

PromptKind = Literal["document", "query", "reason"]

# The new token's row starts as the mean of the rows of this word's tokens (leading space:
# it stands mid-sentence, as in "The embedding is <|embed_token|>").
INIT_WORD = " embedding"


def load_model(
    model_dir: str | Path,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load an HF causal LM and its tokenizer from ``model_dir``, in eval mode.

    Returns ``(model, tokenizer)``; the model is on ``device`` in ``dtype``.
    """
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype)
    cast(torch.nn.Module, model).to(device)
    model.eval()
    return model, load_tokenizer(model_dir)


def load_tokenizer(model_dir: str | Path) -> PreTrainedTokenizerBase:
    """Load the tokenizer saved beside a checkpoint; a pad token is set if it has none."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if tokenizer.pad_token is None:
        # Padding positions are masked out and never read, so any known token will do.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def embed_token_id(tokenizer: PreTrainedTokenizerBase, token: str = EMBED_TOKEN) -> int | None:
    """Return the id of ``token`` in ``tokenizer``, or None when it is not in the vocabulary."""
    vocab = tokenizer.get_vocab()
    return vocab.get(token)


def ensure_embed_token(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, token: str = EMBED_TOKEN
) -> int:
    """Make ``token`` a special token of ``tokenizer`` with a usable row in ``model``.

    A token the tokenizer and the model both have is left alone (a trained model keeps
    its row). Otherwise it is added as an additional special token, the embedding matrix
    grows only if the id does not fit (Qwen2 checkpoints carry spare rows past the
    tokenizer's end), and the new input row (and output row, when untied) is set to the
    mean of the rows of the tokens of " embedding". That keeps the first layer's input at
    the scale and in the region of real words and gives the untrained token a meaning
    near its name; the mean of all rows would be a short, featureless vector (random
    directions cancel), far from anything the model saw in training. Returns the id.
    """
    word_ids = tokenizer.encode(INIT_WORD, add_special_tokens=False)
    token_id = embed_token_id(tokenizer, token)
    n_rows = _rows(model.get_input_embeddings()).shape[0]
    if token_id is not None and token_id < n_rows:
        return token_id
    if token_id is None:
        # transformers 5 renamed "additional" special tokens to "extra" ones.
        params = _params(tokenizer.add_special_tokens)
        kind = "extra" if "replace_extra_special_tokens" in params else "additional"
        tokenizer.add_special_tokens(
            {f"{kind}_special_tokens": [token]}, **{f"replace_{kind}_special_tokens": False}
        )
        token_id = embed_token_id(tokenizer, token)
        if token_id is None:  # pragma: no cover - add_special_tokens always registers it
            raise RuntimeError(f"tokenizer did not accept {token}")
    if token_id >= n_rows:
        model.resize_token_embeddings(token_id + 1, mean_resizing=False)
    with torch.no_grad():
        inp = _rows(model.get_input_embeddings())
        inp[token_id] = inp[word_ids].mean(dim=0)
        head = model.get_output_embeddings()
        if head is not None and _rows(head).data_ptr() != inp.data_ptr():
            out = _rows(head)
            out[token_id] = out[word_ids].mean(dim=0)
    log.info("added %s as token %d (row from %d word pieces)", token, token_id, len(word_ids))
    return token_id


def _rows(module: torch.nn.Module) -> torch.Tensor:
    """The (vocab, d) weight of an embedding or LM head."""
    return cast(torch.Tensor, module.weight)


def _params(func: object) -> set[str]:
    import inspect

    return set(inspect.signature(func).parameters)  # type: ignore[arg-type]


def chat_template(tokenizer: PreTrainedTokenizerBase) -> ChatTemplate:
    """Return the app's :class:`ChatTemplate` over the tokenizer's own chat template."""
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    return ChatTemplate(template, tokenizer.bos_token or "", tokenizer.eos_token or "")


def render_prompts(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    kind: PromptKind,
    prompts: PromptSet | None = None,
) -> list[str]:
    """Render each text as a ``kind`` prompt, exactly as the app's runtime does.

    ``document`` and ``query`` prompts end at the embed token; ``reason`` prompts end at
    the assistant header (the model writes its analysis and the token itself).
    """
    prompts = prompts or PromptSet()
    template = chat_template(tokenizer)
    render = {
        "document": template.document_prompt,
        "query": template.query_prompt,
        "reason": template.reason_prompt,
    }[kind]
    return [render(prompts, text) for text in texts]


def encode_prompts(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    kind: PromptKind,
    prompts: PromptSet | None = None,
    max_length: int | None = None,
) -> BatchEncoding:
    """Render and tokenize ``texts`` into a right-padded batch for :func:`embed_at_token`.

    Returns a BatchEncoding with ``input_ids`` and ``attention_mask``, both (B, T) long
    tensors. Right padding keeps every row's positions 0..n-1, as in the unpadded run
    llama.cpp does. Special tokens come from the template only (none are added), and
    ``max_length`` truncates the user's text, never the prompt's tail with the token.
    """
    rendered = render_prompts(tokenizer, texts, kind, prompts)
    if max_length is not None:
        rendered = [
            _fit(tokenizer, text, prompt, kind, prompts, max_length)
            for text, prompt in zip(texts, rendered, strict=True)
        ]
    return tokenizer(
        rendered,
        add_special_tokens=False,
        padding=True,
        padding_side="right",
        return_tensors="pt",
    )


def _fit(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    prompt: str,
    kind: PromptKind,
    prompts: PromptSet | None,
    max_length: int,
) -> str:
    """Return ``prompt`` re-rendered with ``text`` cut so the whole is <= max_length tokens."""
    n_prompt = len(tokenizer.encode(prompt, add_special_tokens=False))
    if n_prompt <= max_length:
        return prompt
    text_ids = tokenizer.encode(text, add_special_tokens=False)
    keep = max(0, len(text_ids) - (n_prompt - max_length))
    # Decoding a cut can re-tokenize a little differently; shrink until it fits.
    while True:
        cut = str(tokenizer.decode(text_ids[:keep]))
        fitted = render_prompts(tokenizer, [cut], kind, prompts)[0]
        if keep == 0 or len(tokenizer.encode(fitted, add_special_tokens=False)) <= max_length:
            return fitted
        keep -= 1


def token_positions(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, token_id: int
) -> torch.Tensor:
    """Return the position of the last ``token_id`` in each row: (B, T) -> (B,) long.

    Raises ValueError naming the rows that lack the token (e.g. cut by truncation).
    """
    hits = (input_ids == token_id) & attention_mask.bool()  # (B, T)
    missing = (~hits.any(dim=1)).nonzero().flatten().tolist()
    if missing:
        raise ValueError(f"rows {missing} have no embed token (id {token_id})")
    seq = torch.arange(input_ids.shape[1], device=input_ids.device)
    return torch.where(hits, seq, -1).amax(dim=1)  # (B,)


def gather_at_token(
    hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_id: int
) -> torch.Tensor:
    """Pick each row's state at its last ``token_id``: hidden (B, T, d) -> (B, d), not normed.

    For callers that already ran the model (e.g. with ``output_hidden_states=True``, whose
    last entry is the final-norm state) and want the LM loss from the same forward pass.
    """
    pos = token_positions(input_ids, attention_mask, token_id)  # (B,)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, pos]  # (B, d)


def embed_at_token(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_id: int,
) -> torch.Tensor:
    """The Search-R3 embedding: final-norm state at the last embed token, L2-normalised.

    Takes (B, T) ``input_ids`` and ``attention_mask``; returns (B, d) in the model's dtype.
    Runs only the decoder stack (no LM head: its vocab-sized output is not needed).
    Gradients flow when called outside ``torch.no_grad()``.
    """
    decoder = model.get_decoder()
    device = next(model.parameters()).device
    out = decoder(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device))
    hidden = out.last_hidden_state  # (B, T, d), after the final RMSNorm
    vec = gather_at_token(hidden, input_ids.to(device), attention_mask.to(device), token_id)
    return F.normalize(vec, dim=-1)  # (B, d)


def embed_texts(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    kind: Literal["document", "query"] = "document",
    prompts: PromptSet | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
) -> torch.Tensor:
    """Embed ``texts`` without gradients in batches; returns (len(texts), d) float32 on CPU."""
    prompts = prompts or PromptSet()
    token_id = embed_token_id(tokenizer, prompts.embed_token)
    if token_id is None:
        raise ValueError(f"the tokenizer has no {prompts.embed_token}: call ensure_embed_token")
    chunks = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = encode_prompts(
                tokenizer, texts[start : start + batch_size], kind, prompts, max_length
            )
            vec = embed_at_token(model, batch["input_ids"], batch["attention_mask"], token_id)
            chunks.append(vec.float().cpu())
    if not chunks:
        return torch.empty(0, model.config.hidden_size)
    return torch.cat(chunks)


__all__ = [
    "chat_template",
    "embed_at_token",
    "embed_texts",
    "embed_token_id",
    "encode_prompts",
    "ensure_embed_token",
    "gather_at_token",
    "load_model",
    "load_tokenizer",
    "render_prompts",
    "token_positions",
]
