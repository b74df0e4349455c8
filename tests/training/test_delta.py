"""A trained model shipped as a delta: extract, apply, the reference-vector check, the size
cap, and the stamp ``make models`` rebuilds by.

The trained model is tiny-qwen2 with two of its four layers and its final norm changed
here (as training the top layers does); everything else, the GGUF export and the app's
runtime included, is the real path.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from sr3desk.model.ggufinfo import inspect_gguf
from training import testmodels
from training.delta import DeltaError, Manifest, apply_delta, extract_delta
from training.delta import reference as ref
from training.delta.__main__ import main as delta_main
from training.delta.manifest import TENSORS
from training.export import convert

# One llama.cpp thread: tests share the CPU with each other and with torch.
THREADS = 1
CHANGED = {
    "model.layers.2.self_attn.q_proj.weight",
    "model.layers.2.self_attn.q_proj.bias",
    "model.layers.3.mlp.down_proj.weight",
    "model.layers.3.input_layernorm.weight",
    "model.norm.weight",
}
EVAL = {"ndcg@10": 0.5, "dataset": "tiny/test"}


def _copy_checkpoint(src: Path, dst: Path) -> Path:
    """Copy an HF checkpoint folder without its GGUFs."""
    dst.mkdir(parents=True)
    for path in src.iterdir():
        if path.is_file() and path.suffix != ".gguf":
            shutil.copyfile(path, dst / path.name)
    return dst


def _edit(folder: Path, names: set[str], seed: int) -> None:
    """Add noise to ``names`` in ``folder``'s model.safetensors."""
    path = folder / "model.safetensors"
    weights = load_file(str(path))
    gen = torch.Generator().manual_seed(seed)
    for name in sorted(names):
        t = weights[name]
        # Norms start at ones and biases at zeros: those move by a fixed amount.
        scale = 0.5 * max(float(t.std()), 0.1)
        weights[name] = t + scale * torch.randn(t.shape, generator=gen)
    save_file(weights, str(path), metadata={"format": "pt"})


@pytest.fixture(scope="module")
def tiny_trained(tiny_qwen2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-qwen2 with the CHANGED tensors moved, marked as an SFT checkpoint."""
    folder = _copy_checkpoint(tiny_qwen2_dir, tmp_path_factory.mktemp("trained") / "final")
    _edit(folder, CHANGED, seed=0)
    (folder / "sr3.json").write_text(json.dumps({"name": "tiny-sft", "stage": "sft"}))
    return folder


@pytest.fixture(scope="module")
def tiny_delta(
    tiny_qwen2_dir: Path, tiny_trained: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The delta of :func:`tiny_trained`, named like the shipped model, extracted once by
    ``python -m training.delta extract`` (in process) with the figures of a
    ``training.eval --sr3-eval LABEL=X.json`` file."""
    out = tmp_path_factory.mktemp("assets") / testmodels.TRAINED
    figures = out.parent / "eval.json"
    figures.write_text(json.dumps(EVAL))
    args = ["extract", str(tiny_trained), "--base", str(tiny_qwen2_dir), "--out", str(out)]
    assert delta_main([*args, "--eval-json", str(figures), "--threads", str(THREADS)]) == 0
    return out


def test_extract_writes_only_the_changed_tensors(tiny_qwen2_dir: Path, tiny_delta: Path) -> None:
    manifest = Manifest.read(tiny_delta)
    assert set(manifest.tensors) == CHANGED
    stored = load_file(str(tiny_delta / TENSORS))
    assert set(stored) == CHANGED
    for name, t in stored.items():
        want = torch.float16 if t.dim() == 2 else torch.float32
        assert t.dtype == want, name
        assert manifest.tensors[name]["dtype"] == ("F16" if t.dim() == 2 else "F32")
    assert manifest.nbytes == sum(t.numel() * t.element_size() for t in stored.values())
    assert manifest.name == testmodels.TRAINED and manifest.stage == "sft"
    assert manifest.eval == EVAL
    assert manifest.base.recipe == testmodels.TINY_RECIPE
    assert manifest.base.tensors == len(load_file(str(tiny_qwen2_dir / "model.safetensors"))) - 5
    assert manifest.prompts["embed_token"] == "<|embed_token|>"
    kinds = {r.kind for r in manifest.references}
    assert kinds == {"document", "query"} and len(manifest.references) == len(ref.TEXTS)
    vectors = np.load(tiny_delta / "reference.npy")
    assert vectors.shape == (len(ref.TEXTS), 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_apply_gives_the_trained_model_back(
    tiny_qwen2_dir: Path, tiny_trained: Path, tiny_delta: Path, tmp_path: Path
) -> None:
    applied = apply_delta(tiny_delta, tiny_qwen2_dir, tmp_path / "out", threads=THREADS)
    f16, q8 = applied.paths
    assert [p.name for p in applied.paths] == [
        f"{testmodels.TRAINED}.F16.gguf",
        f"{testmodels.TRAINED}.Q8_0.gguf",
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([f16.name, q8.name])
    assert float(applied.cosines.min()) >= ref.MIN_COSINE
    assert set(applied.seconds) == {"merge", "check", "quantize"}
    info = inspect_gguf(q8)
    assert (info.name, info.stage, info.quantization) == (testmodels.TRAINED, "sft", "Q8_0")
    assert info.eval is not None and info.eval["ndcg@10"] == 0.5

    references = Manifest.read(tiny_delta).references
    want = np.load(tiny_delta / "reference.npy")
    # The trained checkpoint exported directly gives the same vectors: the delta is the
    # training, not an approximation of it ...
    direct = convert(tiny_trained, tmp_path / "direct.F16.gguf", out_type="f16")[0]
    assert ref.cosines(ref.embed(direct, references, THREADS), want).min() >= 0.9999
    # ... and the base alone does not: the check can tell them apart.
    base_gguf = convert(tiny_qwen2_dir, tmp_path / "base.F16.gguf", out_type="f16")[0]
    assert ref.cosines(ref.embed(base_gguf, references, THREADS), want).min() < ref.MIN_COSINE


def test_a_tampered_delta_fails_the_vector_check(
    tiny_qwen2_dir: Path, tiny_delta: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    delta = tmp_path / "delta"
    shutil.copytree(tiny_delta, delta)
    weights = load_file(str(delta / TENSORS))
    weights["model.layers.3.mlp.down_proj.weight"] *= -1  # same names, shapes and types
    save_file(weights, str(delta / TENSORS))
    out = tmp_path / "out"
    args = ["apply", str(delta), "--base", str(tiny_qwen2_dir), "--out", str(out)]
    assert delta_main([*args, "--threads", str(THREADS)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("training.delta: error: ") and len(err.splitlines()) == 1
    assert "does not reproduce the delta's reference vectors" in err
    assert "cosine" in err and "worst the " in err
    # The message names the text: one of the reference texts, quoted.
    assert any(repr(r.text)[:30] in err for r in ref.TEXTS)
    assert not any(out.glob("*.gguf"))


def test_a_wrong_base_is_refused(tiny_qwen2_dir: Path, tiny_delta: Path, tmp_path: Path) -> None:
    base = _copy_checkpoint(tiny_qwen2_dir, tmp_path / "other-base")
    _edit(base, {"model.layers.0.mlp.up_proj.weight"}, seed=2)
    with pytest.raises(DeltaError, match="was made for the base tiny-qwen2/3") as caught:
        apply_delta(tiny_delta, base, tmp_path / "out", threads=THREADS)
    assert str(base) in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_the_size_cap(
    tiny_qwen2_dir: Path, tiny_trained: Path, tiny_delta: Path, tmp_path: Path
) -> None:
    out = tmp_path / "delta"
    # The tensors alone: refused before anything is written.
    with pytest.raises(DeltaError, match=r"over the 0.01 MB cap") as caught:
        extract_delta(tiny_qwen2_dir, tiny_trained, out, max_bytes=10_000)
    assert "model.layers.3.mlp.down_proj.weight" in str(caught.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    # The tensors fit, the files in all do not.
    tensor_bytes = Manifest.read(tiny_delta).nbytes
    assert sum(p.stat().st_size for p in tiny_delta.iterdir()) > tensor_bytes + 100
    with pytest.raises(DeltaError, match=r"MB in all, over the"):
        extract_delta(tiny_qwen2_dir, tiny_trained, out, max_bytes=tensor_bytes + 100)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_nothing_to_extract(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    same = _copy_checkpoint(tiny_qwen2_dir, tmp_path / "same")
    (same / "sr3.json").write_text(json.dumps({"stage": "sft"}))
    with pytest.raises(DeltaError, match="nothing to ship"):
        extract_delta(tiny_qwen2_dir, same, tmp_path / "delta")


def _fake_smollm2(tiny_qwen2_dir: Path, models: Path) -> Path:
    """A stamped ``smollm2-sr3/`` that is tiny-qwen2 inside (what the delta was made on)."""
    base = _copy_checkpoint(tiny_qwen2_dir, models / "smollm2-sr3")
    for q in ("F16", "Q8_0", "Q4_K_M"):
        (base / f"smollm2-sr3.{q}.gguf").write_bytes(b"")
    (base / testmodels.STAMP).write_text(testmodels.SMOLLM2_RECIPE + "\n")
    return base


def test_testmodels_builds_the_trained_model_once(
    tiny_qwen2_dir: Path, tiny_delta: Path, tmp_path: Path
) -> None:
    models, assets = tmp_path / "models", tmp_path / "assets"
    _fake_smollm2(tiny_qwen2_dir, models)
    only = [testmodels.TRAINED]
    with pytest.raises(FileNotFoundError, match=r"lacks delta.json.*training.delta extract"):
        testmodels.build_all(models, None, only, assets)

    shutil.copytree(tiny_delta, assets / testmodels.TRAINED)
    assert set(testmodels.build_all(models, None, only, assets)) == {testmodels.TRAINED}
    stamp = models / testmodels.TRAINED / testmodels.STAMP
    assert (models / testmodels.TRAINED / f"{testmodels.TRAINED}.Q8_0.gguf").is_file()
    first = stamp.read_text()
    # Up to date: nothing rebuilt, the stamp touched (make compares its time).
    os.utime(stamp, (0, 0))
    assert testmodels.build_all(models, None, only, assets) == {}
    assert stamp.stat().st_mtime > 0 and stamp.read_text() == first

    # Any change to the delta's files changes the stamp and rebuilds.
    manifest = assets / testmodels.TRAINED / "delta.json"
    data = json.loads(manifest.read_text())
    data["eval"] = {"ndcg@10": 0.6}
    manifest.write_text(json.dumps(data))
    assert set(testmodels.build_all(models, None, only, assets)) == {testmodels.TRAINED}
    assert stamp.read_text() != first
    info = inspect_gguf(models / testmodels.TRAINED / f"{testmodels.TRAINED}.Q8_0.gguf")
    assert info.eval == {"ndcg@10": 0.6}
