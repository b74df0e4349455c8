"""Fixtures of the runtime tests: real passages, open embedders, a rewired tiny model."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from modelfiles import f32_tensor, real_passages

from sr3desk.model.ggufinfo import inspect_gguf, tensor_spans
from sr3desk.model.runtime import LlamaEmbedder, open_embedder


@pytest.fixture(scope="session")
def passages(python_docs_sources: Path) -> list[str]:
    """Eight real reST paragraphs."""
    return real_passages(python_docs_sources, 8)


@pytest.fixture(scope="session")
def tiny_embedder(tiny_gguf: Path) -> Iterator[LlamaEmbedder]:
    """The tiny Qwen2 model opened once for the session."""
    with open_embedder(tiny_gguf, threads=2) as embedder:
        yield embedder


@pytest.fixture(scope="session")
def emitting_gguf(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny model rewired to emit ``<|embed_token|>`` as its first token.

    One hidden dimension ``d`` is made constant: every token embedding holds 1 there
    and no layer writes to it, so after the final norm it is positive at every
    position. The output head reads only that dimension, and only for the embed
    token, so greedy decoding always picks it. Everything else is the real model.
    """
    info = inspect_gguf(tiny_gguf)
    path = tmp_path_factory.mktemp("emitting") / "tiny-emitting.F32.gguf"
    shutil.copyfile(tiny_gguf, path)
    d = 0
    spans = {s.name: s for s in tensor_spans(path)}
    f32_tensor(path, spans["token_embd.weight"])[:, d] = 1.0
    for name, span in spans.items():
        if name.endswith(("attn_output.weight", "ffn_down.weight")):
            f32_tensor(path, span)[d, :] = 0.0
    f32_tensor(path, spans["output_norm.weight"])[d] = 1.0
    head = f32_tensor(path, spans["output.weight"])
    head[:] = 0.0
    head[info.embed_token_id, d] = 10.0
    head.flush()
    return path
