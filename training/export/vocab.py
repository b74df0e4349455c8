"""The tokenizer's part of a GGUF: byte-level BPE vocabulary, merges, special ids, template.

llama.cpp re-implements the tokenizer from these fields, so everything the HF tokenizer
does must be expressible here: a byte-level BPE model, a pre-tokenizer llama.cpp knows by
name, and added tokens typed CONTROL (special: matched in text and never split) or
USER_DEFINED. The exporter checks the result by tokenizing probe texts both ways.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gguf

from sr3desk.model.prompts import EMBED_TOKEN
from training.export.arch import ExportError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Pre-tokenizer split patterns as tokenizer.json writes them -> llama.cpp's name for that
# pre-tokenizer. Qwen2's pattern is used by Qwen2 and Qwen2.5 alike.
_QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class Vocab:
    """Everything the GGUF's ``tokenizer.*`` keys hold."""

    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str
    bos_id: int | None
    eos_id: int
    pad_id: int | None
    add_bos: bool
    chat_template: str | None
    embed_token_id: int


def read_vocab(
    tokenizer: PreTrainedTokenizerBase,
    config: Mapping[str, Any],
    n_rows: int,
    where: str,
    pre: str | None = None,
) -> Vocab:
    """Collect the GGUF vocabulary of an HF fast tokenizer.

    ``n_rows`` is the embedding matrix's row count: llama.cpp needs one token per row, so
    spare rows past the tokenizer's end (Qwen2 checkpoints have them) become UNUSED
    placeholders. ``pre`` overrides the detected pre-tokenizer name.
    Raises ExportError for tokenizers llama.cpp cannot reproduce.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError(f"Cannot export {where}: a fast tokenizer (tokenizer.json) is needed")
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    model = state.get("model") or {}
    if model.get("type") != "BPE" or not _is_byte_level(state):
        raise ExportError(
            f"Cannot export {where}: only byte-level BPE tokenizers are supported "
            f"(this one is {model.get('type')!r})"
        )
    vocab: dict[str, int] = tokenizer.get_vocab()
    if len(vocab) > n_rows or max(vocab.values()) >= n_rows:
        raise ExportError(
            f"Cannot export {where}: the tokenizer has {len(vocab)} tokens but the model "
            f"only {n_rows} embedding rows"
        )
    embed_id = vocab.get(EMBED_TOKEN)
    if embed_id is None:
        raise ExportError(
            f"Cannot export {where}: the tokenizer has no {EMBED_TOKEN}; add it with "
            "training.modeling.ensure_embed_token and save the checkpoint again"
        )

    tokens = [f"[PAD{i}]" for i in range(n_rows)]
    types = [int(gguf.TokenType.UNUSED)] * n_rows
    for text, idx in vocab.items():
        tokens[idx] = text
        types[idx] = int(gguf.TokenType.NORMAL)
    for idx, added in tokenizer.added_tokens_decoder.items():
        types[idx] = int(gguf.TokenType.CONTROL if added.special else gguf.TokenType.USER_DEFINED)
    types[embed_id] = int(gguf.TokenType.CONTROL)

    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise ExportError(f"Cannot export {where}: the tokenizer has no end-of-sequence token")
    bos_id = tokenizer.bos_token_id
    if bos_id is None and isinstance(config.get("bos_token_id"), int):
        bos_id = int(config["bos_token_id"])
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    add_bos = bos_id is not None and bool(probe) and probe[0] == bos_id
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    return Vocab(
        tokens=tokens,
        types=types,
        merges=merges,
        pre=pre or detect_pre(state, where),
        bos_id=bos_id,
        eos_id=int(eos_id),
        pad_id=tokenizer.pad_token_id,
        add_bos=add_bos,
        chat_template=template if isinstance(template, str) else None,
        embed_token_id=int(embed_id),
    )


def _is_byte_level(state: Mapping[str, Any]) -> bool:
    decoder = state.get("decoder") or {}
    return decoder.get("type") == "ByteLevel"


def _flatten(node: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    if not node:
        return []
    if node.get("type") == "Sequence":
        return [p for child in node.get("pretokenizers", []) for p in _flatten(child)]
    return [node]


def detect_pre(state: Mapping[str, Any], where: str) -> str:
    """Name the llama.cpp pre-tokenizer that splits text like this tokenizer.json does."""
    steps = _flatten(state.get("pre_tokenizer"))
    kinds = [s.get("type") for s in steps]
    if kinds == ["Split", "ByteLevel"]:
        pattern = (steps[0].get("pattern") or {}).get("Regex")
        if pattern == _QWEN2_PATTERN and not steps[1].get("use_regex", True):
            return "qwen2"
    if (
        kinds == ["Digits", "ByteLevel"]
        and steps[0].get("individual_digits")
        and steps[1].get("use_regex", True)
        and not steps[1].get("add_prefix_space", False)
    ):
        return "smollm"  # single digits, then GPT-2's split
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    raise ExportError(
        f"Cannot export {where}: its pre-tokenizer ({' + '.join(map(str, kinds))}) has no "
        "known llama.cpp equivalent; pass pre= (--pre) with the llama.cpp name if you know it"
    )


def write_vocab(writer: gguf.GGUFWriter, vocab: Vocab) -> None:
    """Write the ``tokenizer.*`` keys."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    if vocab.bos_id is not None:
        writer.add_bos_token_id(vocab.bos_id)
    writer.add_eos_token_id(vocab.eos_id)
    if vocab.pad_id is not None:
        writer.add_pad_token_id(vocab.pad_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(False)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)
