"""The llama.cpp runtime on real GGUFs: shapes, norms, the state it reads, truncation,
reasoning (emitted and forced), batching, closing."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from modelfiles import one_pass_states

from sr3desk.errors import ModelError
from sr3desk.model.base import Embedder, QueryEmbedding
from sr3desk.model.runtime import LlamaEmbedder, open_embedder


def test_documents_are_unit_rows_of_the_model_width(
    tiny_embedder: LlamaEmbedder, passages: list[str]
) -> None:
    vecs = tiny_embedder.embed_documents(passages)
    assert vecs.shape == (len(passages), tiny_embedder.info.dim)
    assert vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    # Different passages, different vectors.
    sims = vecs @ vecs.T
    assert sims[~np.eye(len(passages), dtype=bool)].max() < 0.999
    assert isinstance(tiny_embedder, Embedder)


def test_empty_input(tiny_embedder: LlamaEmbedder) -> None:
    assert tiny_embedder.embed_documents([]).shape == (0, tiny_embedder.dim)
    assert tiny_embedder.embed_documents([""]).shape == (1, tiny_embedder.dim)


def test_deterministic_and_independent_of_the_batch(
    tiny_embedder: LlamaEmbedder, passages: list[str]
) -> None:
    together = tiny_embedder.embed_documents(passages[:4])
    alone = np.stack([tiny_embedder.embed_documents([p])[0] for p in passages[:4]])
    again = tiny_embedder.embed_documents(passages[:4])
    np.testing.assert_array_equal(together, again)
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_state_is_the_one_at_the_embed_token(
    tiny_embedder: LlamaEmbedder, tiny_gguf: Path, passages: list[str]
) -> None:
    """The split decode gives the state a single full decode gives at the last token."""
    info = tiny_embedder.info
    prompts = [info.chat().document_prompt(info.prompts, p) for p in passages[:3]]
    ids = [tiny_embedder.tokenize(p) for p in prompts]
    assert all(seq[-1] == info.embed_token_id for seq in ids)
    expected = one_pass_states(tiny_gguf, ids)
    got = tiny_embedder.embed_documents(passages[:3])
    cos = np.sum(expected * got, axis=1)
    assert cos.min() > 0.99999, cos


def test_several_sequences_per_decode_agree(
    tiny_gguf: Path, tiny_embedder: LlamaEmbedder, passages: list[str]
) -> None:
    """The GPU setting (several sequences in one decode) gives the CPU setting's vectors."""
    with open_embedder(tiny_gguf, threads=2, n_ctx=512, seqs_per_batch=3) as batched:
        assert batched.n_seq == 3
        got = batched.embed_documents(passages)
    want = tiny_embedder.embed_documents(passages)
    assert np.sum(got * want, axis=1).min() > 0.99999


def test_query_without_reasoning(tiny_embedder: LlamaEmbedder, tiny_gguf: Path) -> None:
    info = tiny_embedder.info
    q = tiny_embedder.embed_query("how to parse command line options")
    assert isinstance(q, QueryEmbedding)
    assert q.reasoning is None and not q.forced
    assert q.token_ids == tiny_embedder.tokenize(
        info.chat().query_prompt(info.prompts, "how to parse command line options")
    )
    assert q.n_tokens == len(q.token_ids)
    assert float(one_pass_states(tiny_gguf, [q.token_ids])[0] @ q.vector) > 0.99999


def test_long_input_is_truncated_with_a_warning(
    tiny_gguf: Path, passages: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    long_a = " ".join(passages) * 3
    long_b = long_a + " and a different ending that falls beyond the context"
    # llama.cpp rounds contexts up to a multiple of 256.
    with open_embedder(tiny_gguf, threads=2, n_ctx=256) as small:
        assert small.n_ctx == 256
        with caplog.at_level(logging.WARNING, logger="sr3desk.model.runtime"):
            vecs = small.embed_documents([long_a, long_b])
        q = small.embed_query(long_a)
    assert "truncated" in caplog.text
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    # Only the start of the text fits: both texts share it, so they share the vector.
    np.testing.assert_allclose(vecs[0], vecs[1], atol=1e-6)
    assert len(q.token_ids) <= 256 and q.token_ids[-1] == small.info.embed_token_id


def test_reasoning_forced_when_the_token_never_comes(
    tiny_embedder: LlamaEmbedder, tiny_gguf: Path
) -> None:
    """The random tiny model never writes the token: the suffix is appended and read."""
    info = tiny_embedder.info
    q = tiny_embedder.embed_query("sorting a list in place", reason=True, max_reason_tokens=6)
    assert q.forced
    assert q.reasoning is not None
    assert q.token_ids[-1] == info.embed_token_id
    assert q.n_tokens == len(q.token_ids)
    prompt = tiny_embedder.tokenize(
        info.chat().reason_prompt(info.prompts, "sorting a list in place")
    )
    assert q.token_ids[: len(prompt)] == prompt
    tail = tiny_embedder.tokenize(info.prompts.answer_prefix + info.prompts.embed_token)
    assert q.token_ids[-len(tail) + 1 :] == tail[1:]  # the forced suffix ends the sequence
    assert 6 + len(prompt) <= len(q.token_ids) <= 6 + len(prompt) + len(tail) + 1
    np.testing.assert_allclose(np.linalg.norm(q.vector), 1.0, rtol=1e-5)
    assert float(one_pass_states(tiny_gguf, [q.token_ids])[0] @ q.vector) > 0.99999
    # Greedy: the same query reasons the same way.
    again = tiny_embedder.embed_query("sorting a list in place", reason=True, max_reason_tokens=6)
    assert again.token_ids == q.token_ids
    np.testing.assert_array_equal(again.vector, q.vector)


def test_reasoning_reads_the_token_the_model_emits(emitting_gguf: Path) -> None:
    with open_embedder(emitting_gguf, threads=2) as emb:
        q = emb.embed_query("sorting a list in place", reason=True, max_reason_tokens=16)
        info = emb.info
        prompt = emb.tokenize(info.chat().reason_prompt(info.prompts, "sorting a list in place"))
    assert not q.forced
    assert q.reasoning == ""
    assert q.token_ids == [*prompt, info.embed_token_id]
    assert float(one_pass_states(emitting_gguf, [q.token_ids])[0] @ q.vector) > 0.99999


def test_smollm2_quantizations_embed(
    smollm2_gguf: Callable[[str], Path], passages: list[str]
) -> None:
    """The default model's files run, and the two quantizations nearly agree."""
    out = {}
    for quant in ("Q8_0", "Q4_K_M"):
        with open_embedder(smollm2_gguf(quant), threads=2) as emb:
            out[quant] = emb.embed_documents(passages[:3])
            assert out[quant].shape == (3, 576)
    cos = np.sum(out["Q8_0"] * out["Q4_K_M"], axis=1)
    assert cos.min() > 0.9, cos


def test_count_tokens_is_the_text_alone(tiny_embedder: LlamaEmbedder) -> None:
    assert tiny_embedder.count_tokens("") == 0
    assert tiny_embedder.count_tokens("hello world") == len(tiny_embedder.tokenize("hello world"))


def test_a_watch_sees_every_decoded_token_within_its_block(
    tiny_embedder: LlamaEmbedder,
) -> None:
    seen: list[tuple[list[int], int, int]] = []

    def watch(parts: Sequence[tuple[Sequence[int], int, int]]) -> None:
        seen.extend((list(tokens), seq, first) for tokens, seq, first in parts)

    with tiny_embedder.watching_decodes(watch):
        got = tiny_embedder.embed_query("hello world")
    # The prompt without its last token, then the embed token alone (module docstring).
    n = len(got.token_ids)
    assert [(seq, first) for _, seq, first in seen] == [(0, 0), (0, n - 1)]
    assert [t for tokens, _, _ in seen for t in tokens] == list(got.token_ids)
    tiny_embedder.embed_query("after the block")
    assert len(seen) == 2


def test_close_is_final_and_idempotent(tiny_gguf: Path) -> None:
    emb = open_embedder(tiny_gguf, threads=1, n_ctx=64)
    assert emb.llama_model is not None
    emb.close()
    assert emb.llama_model is None
    emb.close()
    with pytest.raises(ModelError, match="closed"):
        emb.embed_documents(["x"])


def test_bad_model_is_refused_before_loading(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_text("not a model")
    with pytest.raises(ModelError, match="not a GGUF"):
        open_embedder(path)
