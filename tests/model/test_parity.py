"""The app's llama.cpp runtime reads the same vector transformers computes.

For real passages and section titles of the Python docs, the runtime's vector (final-
norm state at ``<|embed_token|>``) must match transformers' ``last_hidden_state`` there:
cosine >= 0.999 at F32/F16, >= 0.99 at Q8_0, >= 0.95 at Q4_K_M, for documents, queries
and reasoning mode (transformers runs over the very ids the runtime generated). Each
vector must also be closer to its own reference than to any other text's, so a runtime
that read the wrong position or ignored the text would fail even where all vectors of a
model are alike. bench/parity.py measures the same over hundreds of passages.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sr3desk.model.ggufinfo import inspect_gguf
from sr3desk.model.prompts import EMBED_TOKEN
from sr3desk.model.runtime import LlamaEmbedder, open_embedder
from training import modeling
from training.export import convert
from training.export import parity as P

# One llama.cpp thread: tests share the CPU with each other and with torch, and
# llama.cpp's spinning thread barriers waste cycles when their cores are taken.
THREADS = 1
THRESHOLD = {"F32": 0.999, "F16": 0.999, "Q8_0": 0.99, "Q4_K_M": 0.95}
N_PASSAGES = {"tiny-qwen2": 16, "smollm2-sr3": 8}
N_QUERIES = {"tiny-qwen2": 8, "smollm2-sr3": 4}
CASES = [
    ("tiny-qwen2", "F32"),
    ("smollm2-sr3", "F16"),
    ("smollm2-sr3", "Q8_0"),
    ("smollm2-sr3", "Q4_K_M"),
]


@dataclass
class Reference:
    """A checkpoint loaded in transformers with its reference vectors."""

    model: Any
    tokenizer: Any
    passages: list[str]
    queries: list[str]
    doc_ref: np.ndarray
    query_ref: np.ndarray


@pytest.fixture(scope="module")
def references(
    tiny_qwen2_dir: Path, smollm2_dir: Path, python_docs_sources: Path
) -> Iterator[Callable[[str], Reference]]:
    """Factory: the transformers side of a test model, built once per module."""
    dirs = {"tiny-qwen2": tiny_qwen2_dir, "smollm2-sr3": smollm2_dir}
    cache: dict[str, Reference] = {}

    def get(name: str) -> Reference:
        if name not in cache:
            model, tokenizer = modeling.load_model(dirs[name])
            passages = P.rst_passages(python_docs_sources, N_PASSAGES[name], seed=1)
            queries = P.rst_titles(python_docs_sources, N_QUERIES[name], seed=1)
            quant = "F16" if name == "smollm2-sr3" else "F32"
            ps = inspect_gguf(_gguf(name, tiny_qwen2_dir, smollm2_dir, quant)).prompts
            cache[name] = Reference(
                model,
                tokenizer,
                passages,
                queries,
                P.hf_vectors(model, tokenizer, passages, "document", ps),
                P.hf_vectors(model, tokenizer, queries, "query", ps),
            )
        return cache[name]

    yield get
    cache.clear()


def _gguf(name: str, tiny_dir: Path, smol_dir: Path, quant: str) -> Path:
    folder = tiny_dir if name == "tiny-qwen2" else smol_dir
    return folder / f"{name}.{quant}.gguf"


@pytest.fixture
def embedder(
    request: pytest.FixtureRequest, tiny_qwen2_dir: Path, smollm2_dir: Path
) -> Iterator[LlamaEmbedder]:
    name, quant = request.param
    with open_embedder(_gguf(name, tiny_qwen2_dir, smollm2_dir, quant), threads=THREADS) as emb:
        yield emb


def _own_text_closest(ours: np.ndarray, ref: np.ndarray) -> None:
    """Each runtime vector is nearest to its own text's reference vector."""
    sims = ours @ ref.T  # (n, n)
    assert list(np.argmax(sims, axis=1)) == list(range(len(ours)))


@pytest.mark.parametrize("embedder", CASES, indirect=True, ids=lambda c: "-".join(c))
def test_document_parity(embedder: LlamaEmbedder, references: Callable[[str], Reference]) -> None:
    ref = references(embedder.info.name)
    result = P.document_parity(embedder, ref.model, ref.tokenizer, ref.passages, ref.doc_ref)
    assert result.min >= THRESHOLD[embedder.info.quantization], result.cosines
    _own_text_closest(result.vectors, ref.doc_ref)


@pytest.mark.parametrize("embedder", CASES, indirect=True, ids=lambda c: "-".join(c))
def test_query_parity(embedder: LlamaEmbedder, references: Callable[[str], Reference]) -> None:
    ref = references(embedder.info.name)
    result = P.query_parity(embedder, ref.model, ref.tokenizer, ref.queries, ref.query_ref)
    assert result.min >= THRESHOLD[embedder.info.quantization], result.cosines
    _own_text_closest(result.vectors, ref.query_ref)


@pytest.mark.parametrize("embedder", [CASES[0], CASES[1]], indirect=True, ids=lambda c: "-".join(c))
def test_token_ids_identical(
    embedder: LlamaEmbedder, references: Callable[[str], Reference]
) -> None:
    ref = references(embedder.info.name)
    assert P.token_id_mismatches(embedder, ref.tokenizer, ref.passages, "document") == []
    assert P.token_id_mismatches(embedder, ref.tokenizer, ref.queries, "query") == []


@pytest.mark.parametrize("embedder", [CASES[1], CASES[3]], indirect=True, ids=lambda c: "-".join(c))
def test_reason_parity_forced(
    embedder: LlamaEmbedder, references: Callable[[str], Reference]
) -> None:
    """SmolLM2 was never taught the token: it reasons, the runtime appends it."""
    ref = references(embedder.info.name)
    result = P.reason_parity(embedder, ref.model, ref.queries[:2], max_reason_tokens=12)
    assert result.forced == 2
    assert all(n > 12 for n in result.lengths)  # the reasoning is part of what was compared
    assert result.parity.min >= THRESHOLD[embedder.info.quantization], result.parity.cosines


@pytest.fixture(scope="module")
def eager_dir(
    tiny_qwen2_dir: Path, tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """tiny-qwen2 changed so that it emits <|embed_token|> by itself while reasoning.

    The random model keeps writing a few favourite tokens; the embed token's output row
    becomes a slightly scaled copy of the favourite's row, so wherever the model would
    write that token it writes <|embed_token|> instead.
    """
    from collections import Counter

    from safetensors.torch import load_file, save_file

    written: Counter[int] = Counter()
    with open_embedder(tiny_gguf, threads=THREADS) as emb:
        for query in REASON_QUERIES:
            prompt = emb.info.chat().reason_prompt(emb.info.prompts, query)
            n_prompt = len(emb.tokenize(prompt))
            with P.recorded_ids(emb) as ids:
                emb.embed_query(query, reason=True, max_reason_tokens=16)
            # The 16 tokens the model wrote (a forced tail, if any, comes after them).
            written.update(ids[n_prompt : n_prompt + 16])
    out = tmp_path_factory.mktemp("eager")
    shutil.copytree(
        tiny_qwen2_dir, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.gguf")
    )
    weights = load_file(out / "model.safetensors")
    embed_id = modeling.load_tokenizer(out).convert_tokens_to_ids(EMBED_TOKEN)
    favourite = next(t for t, _ in written.most_common() if t != embed_id)
    weights["lm_head.weight"][embed_id] = weights["lm_head.weight"][favourite] * 1.05
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    convert(out, out / "eager.F32.gguf", "f32", name="tiny-qwen2-eager")
    return out


REASON_QUERIES = [
    "how do I read a file line by line",
    "difference between a list and a tuple",
    "sorting a dictionary by value",
    "what does the GIL do",
]


def test_reason_parity_emitted(eager_dir: Path) -> None:
    """The state is read at the token the model emitted, and matches transformers'."""
    model, _ = modeling.load_model(eager_dir)
    queries = REASON_QUERIES
    with open_embedder(eager_dir / "eager.F32.gguf", threads=THREADS) as emb:
        result = P.reason_parity(emb, model, queries, max_reason_tokens=48)
        plain = np.stack([emb.embed_query(q).vector for q in queries])
    assert result.emitted >= 1
    assert result.parity.min >= THRESHOLD["F32"], result.parity.cosines
    # Reasoning changed what was read: not the plain query's vector.
    assert np.max(np.sum(plain * result.parity.vectors, axis=1)) < 0.999
