"""The GGUF exporter on both architectures: content, metadata, quantization, errors.

Models: tiny-qwen2 (Qwen2, untied, spare embedding rows) from ``make models``, and a
tiny random Llama built here on SmolLM2's real tokenizer (tied embeddings, q/k rows
reordered for llama.cpp), so every case runs in seconds. Full-size SmolLM2 is covered
by the parity tests in tests/model/test_parity.py.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
import torch

from sr3desk.errors import ModelError
from sr3desk.model import prompts as P
from sr3desk.model.ggufinfo import inspect_gguf
from sr3desk.model.runtime import open_embedder
from training import modeling
from training.export import ExportError, convert
from training.export.__main__ import main as export_main
from training.export.arch import arch_spec
from training.export.parity import document_parity

# One llama.cpp thread: tests share the CPU with each other and with torch, and
# llama.cpp's spinning thread barriers waste cycles when their cores are taken.
THREADS = 1
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "def area(r):\n    return 3.14159 * r ** 2\n",
    "Äpfel, Birnen und 12345 Zwetschgen kosten 3,50 €.",
]


@functools.cache
def _fields(path: Path) -> dict[str, Any]:
    """All metadata of a GGUF plus its tensors under "__tensors__" (parsed once per file:
    gguf's reader takes seconds over a 150k-token vocabulary)."""
    reader = gguf.GGUFReader(path)
    out: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        out[key] = field.contents()
    out["__tensors__"] = {t.name: t for t in reader.tensors}
    return out


def _cosines(gguf_path: Path, hf_dir: Path, texts: list[str]) -> np.ndarray:
    """Per-text cosine between the llama.cpp document vector and the transformers one."""
    model, tokenizer = modeling.load_model(hf_dir)
    with open_embedder(gguf_path, threads=THREADS) as emb:
        return document_parity(emb, model, tokenizer, texts).cosines


@pytest.fixture(scope="module")
def tiny_llama_dir(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer Llama on SmolLM2's tokenizer (with <|embed_token|>), tied."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = modeling.load_tokenizer(smollm2_dir)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        initializer_range=0.3,
        rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_llama_gguf(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """tiny-llama exported as F32 plus Q8_0 and Q4_K_M."""
    out = tmp_path_factory.mktemp("tiny-llama-gguf") / "tiny-llama.F32.gguf"
    return convert(tiny_llama_dir, out, out_type="f32", quants=["Q8_0", "Q4_K_M"], stage="sft")


@pytest.fixture(scope="module")
def qwen2_f16(tiny_qwen2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("qwen2-f16") / "tiny.F16.gguf"
    metrics = {"ndcg@10": 0.41, "bm25_ndcg@10": 0.38, "recall@10": 0.6, "dataset": "unit"}
    (path,) = convert(tiny_qwen2_dir, out, "f16", name="tiny-test", eval_metrics=metrics)
    return path


def test_qwen2_metadata_and_vocab(qwen2_f16: Path, tiny_qwen2_dir: Path) -> None:
    meta = _fields(qwen2_f16)
    tokenizer = modeling.load_tokenizer(tiny_qwen2_dir)
    config = json.loads((tiny_qwen2_dir / "config.json").read_text())
    assert meta["general.architecture"] == "qwen2"
    assert meta["general.file_type"] == gguf.LlamaFileType.MOSTLY_F16
    assert meta["qwen2.embedding_length"] == config["hidden_size"]
    assert meta["qwen2.block_count"] == config["num_hidden_layers"]
    assert meta["qwen2.attention.head_count_kv"] == config["num_key_value_heads"]
    assert meta["qwen2.rope.freq_base"] == pytest.approx(1_000_000.0)
    assert meta["tokenizer.ggml.model"] == "gpt2"
    assert meta["tokenizer.ggml.pre"] == "qwen2"
    assert meta["tokenizer.chat_template"] == tokenizer.chat_template

    # One token per embedding row: the tokenizer's, then UNUSED fillers for spare rows.
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    assert len(tokens) == len(types) == config["vocab_size"] > len(tokenizer)
    embed_id = tokenizer.convert_tokens_to_ids(P.EMBED_TOKEN)
    assert tokens[embed_id] == P.EMBED_TOKEN
    assert types[embed_id] == gguf.TokenType.CONTROL
    assert types[tokenizer.convert_tokens_to_ids("<|im_start|>")] == gguf.TokenType.CONTROL
    assert types[len(tokenizer)] == gguf.TokenType.UNUSED
    assert types[tokenizer.convert_tokens_to_ids("Hello")] == gguf.TokenType.NORMAL
    assert meta["tokenizer.ggml.eos_token_id"] == tokenizer.eos_token_id
    # Qwen2.5-style tokenizers have no BOS token: the config's id is used, never added.
    assert meta["tokenizer.ggml.bos_token_id"] == config["bos_token_id"]
    assert meta["tokenizer.ggml.add_bos_token"] is False

    # Untied output, q/k/v biases, 1-D tensors kept in F32.
    tensors = meta["__tensors__"]
    assert "output.weight" in tensors
    assert "blk.0.attn_q.bias" in tensors and "blk.0.attn_output.bias" not in tensors
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert tensors["blk.0.ffn_up.weight"].tensor_type == gguf.GGMLQuantizationType.F16


def test_sr3_metadata_is_read_by_the_app(qwen2_f16: Path) -> None:
    info = inspect_gguf(qwen2_f16)
    assert info.architecture == "qwen2"
    assert info.name == "tiny-test"
    assert info.stage == "base"
    assert info.quantization == "F16"
    assert info.prompts == P.PromptSet() and info.prompts.from_metadata
    assert info.eval is not None and info.eval["ndcg@10"] == pytest.approx(0.41)
    assert info.eval["dataset"] == "unit"
    meta = _fields(qwen2_f16)
    assert meta[P.KEY_VERSION] == P.METADATA_VERSION
    assert meta[P.KEY_MODEL_NAME] == "tiny-test"
    for key, value in P.PromptSet().to_metadata().items():
        assert meta[key] == value


def test_bf16_with_sidecar_metadata(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "ckpt"
    shutil.copytree(tiny_qwen2_dir, src, ignore=shutil.ignore_patterns("*.gguf"))
    custom = {"document_system": "Represent this passage.", "query_system": "Find it."}
    (src / "sr3.json").write_text(json.dumps({"name": "side", "stage": "rl", "prompts": custom}))
    (path,) = convert(src, tmp_path / "side.BF16.gguf", "bf16")

    info = inspect_gguf(path)
    assert (info.name, info.stage, info.eval, info.quantization) == ("side", "rl", None, "BF16")
    assert info.prompts.document_system == "Represent this passage."
    assert info.prompts.query_system == "Find it."
    assert info.prompts.reason_system == P.REASON_SYSTEM
    # The sidecar's prompts are the ones the runtime renders, so parity holds with them.
    assert _cosines(path, src, TEXTS).min() >= 0.99


def test_qwen2_tied_like_the_official_model(smollm2_dir: Path, tmp_path: Path) -> None:
    """Qwen2.5-1.5B ties its output to the embeddings: no output.weight, same vectors.

    (SmolLM2's smaller vocabulary keeps this quick; the architecture is what is tested.)
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM

    src = tmp_path / "tied"
    tokenizer = modeling.load_tokenizer(smollm2_dir)
    torch.manual_seed(1)
    model = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=True,
            initializer_range=0.3,
        )
    )
    model.save_pretrained(src)
    tokenizer.save_pretrained(src)
    (path,) = convert(src, tmp_path / "tied.F32.gguf", "f32")
    meta = _fields(path)
    assert meta["general.architecture"] == "qwen2"
    assert "output.weight" not in meta["__tensors__"]
    assert "blk.1.attn_k.bias" in meta["__tensors__"]
    assert _cosines(path, src, TEXTS).min() >= 0.999


def test_llama_layout_tied_and_permuted(tiny_llama_gguf: list[Path], tiny_llama_dir: Path) -> None:
    f32 = tiny_llama_gguf[0]
    meta = _fields(f32)
    assert meta["general.architecture"] == "llama"
    assert meta["tokenizer.ggml.pre"] == "smollm"
    assert meta[P.KEY_MODEL_STAGE] == "sft"
    tensors = meta["__tensors__"]
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
    # q rows are reordered for llama.cpp's rope, so they differ from the checkpoint's
    # but hold the same values per head.
    from safetensors.torch import load_file

    hf_q = load_file(tiny_llama_dir / "model.safetensors")["model.layers.0.self_attn.q_proj.weight"]
    gg_q = np.asarray(tensors["blk.0.attn_q.weight"].data).reshape(hf_q.shape)
    assert not np.allclose(gg_q, hf_q.numpy())
    np.testing.assert_allclose(np.sort(gg_q[:32], axis=0), np.sort(hf_q.numpy()[:32], axis=0))
    # The proof of the layout: llama.cpp computes what transformers computes.
    assert _cosines(f32, tiny_llama_dir, TEXTS).min() >= 0.999


def test_quantizations_load(tiny_llama_gguf: list[Path]) -> None:
    f32, q8, q4 = tiny_llama_gguf
    assert [p.name for p in tiny_llama_gguf] == [
        "tiny-llama.F32.gguf",
        "tiny-llama.Q8_0.gguf",
        "tiny-llama.Q4_K_M.gguf",
    ]
    assert inspect_gguf(q8).quantization == "Q8_0"
    assert inspect_gguf(q4).quantization == "Q4_K_M"
    assert q4.stat().st_size < q8.stat().st_size < f32.stat().st_size
    for path in (q8, q4):
        info = inspect_gguf(path)
        assert info.embed_token_id == inspect_gguf(f32).embed_token_id
        assert info.stage == "sft"  # metadata survives llama.cpp's quantizer
        with open_embedder(path, threads=THREADS) as emb:
            vec = emb.embed_documents(TEXTS[:1])
        assert vec.shape == (1, 128)
        assert np.linalg.norm(vec[0]) == pytest.approx(1.0, abs=1e-4)


def test_keep_base_false_leaves_only_quantized(tiny_llama_dir: Path, tmp_path: Path) -> None:
    paths = convert(tiny_llama_dir, tmp_path / "m.F16.gguf", "f16", ["q8_0"], keep_base=False)
    assert paths == [tmp_path / "m.Q8_0.gguf"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.Q8_0.gguf"]


# ---------------------------------------------------------------- bad inputs


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.gguf"))
    return dst


def _edit_config(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


@pytest.fixture
def qwen2_copy(tiny_qwen2_dir: Path, tmp_path: Path) -> Path:
    return _copy(tiny_qwen2_dir, tmp_path / "ckpt")


def _raises(match: str, *args: Any, **kwargs: Any) -> ExportError:
    with pytest.raises(ExportError, match=match) as info:
        convert(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, ModelError)
    return info.value


def test_missing_folder(tmp_path: Path) -> None:
    _raises("no such folder", tmp_path / "nope", tmp_path / "x.gguf")


def test_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "junk.txt").write_text("hello")
    _raises("no config.json", tmp_path, tmp_path / "x.gguf")


def test_unsupported_architecture(qwen2_copy: Path, tmp_path: Path) -> None:
    _edit_config(qwen2_copy, lambda c: c.update(architectures=["GPT2LMHeadModel"]))
    err = _raises("'GPT2LMHeadModel' is not supported", qwen2_copy, tmp_path / "x.gguf")
    assert "LlamaForCausalLM" in str(err) and "Qwen2ForCausalLM" in str(err)


def test_architecture_from_model_type_when_architectures_is_absent() -> None:
    # Configs saved without "architectures" (some converters and older tools) still say
    # model_type; the exporter falls back to it, but never overrides a listed class.
    assert arch_spec({"model_type": "qwen2"}, "x").hf_name == "Qwen2ForCausalLM"
    assert arch_spec({"model_type": "llama", "architectures": []}, "x").gguf_arch == "llama"
    with pytest.raises(ExportError, match="'gpt2' is not supported"):
        arch_spec({"model_type": "gpt2"}, "x")
    with pytest.raises(ExportError, match="'MistralForCausalLM'"):
        arch_spec({"model_type": "llama", "architectures": ["MistralForCausalLM"]}, "x")


def test_unsupported_rope_scaling(qwen2_copy: Path, tmp_path: Path) -> None:
    def yarn(c: dict[str, Any]) -> None:
        c["rope_parameters"] = {"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e6}

    _edit_config(qwen2_copy, yarn)
    _raises("rope scaling 'yarn'", qwen2_copy, tmp_path / "x.gguf")


def test_no_safetensors(qwen2_copy: Path, tmp_path: Path) -> None:
    (qwen2_copy / "model.safetensors").unlink()
    _raises("no .safetensors", qwen2_copy, tmp_path / "x.gguf")


def test_unknown_tensor_is_not_dropped(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    src = _copy(tiny_qwen2_dir, tmp_path / "ckpt")
    weights = load_file(src / "model.safetensors")
    weights["model.layers.0.mlp.extra.weight"] = torch.zeros(4, 4)
    save_file(weights, src / "model.safetensors")
    _raises("'model.layers.0.mlp.extra.weight' has no place", src, tmp_path / "x.gguf")


def test_tokenizer_without_embed_token(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    src = _copy(tiny_qwen2_dir, tmp_path / "ckpt")
    state = json.loads((src / "tokenizer.json").read_text())
    state["added_tokens"] = [t for t in state["added_tokens"] if t["content"] != P.EMBED_TOKEN]
    (src / "tokenizer.json").write_text(json.dumps(state))
    config = json.loads((src / "tokenizer_config.json").read_text())
    config.pop("extra_special_tokens", None)
    config.pop("additional_special_tokens", None)
    (src / "tokenizer_config.json").write_text(json.dumps(config))
    _raises("ensure_embed_token", src, tmp_path / "x.gguf")


def test_bad_options(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    _raises("Unknown output type 'q8'", tiny_qwen2_dir, tmp_path / "x.gguf", "q8")
    _raises("Unknown quantization 'Q9_X'", tiny_qwen2_dir, tmp_path / "x.gguf", "f16", ["Q9_X"])
    _raises("Unknown model stage", tiny_qwen2_dir, tmp_path / "x.gguf", stage="final")
    _raises("should end in .gguf", tiny_qwen2_dir, tmp_path / "x.bin")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_cli(tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.F32.gguf"
    assert export_main([str(tiny_llama_dir), str(out), "--type", "f32", "--stage", "sft"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert inspect_gguf(out).stage == "sft"

    assert export_main([str(tmp_path / "missing"), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("training.export: error: Cannot export") and "\n" not in err
