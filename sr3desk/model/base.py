"""What the rest of sr3desk needs from an embedding model.

The indexer, the searcher and the GUI code against :class:`Embedder`, never against
llama.cpp directly; :class:`sr3desk.model.runtime.LlamaEmbedder` is the one
implementation, opened with :func:`sr3desk.model.runtime.open_embedder`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

DEFAULT_MAX_REASON_TOKENS = 256  # reasoning budget of a model with no measured length

if TYPE_CHECKING:
    from sr3desk.model.ggufinfo import ModelInfo


@dataclass
class QueryEmbedding:
    """A query's vector and how it was obtained.

    ``vector``: float32 (dim,), L2-normalised. ``reasoning``: the text the model wrote
    before ``<|embed_token|>`` when reasoning was asked for, else None. ``forced``:
    True when the model did not emit the token within its budget and the forced
    suffix was appended. ``n_tokens``: tokens processed (prompt plus generated).
    ``token_ids``: those tokens, ending with the embed token whose state is the
    vector (empty when the embedder does not report them); parity checks feed them
    to another implementation. ``n_generated``: reasoning tokens the model wrote
    (0 without reasoning).
    """

    vector: np.ndarray
    reasoning: str | None = None
    forced: bool = False
    n_tokens: int = 0
    token_ids: list[int] = field(default_factory=list)
    n_generated: int = 0


@runtime_checkable
class Embedder(Protocol):
    """An open embedding model. Owns native resources: call ``close()`` (or use ``with``)."""

    @property
    def model_id(self) -> str:
        """Stable id of the model file's content (``ModelInfo.model_id``)."""
        ...

    @property
    def dim(self) -> int:
        """Width of the vectors."""
        ...

    @property
    def n_ctx(self) -> int:
        """Tokens per input the runtime accepts; longer inputs are truncated."""
        ...

    @property
    def info(self) -> ModelInfo:
        """What the GGUF says about the model (name, quantization, prompts, eval)."""
        ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed passages without reasoning; returns float32 (len(texts), dim), unit rows."""
        ...

    def embed_query(
        self, text: str, reason: bool = False, max_reason_tokens: int = DEFAULT_MAX_REASON_TOKENS
    ) -> QueryEmbedding:
        """Embed a search query, optionally letting the model reason first."""
        ...

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` alone (no prompt), for chunking."""
        ...

    def close(self) -> None:
        """Release native handles; idempotent."""
        ...


__all__ = ["DEFAULT_MAX_REASON_TOKENS", "Embedder", "QueryEmbedding"]
