"""Helpers of the runtime tests: a reference decoder, real passages, GGUF surgery.

``one_pass_states`` is a second, independent way to read a hidden state with
llama.cpp: one context with embeddings on, the whole token sequence in one decode,
pooling LAST. The runtime decodes differently (prefix without outputs, then the
embed token alone), so agreement between the two checks the runtime's reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sr3desk.model.ggufinfo import TensorSpan
from sr3desk.model.native import C, load_model


def one_pass_states(gguf: Path, seqs: Sequence[Sequence[int]], n_ctx: int = 2048) -> np.ndarray:
    """Final-norm states at the last token of each sequence, one full decode each.

    Returns float32 (len(seqs), dim), L2-normalised.
    """
    model = load_model(gguf)
    params = C.llama_context_default_params()
    params.n_ctx = params.n_batch = n_ctx
    params.n_ubatch = 512
    params.n_threads = params.n_threads_batch = 2
    params.embeddings = True
    params.pooling_type = C.LLAMA_POOLING_TYPE_LAST
    ctx = C.llama_init_from_model(model, params)
    batch = C.llama_batch_init(n_ctx, 0, 1)
    dim = C.llama_model_n_embd(model)
    out = []
    try:
        for ids in seqs:
            C.llama_memory_clear(C.llama_get_memory(ctx), True)
            for i, tok in enumerate(ids):
                batch.token[i] = tok
                batch.pos[i] = i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = 1
            batch.n_tokens = len(ids)
            assert C.llama_decode(ctx, batch) == 0
            ptr = C.llama_get_embeddings_seq(ctx, 0)
            out.append(np.ctypeslib.as_array(ptr, shape=(dim,)).copy())
    finally:
        C.llama_batch_free(batch)
        C.llama_free(ctx)
        C.llama_model_free(model)
    vecs = np.stack(out).astype(np.float32)
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def real_passages(sources: Path, n: int, min_chars: int = 300) -> list[str]:
    """The first ``n`` paragraphs of at least ``min_chars`` from the Python docs."""
    out: list[str] = []
    for path in sorted((sources / "library").glob("*.rst.txt")):
        for para in path.read_text(encoding="utf-8").split("\n\n"):
            if len(para.strip()) >= min_chars:
                out.append(para.strip())
                if len(out) == n:
                    return out
    return out


def f32_tensor(path: Path, span: TensorSpan) -> np.memmap:
    """A writable view of an F32 tensor in a GGUF file (numpy shape: ggml dims reversed)."""
    assert span.type_name == "F32", span
    shape = tuple(reversed(span.dims))
    return np.memmap(path, dtype=np.float32, mode="r+", offset=span.offset, shape=shape)
