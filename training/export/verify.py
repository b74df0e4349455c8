"""Check a written GGUF's tokenizer against the HF tokenizer it came from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sr3desk.model.prompts import ChatTemplate, PromptSet
from training.export.arch import ExportError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Texts that exercise what pre-tokenizers disagree on: digits, contractions, whitespace
# runs, newlines, non-Latin scripts, emoji, code.
PROBES = (
    "Hello world! It's 2024: 12345 items cost $3.14 each, don't they? I'LL SEE.",
    "  leading spaces\n\n\ttabs and\r\nnewlines   \n",
    "Äpfel, Straße, 東京タワー, нещо на български, 🦙.cpp and ﬁ ligatures",
    "def f(x):\n    return x ** 2  # square\n\n\n",
    "w048 7tuijk dsdfhu <|im_start|> a<|im_end|>",
)


def probe_texts(tokenizer: PreTrainedTokenizerBase, prompts: PromptSet) -> list[str]:
    """The probes plus a rendered document prompt (special tokens included)."""
    template = ChatTemplate(
        tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None,
        tokenizer.bos_token or "",
        tokenizer.eos_token or "",
    )
    return [*PROBES, template.document_prompt(prompts, PROBES[0])]


def check_tokenizer(
    tokenizer: PreTrainedTokenizerBase, gguf_path: Path, prompts: PromptSet, where: str
) -> None:
    """Raise ExportError if llama.cpp tokenizes any probe differently from ``tokenizer``.

    Loads only the GGUF's vocabulary (no weights), so this costs well under a second.
    """
    import llama_cpp
    from llama_cpp._internals import LlamaModel

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    try:
        vocab = LlamaModel(path_model=str(gguf_path), params=params, verbose=False)
    except ValueError as err:
        raise ExportError(f"Cannot export {where}: llama.cpp cannot load {gguf_path}") from err
    try:
        for text in probe_texts(tokenizer, prompts):
            ours = vocab.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            theirs = tokenizer(text, add_special_tokens=False)["input_ids"]
            if ours != theirs:
                first = next(
                    (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b),
                    min(len(ours), len(theirs)),
                )
                raise ExportError(
                    f"Cannot export {where}: llama.cpp tokenizes {text[:40]!r} differently "
                    f"from the HF tokenizer (first difference at token {first}); pass the "
                    "right pre-tokenizer name with pre= (--pre)"
                )
    finally:
        vocab.close()
