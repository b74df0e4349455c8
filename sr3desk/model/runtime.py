"""The Search-R3 embedding runtime on llama.cpp (through llama-cpp-python's C API).

A vector is the final-norm hidden state at ``<|embed_token|>``: the prompt (the
model's chat template around the text, ending "The embedding is <|embed_token|>")
is decoded and the state at its last position is read. The high-level
``llama_cpp.Llama`` cannot do what is needed here (read the state at one token
after generating with logits, control outputs per token), so this module drives
the C API directly and owns its handles.

How a prompt is decoded: with embeddings switched on, llama.cpp outputs every
token of a batch and so runs the output head over all of them (for SmolLM2-135M,
a 49k-row head beside 106M other weights). Measured on 2 CPU cores, decoding
whole prompts that way gave 35 tokens/s where a bare decode loop gave 47 (bench/
embed.py --single-pass; at one thread, 11% more CPU per token). So all tokens but
the last are decoded with embeddings off and no output (the last layer then only
fills the KV cache), and the last token, the embed token, is decoded alone with
embeddings on and pooling LAST: one extra single-token step per text, and by
causal attention the same state as a single pass (tests/model/test_runtime.py).
Reasoning queries generate greedily with logits on and read the state the same
way at the token the model emitted.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from sr3desk.errors import ModelError
from sr3desk.model.base import DEFAULT_MAX_REASON_TOKENS, QueryEmbedding
from sr3desk.model.cpufeatures import physical_cores
from sr3desk.model.ggufinfo import ModelInfo, inspect_gguf
from sr3desk.model.native import C, last_llama_error, load_model
from sr3desk.model.prompts import forced_tail
from sr3desk.model.tokenizer import LlamaTokenizer

log = logging.getLogger(__name__)

DEFAULT_N_CTX = 2048  # tokens per input: chunks are ~256, reasoning queries < 1k
# Sequences decoded together. On 2 CPU cores more sequences per decode did not pay:
# 53, 50, 43 and 53 tokens/s for 1, 2, 4 and 8 (bench/embed.py --batch-sweep,
# smollm2-sr3 Q8_0, 40 passages). A GPU is underused by one ~300-token sequence, so
# it gets several; that default is not measured (no GPU on the build machine).
CPU_SEQS_PER_BATCH = 1
GPU_SEQS_PER_BATCH = 8

# Token runs ``(tokens, seq_id, first_pos)`` about to be decoded: see watching_decodes.
DecodeWatch = Callable[[Sequence[tuple[Sequence[int], int, int]]], None]


def default_threads() -> int:
    """Threads for llama.cpp: the physical cores this process may use
    (:func:`~sr3desk.model.cpufeatures.physical_cores`)."""
    return physical_cores()


class LlamaEmbedder:
    """An open Search-R3 GGUF: embeds documents and queries. Implements ``Embedder``.

    Owns a llama.cpp model, context and batch; ``close()`` (or ``with``) frees them.
    Calls are serialised by a lock, so one embedder can serve several threads.
    """

    def __init__(
        self,
        info: ModelInfo,
        threads: int | None = None,
        gpu_layers: int = 0,
        n_ctx: int | None = None,
        seqs_per_batch: int | None = None,
    ) -> None:
        self.info = info
        self.model_id = info.model_id
        self.dim = info.dim
        self.threads = threads or default_threads()
        self._lock = threading.RLock()
        self._model: Any = None
        self._ctx: Any = None
        self._batch: Any = None
        self._decode_watch: DecodeWatch | None = None

        offload = gpu_layers != 0 and bool(C.llama_supports_gpu_offload())
        if gpu_layers != 0 and not offload:
            log.warning("llama.cpp was built without GPU support; %s runs on the CPU", info.name)
        self.gpu_layers = gpu_layers if offload else 0
        n_seq = seqs_per_batch or (GPU_SEQS_PER_BATCH if offload else CPU_SEQS_PER_BATCH)
        n_ctx_seq = n_ctx or DEFAULT_N_CTX
        if info.n_ctx_train:
            n_ctx_seq = min(n_ctx_seq, info.n_ctx_train)
        if n_ctx_seq < 32:
            raise ModelError(f"n_ctx={n_ctx_seq} is too small; use at least 32 tokens")

        self._model = load_model(info.path, gpu_layers=self.gpu_layers)
        try:
            self._tok = LlamaTokenizer(self._model, info, owns_model=False)
            self._open_context(n_seq, n_ctx_seq)
        except BaseException:
            self.close()
            raise
        self._chat = info.chat()
        self.stats_tokens = 0  # tokens decoded for embeddings (bench/progress)

    def _open_context(self, n_seq: int, n_ctx_seq: int) -> None:
        params = C.llama_context_default_params()
        params.n_ctx = n_ctx_seq * n_seq
        params.n_batch = n_ctx_seq * n_seq
        params.n_ubatch = min(params.n_batch, 2048 if self.gpu_layers else 512)
        params.n_seq_max = n_seq
        params.n_threads = self.threads
        params.n_threads_batch = self.threads
        params.embeddings = False
        params.pooling_type = C.LLAMA_POOLING_TYPE_LAST
        # One KV stream per sequence: attention never spans sequences.
        params.kv_unified = False
        self._ctx = C.llama_init_from_model(self._model, params)
        if not self._ctx:
            reason = last_llama_error() or "out of memory?"
            raise ModelError(
                f"Cannot create a llama.cpp context for {self.info.path} "
                f"(n_ctx={params.n_ctx}): {reason}; try a smaller n_ctx"
            )
        self.n_seq = int(C.llama_n_seq_max(self._ctx))
        self.n_ctx = int(C.llama_n_ctx_seq(self._ctx))
        self.n_batch = int(C.llama_n_batch(self._ctx))
        self._mem = C.llama_get_memory(self._ctx)
        self._batch = C.llama_batch_init(self.n_batch, 0, 1)
        n = self.n_batch
        self._b_token = np.ctypeslib.as_array(self._batch.token, shape=(n,))
        self._b_pos = np.ctypeslib.as_array(self._batch.pos, shape=(n,))
        self._b_nseq = np.ctypeslib.as_array(self._batch.n_seq_id, shape=(n,))
        self._b_out = np.ctypeslib.as_array(self._batch.logits, shape=(n,))
        self._b_nseq[:] = 1
        for i in range(n):
            self._batch.seq_id[i][0] = 0
        self._slot_seq = np.zeros(n, dtype=np.int32)  # seq id each batch slot holds
        self._embeddings_on = False
        log.info(
            "Opened %s (%s, dim %d): n_ctx %d, %d sequence(s) per decode, %d threads",
            self.info.name,
            self.info.quantization,
            self.dim,
            self.n_ctx,
            self.n_seq,
            self.threads,
        )

    # -- public API -----------------------------------------------------------------

    @property
    def llama_model(self) -> Any:
        """The llama.cpp model handle (None once closed). The embedder owns and frees
        it; a caller may build its own context on the same weights (bench/embed.py)."""
        return self._model

    @contextmanager
    def watching_decodes(self, watch: DecodeWatch) -> Iterator[None]:
        """Call ``watch(parts)`` before each decode while the block runs.

        ``parts`` are the token runs about to be decoded, ``(tokens, seq_id,
        first_pos)``: exactly what llama.cpp evaluates (the GGUF parity check
        records them). Takes the callback; yields nothing.
        """
        self._decode_watch = watch
        try:
            yield
        finally:
            self._decode_watch = None

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` alone (no prompt), special-token texts matched."""
        return self._tok.tokenize(text)

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` alone, for the chunker."""
        return len(self._tok.tokenize(text))

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed passages without reasoning.

        Takes texts; returns float32 (len(texts), dim), each row L2-normalised. Texts
        longer than the context are truncated (logged).
        """
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        prompts = self.info.prompts
        seqs = [
            self._fit(lambda t: self._chat.document_prompt(prompts, t), text, self.n_ctx)
            for text in texts
        ]
        i = 0
        while i < len(seqs):
            group = [seqs[i]]
            used = len(seqs[i])
            while (
                len(group) < self.n_seq
                and i + len(group) < len(seqs)
                and used + len(seqs[i + len(group)]) <= self.n_batch
            ):
                used += len(seqs[i + len(group)])
                group.append(seqs[i + len(group)])
            # The lock is taken per decode group, not per call, so a query from another
            # thread (search while indexing) waits for one group at most.
            with self._lock:
                self._check_open()
                out[i : i + len(group)] = self._embed_prompts(group)
            i += len(group)
        return _normalise(out)

    def embed_query(
        self, text: str, reason: bool = False, max_reason_tokens: int = DEFAULT_MAX_REASON_TOKENS
    ) -> QueryEmbedding:
        """Embed a search query.

        Without ``reason``: one pass over the query prompt (ends at the embed token).
        With ``reason``: the model writes a short analysis greedily, up to
        ``max_reason_tokens``, and the state is read at the embed token it emits; if
        it emits none, "The embedding is <|embed_token|>." is appended and
        ``forced`` is True. Returns a :class:`QueryEmbedding` (unit vector).
        """
        prompts = self.info.prompts
        if not reason:
            ids = self._fit(lambda t: self._chat.query_prompt(prompts, t), text, self.n_ctx)
            with self._lock:
                self._check_open()
                vec = self._embed_prompts([ids])[0]
            return QueryEmbedding(_normalise(vec[None, :])[0], None, False, len(ids), ids)
        return self._reason(text, max(1, max_reason_tokens))

    def close(self) -> None:
        """Free the llama.cpp batch, context and model; idempotent."""
        with self._lock:
            batch, self._batch = self._batch, None
            ctx, self._ctx = self._ctx, None
            model, self._model = self._model, None
            if batch is not None:
                C.llama_batch_free(batch)
            if ctx is not None:
                C.llama_free(ctx)
            if model is not None:
                tok = getattr(self, "_tok", None)
                if tok is not None:
                    tok.close()
                C.llama_model_free(model)

    def __enter__(self) -> LlamaEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # Safety net only: owners call close() so memory is returned at a known time.
        if getattr(self, "_model", None) is not None:
            self.close()

    # -- prompts --------------------------------------------------------------------

    def _fit(self, render: Callable[[str], str], text: str, budget: int) -> list[int]:
        """Tokenize ``render(text)``, cutting ``text`` until the prompt fits ``budget``.

        The scaffolding (template, system prompt, answer prefix, embed token) is
        kept whole; only the user's text is shortened, at a token boundary.
        """
        ids = self._tok.tokenize(render(text))
        if len(ids) > budget:
            n_full = len(ids)
            text_ids = self._tok.tokenize(text)
            keep = max(0, len(text_ids) - (n_full - budget))
            while True:
                cut = self._tok.detokenize(text_ids[:keep], special=True).rstrip("\ufffd")
                ids = self._tok.tokenize(render(cut))
                if len(ids) <= budget or keep == 0:
                    break
                keep = max(0, keep - max(1, len(ids) - budget))
            log.warning(
                "Input of %d tokens truncated to %d: the context holds %d per input",
                n_full,
                len(ids),
                budget,
            )
            if len(ids) > budget:
                raise ModelError(
                    f"The prompt of {self.info.path} alone takes {len(ids)} tokens, more than "
                    f"the context of {budget}; use a larger n_ctx"
                )
        return ids

    def _check_prompt(self, ids: list[int]) -> None:
        if not ids or ids[-1] != self.info.embed_token_id:
            raise ModelError(
                f"The prompt of {self.info.path} does not end at "
                f"{self.info.prompts.embed_token} after tokenization; the model's chat "
                "template or tokenizer is broken: re-export it"
            )

    # -- decoding -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._ctx is None:
            raise ModelError(f"The embedder of {self.info.path} is closed")

    def _set_embeddings(self, on: bool) -> None:
        if on != self._embeddings_on:
            C.llama_set_embeddings(self._ctx, on)
            self._embeddings_on = on

    def _decode(self, parts: Sequence[tuple[Sequence[int], int, int]], output: bool) -> None:
        """Decode token runs ``(tokens, seq_id, first_pos)``; with ``output``, the last
        token of each run is an output (logits or embeddings, per the mode)."""
        if self._decode_watch is not None:
            self._decode_watch(parts)
        n = 0
        for tokens, seq, pos0 in parts:
            m = len(tokens)
            if m == 0:
                continue
            self._b_token[n : n + m] = tokens
            self._b_pos[n : n + m] = np.arange(pos0, pos0 + m, dtype=np.int32)
            self._b_out[n : n + m] = 0
            if output:
                self._b_out[n + m - 1] = 1
            if seq != 0 or self.n_seq > 1:
                for j in range(n, n + m):
                    if self._slot_seq[j] != seq:
                        self._batch.seq_id[j][0] = seq
                        self._slot_seq[j] = seq
            n += m
        if n == 0:
            return
        self._batch.n_tokens = n
        rc = C.llama_decode(self._ctx, self._batch)
        if rc != 0:
            reason = last_llama_error() or f"code {rc}"
            raise ModelError(f"llama.cpp failed to decode with {self.info.path}: {reason}")

    def _state(self, seq: int) -> np.ndarray:
        ptr = C.llama_get_embeddings_seq(self._ctx, seq)
        if not ptr:
            raise ModelError(f"llama.cpp returned no embedding for {self.info.path}")
        return np.ctypeslib.as_array(ptr, shape=(self.dim,)).copy()

    def _embed_prompts(self, seqs: Sequence[list[int]]) -> np.ndarray:
        """States at the last token of each prompt (all ending at the embed token)."""
        for ids in seqs:
            self._check_prompt(ids)
        C.llama_memory_clear(self._mem, False)
        self._set_embeddings(False)
        self._decode([(ids[:-1], j, 0) for j, ids in enumerate(seqs)], output=False)
        self._set_embeddings(True)
        self._decode([(ids[-1:], j, len(ids) - 1) for j, ids in enumerate(seqs)], output=True)
        self.stats_tokens += sum(len(ids) for ids in seqs)
        return np.stack([self._state(j) for j in range(len(seqs))])

    def _reason(self, text: str, max_new: int) -> QueryEmbedding:
        prompts = self.info.prompts
        forced_ids = self._tok.tokenize(" " + prompts.answer_prefix + prompts.embed_token)
        budget = self.n_ctx - max_new - len(forced_ids)
        if budget < 16:
            raise ModelError(
                f"n_ctx={self.n_ctx} leaves no room for {max_new} reasoning tokens; "
                "raise n_ctx or lower max_reason_tokens"
            )
        ids = self._fit(lambda t: self._chat.reason_prompt(prompts, t), text, budget)
        embed_id = self.info.embed_token_id
        generated: list[int] = []
        emitted = False
        with self._lock:
            self._check_open()
            C.llama_memory_clear(self._mem, False)
            self._set_embeddings(False)
            self._decode([(ids, 0, 0)], output=True)
            pos = len(ids)
            n_vocab = self._tok.n_vocab
            for _ in range(max_new):
                logits = np.ctypeslib.as_array(C.llama_get_logits_ith(self._ctx, -1), (n_vocab,))
                token = int(np.argmax(logits))
                if token == embed_id:
                    emitted = True
                    break
                if self._tok.is_end_of_generation(token):
                    break
                generated.append(token)
                self._decode([([token], 0, pos)], output=True)
                pos += 1
            reasoning = self._tok.detokenize(generated)
            if emitted:
                tail = [embed_id]
            else:
                tail = self._tok.tokenize(
                    forced_tail(reasoning, prompts.answer_prefix) + prompts.embed_token
                )
                self._check_prompt(tail)
                log.info(
                    "The model emitted no %s in %d tokens; appended it",
                    prompts.embed_token,
                    len(generated),
                )
            self._decode([(tail[:-1], 0, pos)], output=False)
            pos += len(tail) - 1
            self._set_embeddings(True)
            self._decode([(tail[-1:], 0, pos)], output=True)
            vec = self._state(0)
        self.stats_tokens += pos + 1
        shown = reasoning.strip()
        if shown.endswith(prompts.answer_prefix.strip()):
            shown = shown[: -len(prompts.answer_prefix.strip())].rstrip()
        all_ids = [*ids, *generated, *tail]
        return QueryEmbedding(
            _normalise(vec[None, :])[0], shown, not emitted, pos + 1, all_ids, len(generated)
        )


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    return (vectors / norms).astype(np.float32, copy=False)


def open_embedder(
    path: str | os.PathLike[str],
    threads: int | None = None,
    gpu_layers: int = 0,
    n_ctx: int | None = None,
    seqs_per_batch: int | None = None,
) -> LlamaEmbedder:
    """Open a Search-R3 GGUF for embedding.

    Takes the .gguf path and runtime settings (threads: None = physical cores;
    gpu_layers: layers offloaded, -1 = all; n_ctx: tokens per input, default 2048;
    seqs_per_batch: sequences per decode, default by device). Returns a
    :class:`LlamaEmbedder`; raises ModelError (one line) for unusable files.
    """
    info = inspect_gguf(path)
    return LlamaEmbedder(info, threads, gpu_layers, n_ctx, seqs_per_batch)


__all__ = [
    "DEFAULT_MAX_REASON_TOKENS",
    "DEFAULT_N_CTX",
    "LlamaEmbedder",
    "default_threads",
    "open_embedder",
]
