"""Short greedy chat replies from a GGUF chat model, on the app's llama.cpp loader.

The training pipeline writes pseudo-queries with a small chat model (any chat
GGUF, not a Search-R3 one). It goes through :func:`sr3desk.model.native.load_model`
like every other load, so the buffer policy that keeps llama.cpp from crashing
on some CPUs holds here too; the high-level ``llama_cpp.Llama`` has no way to
set it.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sr3desk.errors import ModelError
from sr3desk.model.native import C, last_llama_error, load_model
from sr3desk.model.runtime import default_threads

log = logging.getLogger(__name__)


class ChatGenerator:
    """A chat GGUF that answers a list of messages greedily.

    Owns a llama.cpp model and context; ``close()`` (or ``with``) frees them.
    """

    def __init__(
        self, path: str | os.PathLike[str], n_ctx: int = 1024, threads: int | None = None
    ) -> None:
        self.path = os.fspath(path)
        self._model: Any = None
        self._ctx: Any = None
        self._model = load_model(self.path)  # type: ignore[arg-type]
        try:
            self._vocab = C.llama_model_get_vocab(self._model)
            self._template = C.llama_model_chat_template(self._model, None)
            if not self._template:
                raise ModelError(f"{self.path} has no chat template: give a chat GGUF")
            params = C.llama_context_default_params()
            params.n_ctx = n_ctx
            params.n_batch = n_ctx
            params.n_threads = params.n_threads_batch = threads or default_threads()
            self._ctx = C.llama_init_from_model(self._model, params)
            if not self._ctx:
                reason = last_llama_error() or "out of memory?"
                raise ModelError(f"Cannot create a llama.cpp context for {self.path}: {reason}")
        except BaseException:
            self.close()
            raise
        self.n_ctx = int(C.llama_n_ctx(self._ctx))
        self.n_vocab = int(C.llama_vocab_n_tokens(self._vocab))

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The chat as the model's template writes it, ready for the assistant's turn."""
        chat = (C.llama_chat_message * len(messages))()
        keep = []  # the bytes must outlive the call
        for i, m in enumerate(messages):
            role, content = m["role"].encode(), m["content"].encode()
            keep += [role, content]
            chat[i].role, chat[i].content = role, content
        size = 2 * sum(len(b) for b in keep) + 256
        while True:
            buf = ctypes.create_string_buffer(size)
            n = C.llama_chat_apply_template(self._template, chat, len(messages), True, buf, size)
            if n < 0:
                raise ModelError(f"llama.cpp cannot apply the chat template of {self.path}")
            if n <= size:
                return buf.raw[:n].decode("utf-8", errors="replace")
            size = n + 1

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` (special-token texts matched, BOS as the model wants)."""
        data = text.encode()
        cap = len(data) + 8
        ids = (C.llama_token * cap)()
        n = C.llama_tokenize(self._vocab, data, len(data), ids, cap, True, True)
        if n < 0:
            raise ModelError(f"Cannot tokenize a text of {len(data)} bytes with {self.path}")
        return list(ids[:n])

    def piece(self, token: int) -> bytes:
        """The bytes of one token (special tokens as empty)."""
        buf = ctypes.create_string_buffer(64)
        n = C.llama_token_to_piece(self._vocab, token, buf, 64, 0, False)
        if n > 64:
            buf = ctypes.create_string_buffer(n)
            n = C.llama_token_to_piece(self._vocab, token, buf, n, 0, False)
        return buf.raw[: max(0, n)]

    def reply(
        self, messages: Sequence[Mapping[str, str]], max_tokens: int, prefix: str = ""
    ) -> str:
        """Takes chat messages ({"role", "content"}) and the start of the assistant's
        answer (``prefix``, written for the model: a small model keeps to a form far
        better when its answer is begun for it); returns the rest of the greedy answer,
        at most ``max_tokens`` tokens, ended at the model's end-of-turn."""
        ids = self.tokenize(self.render(messages) + prefix)
        if len(ids) + max_tokens > self.n_ctx:
            raise ModelError(
                f"The chat takes {len(ids)} tokens; with {max_tokens} to write it exceeds "
                f"the context of {self.n_ctx}: shorten it"
            )
        C.llama_memory_clear(C.llama_get_memory(self._ctx), True)
        out = bytearray()
        batch = (C.llama_token * len(ids))(*ids)
        self._decode(batch, len(ids))
        for _ in range(max_tokens):
            logits = C.llama_get_logits_ith(self._ctx, -1)
            token = int(np.argmax(np.ctypeslib.as_array(logits, shape=(self.n_vocab,))))
            if C.llama_vocab_is_eog(self._vocab, token):
                break
            out += self.piece(token)
            one = (C.llama_token * 1)(token)
            self._decode(one, 1)
        return out.decode("utf-8", errors="replace")

    def _decode(self, tokens: Any, n: int) -> None:
        rc = C.llama_decode(self._ctx, C.llama_batch_get_one(tokens, n))
        if rc != 0:
            reason = last_llama_error() or f"code {rc}"
            raise ModelError(f"llama.cpp failed to decode with {self.path}: {reason}")

    def close(self) -> None:
        """Free the context and the model; idempotent."""
        ctx, self._ctx = self._ctx, None
        model, self._model = self._model, None
        if ctx is not None:
            C.llama_free(ctx)
        if model is not None:
            C.llama_model_free(model)

    def __enter__(self) -> ChatGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ChatGenerator"]
