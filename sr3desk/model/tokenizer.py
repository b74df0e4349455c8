"""Tokenization through llama.cpp, exactly as the embedding model tokenizes.

:func:`open_tokenizer` loads only a GGUF's vocabulary (no weights), so the chunker
can count tokens as the embedding model will, at a fraction of the cost of opening
the model. The runtime reuses :class:`LlamaTokenizer` on its full model.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from sr3desk.errors import ModelError
from sr3desk.model.ggufinfo import ModelInfo, inspect_gguf
from sr3desk.model.native import C, load_model

log = logging.getLogger(__name__)


@runtime_checkable
class TokenCounter(Protocol):
    """Anything that counts tokens the way the embedding model does."""

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` (no prompt, no BOS)."""
        ...


class LlamaTokenizer:
    """A GGUF's tokenizer through llama.cpp. Owns its model handle when opened with
    :func:`open_tokenizer`; call ``close()`` or use ``with``."""

    def __init__(self, model: Any, info: ModelInfo, owns_model: bool) -> None:
        self._model = model
        self._vocab = C.llama_model_get_vocab(model)
        self._owns = owns_model
        self.info = info
        self.n_vocab = int(C.llama_vocab_n_tokens(self._vocab))
        # Scratch buffer reused between calls; grown on demand.
        self._buf = (C.llama_token * 4096)()
        self._lock = threading.Lock()

    def tokenize(self, text: str, special: bool = True) -> list[int]:
        """Token ids of ``text`` with no BOS/EOS added.

        ``special``: match special-token texts (``<|im_start|>``...) as single tokens,
        as transformers does; prompts are tokenized this way.
        """
        raw = text.encode("utf-8")
        with self._lock:
            self._check_open()
            n = C.llama_tokenize(
                self._vocab, raw, len(raw), self._buf, len(self._buf), False, special
            )
            if n < 0:
                self._buf = (C.llama_token * (-n + 16))()
                n = C.llama_tokenize(
                    self._vocab, raw, len(raw), self._buf, len(self._buf), False, special
                )
            if n < 0:
                raise ModelError(f"Cannot tokenize a {len(raw)}-byte text with {self.info.path}")
            return list(self._buf[:n])

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` alone."""
        return len(self.tokenize(text))

    def detokenize(self, ids: Sequence[int], special: bool = False) -> str:
        """Text of ``ids``; special tokens rendered only when ``special`` is true."""
        if not ids:
            return ""
        arr = (C.llama_token * len(ids))(*ids)
        size = 8 * len(ids) + 64
        with self._lock:
            self._check_open()
            for _ in range(2):
                out = ctypes.create_string_buffer(size)
                n = C.llama_detokenize(self._vocab, arr, len(ids), out, size, False, special)
                if n >= 0:
                    return out.raw[:n].decode("utf-8", errors="replace")
                size = -n + 16
        raise ModelError(f"Cannot detokenize {len(ids)} tokens with {self.info.path}")

    def is_end_of_generation(self, token: int) -> bool:
        """True for end-of-turn/end-of-text tokens."""
        return bool(C.llama_vocab_is_eog(self._vocab, token))

    def _check_open(self) -> None:
        if self._model is None:
            raise ModelError(f"The tokenizer of {self.info.path} is closed")

    def close(self) -> None:
        """Free the model handle if this tokenizer owns it; idempotent."""
        with self._lock:
            model, self._model = self._model, None
        if model is not None and self._owns:
            C.llama_model_free(model)

    def __enter__(self) -> LlamaTokenizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Safety net only; owners call close() so the handle goes at a known time.
        if getattr(self, "_model", None) is not None:
            self.close()


def open_tokenizer(path: str | os.PathLike[str]) -> LlamaTokenizer:
    """Open the vocabulary of a Search-R3 GGUF (no weights) for token counting.

    Takes the .gguf path; returns a :class:`LlamaTokenizer`. Raises ModelError for a
    missing, damaged or non-Search-R3 file.
    """
    info = inspect_gguf(path)
    model = load_model(info.path, vocab_only=True)
    return LlamaTokenizer(model, info, owns_model=True)


__all__ = ["LlamaTokenizer", "TokenCounter", "open_tokenizer"]
