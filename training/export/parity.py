"""Parity between the app's llama.cpp runtime and transformers on the same model.

For a GGUF exported from an HF checkpoint, the vector the runtime reads at
``<|embed_token|>`` must equal transformers' final-norm state there, up to the GGUF's
precision. Used by tests/model/test_parity.py (a few passages) and bench/parity.py
(hundreds, for the README's table). Passages and queries are real text: paragraphs and
section titles of the Python documentation's reST sources.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sr3desk.model.prompts import PromptSet

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from sr3desk.model.runtime import LlamaEmbedder

# A reST section title: a text line followed by a line of one repeated punctuation mark.
_UNDERLINE = re.compile(r"^([=\-~^*#+\"'`])\1{2,}\s*$")
_MARKUP = re.compile(r"^\s*(\.\.|:\w+:|\*\*\*|===|---)")


def _rst_files(root: Path) -> list[Path]:
    files = sorted(root.rglob("*.rst.txt"))
    if not files:
        raise FileNotFoundError(f"no .rst.txt files under {root}")
    return files


def rst_passages(
    root: Path, n: int, seed: int = 0, min_chars: int = 300, max_chars: int = 1200
) -> list[str]:
    """``n`` passages from the reST files under ``root``, chosen reproducibly by ``seed``.

    A passage is a run of consecutive paragraphs (directives and titles dropped) grown
    to at least ``min_chars`` and cut at ``max_chars``: roughly one index chunk.
    """
    candidates: list[str] = []
    for path in _rst_files(root):
        paragraphs = path.read_text(encoding="utf-8", errors="replace").split("\n\n")
        run = ""
        for para in paragraphs:
            para = para.strip("\n")
            lines = para.splitlines()
            if not para.strip() or _MARKUP.match(para) or any(_UNDERLINE.match(x) for x in lines):
                continue
            run = f"{run}\n\n{para}" if run else para
            if len(run) >= min_chars:
                candidates.append(run[:max_chars])
                run = ""
    if len(candidates) < n:
        raise ValueError(f"only {len(candidates)} passages under {root}, {n} asked for")
    return random.Random(seed).sample(candidates, n)


def rst_titles(root: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` section titles from the reST files under ``root``: short, query-like text."""
    titles: list[str] = []
    for path in _rst_files(root):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        for above, line in itertools.pairwise(lines):
            text = above.strip()
            if _UNDERLINE.match(line) and 12 <= len(text) <= 80 and text[0].isalpha():
                titles.append(text)
    unique = sorted(set(titles))
    if len(unique) < n:
        raise ValueError(f"only {len(unique)} titles under {root}, {n} asked for")
    return random.Random(seed).sample(unique, n)


@dataclass(frozen=True)
class Parity:
    """Cosines between runtime and transformers vectors for one kind of input."""

    kind: str
    cosines: np.ndarray  # (n,): runtime vector i against transformers vector i
    vectors: np.ndarray  # (n, d): the runtime's vectors

    @property
    def min(self) -> float:
        """Smallest cosine."""
        return float(self.cosines.min())

    @property
    def mean(self) -> float:
        """Mean cosine."""
        return float(self.cosines.mean())


def hf_vectors(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    kind: str,
    prompts: PromptSet,
) -> np.ndarray:
    """Transformers' unit vectors for documents or queries: float32 (n, d)."""
    from training import modeling

    if kind not in ("document", "query"):
        raise ValueError(f"kind must be document or query, not {kind!r}")
    vecs = modeling.embed_texts(
        model, tokenizer, texts, "document" if kind == "document" else "query", prompts
    )
    return vecs.numpy().astype(np.float32)


def hf_states_at_end(model: PreTrainedModel, sequences: Sequence[Sequence[int]]) -> np.ndarray:
    """Transformers' unit final-norm state at the last position of each id sequence.

    For reasoning mode: the sequences are the ids the runtime evaluated, ending at the
    embed token it read (emitted or forced). Returns float32 (n, d).
    """
    import torch
    import torch.nn.functional as F

    decoder = model.get_decoder()
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for ids in sequences:
            x = torch.tensor([list(ids)], device=device)
            hidden = decoder(input_ids=x).last_hidden_state[0, -1]  # (d,)
            out.append(F.normalize(hidden.float(), dim=-1).cpu().numpy())
    return np.stack(out).astype(np.float32)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (n, d) arrays."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def document_parity(
    embedder: LlamaEmbedder,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    ref: np.ndarray | None = None,
) -> Parity:
    """Runtime ``embed_documents`` against transformers for the same texts.

    ``ref``: transformers' vectors when already computed (they do not depend on the
    GGUF's quantization, only on its prompts).
    """
    ours = embedder.embed_documents(list(texts))
    if ref is None:
        ref = hf_vectors(model, tokenizer, texts, "document", embedder.info.prompts)
    return Parity("document", cosines(ours, ref), ours)


def query_parity(
    embedder: LlamaEmbedder,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    queries: Sequence[str],
    ref: np.ndarray | None = None,
) -> Parity:
    """Runtime ``embed_query`` (no reasoning) against transformers; ``ref`` as above."""
    ours = np.stack([embedder.embed_query(q).vector for q in queries])
    if ref is None:
        ref = hf_vectors(model, tokenizer, queries, "query", embedder.info.prompts)
    return Parity("query", cosines(ours, ref), ours)


@contextmanager
def recorded_ids(embedder: LlamaEmbedder) -> Iterator[list[int]]:
    """Record the token ids the runtime decodes for sequence 0 during one call.

    Yields a list that is filled, when the block ends, with the ids in position order:
    exactly what llama.cpp evaluated (prompt, generated tokens, embed token). Watches
    the runtime's decode step for the block's duration
    (:meth:`~sr3desk.model.runtime.LlamaEmbedder.watching_decodes`); the runtime's
    own code runs as is.
    """
    by_pos: dict[int, int] = {}

    def record(parts: Sequence[tuple[Sequence[int], int, int]]) -> None:
        for tokens, seq, first in parts:
            if seq == 0:
                for k, token in enumerate(tokens):
                    by_pos[first + k] = int(token)

    ids: list[int] = []
    with embedder.watching_decodes(record):
        yield ids
    if sorted(by_pos) != list(range(len(by_pos))):
        raise RuntimeError("the runtime decoded a sequence with gaps in its positions")
    ids.extend(by_pos[p] for p in range(len(by_pos)))


@dataclass(frozen=True)
class ReasonParity:
    """Reasoning-mode parity: cosines plus how often the model emitted the token itself."""

    parity: Parity
    emitted: int
    forced: int
    lengths: list[int]  # tokens evaluated per query


def reason_parity(
    embedder: LlamaEmbedder,
    model: PreTrainedModel,
    queries: Sequence[str],
    max_reason_tokens: int,
) -> ReasonParity:
    """Generate with the runtime (reasoning on), then run transformers over the same ids.

    The runtime's vector is the state at the embed token it read (emitted or forced);
    transformers' is its final-norm state at the last of the same ids.
    """
    ours, sequences, forced = [], [], 0
    embed_id = embedder.info.embed_token_id
    for query in queries:
        with recorded_ids(embedder) as ids:
            result = embedder.embed_query(query, reason=True, max_reason_tokens=max_reason_tokens)
        if not ids or ids[-1] != embed_id:
            raise RuntimeError(f"the runtime's reasoning for {query!r} did not end at the token")
        ours.append(result.vector)
        sequences.append(ids)
        forced += int(result.forced)
    ref = hf_states_at_end(model, sequences)
    return ReasonParity(
        Parity("reason", cosines(np.stack(ours), ref), np.stack(ours)),
        emitted=len(queries) - forced,
        forced=forced,
        lengths=[len(s) for s in sequences],
    )


def token_id_mismatches(
    embedder: LlamaEmbedder,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    kind: str,
) -> list[int]:
    """Indices of texts whose rendered prompt llama.cpp and HF tokenize differently."""
    from training import modeling

    prompts = embedder.info.prompts
    rendered = modeling.render_prompts(
        tokenizer, texts, "document" if kind == "document" else "query", prompts
    )
    bad = []
    for i, text in enumerate(rendered):
        if embedder.tokenize(text) != tokenizer.encode(text, add_special_tokens=False):
            bad.append(i)
    return bad
