"""The tiny end-to-end chain on the CPU: data -> SFT -> RL -> export -> the app's runtime
-> eval, with the shipped ``training/configs/tiny-cpu.yaml``.

The SFT run is the session fixture ``tiny_sft`` (tests/training/conftest.py): the
acceptance run itself, data built from the Python docs. RL continues from its final
checkpoint for two steps; the run's untrained base, the SFT and the RL checkpoints are
exported to GGUF and evaluated through ``sr3desk.model.runtime`` on the held-out split,
which shares no document with training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sr3desk.model.ggufinfo import inspect_gguf
from sr3desk.model.runtime import open_embedder
from training import eval as train_eval
from training import rl
from training.checkpoints import BASE, FINAL
from training.export import convert

# The tiny SFT run (session fixture) and RL: a few CPU minutes alone, much longer on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = ROOT / "training" / "configs" / "tiny-cpu.yaml"

# The tiny_sft fixture gives a TinyRun: config, data_dir, out_dir, final, log.
TinyRun = Any


def test_chain_sft_rl_export_runtime_eval(
    tiny_sft: TinyRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # RL from the SFT model: `python -m training.rl --config tiny-cpu.yaml --init SFT/final`,
    # two steps, and no periodic full refresh (the start already encodes the corpus).
    rl_out = tmp_path / "rl"
    args = [
        "--config",
        str(TINY_CONFIG),
        "--init",
        str(tiny_sft.final),
        f"data.dir={tiny_sft.data_dir}",
        f"rl.out_dir={rl_out}",
        "rl.steps=2",
        "rl.env.refresh_every=0",
        "eval.enabled=false",
    ]
    assert rl.main(args) == 0
    assert json.loads((rl_out / FINAL / "sr3.json").read_text())["stage"] == "rl"

    ggufs = {
        "base": convert(tiny_sft.out_dir / BASE, tmp_path / "base.F32.gguf", out_type="f32"),
        "sft": convert(tiny_sft.final, tmp_path / "sft.F32.gguf", out_type="f32"),
        "rl": convert(rl_out / FINAL, tmp_path / "rl.F32.gguf", out_type="f32"),
    }
    paths = {label: files[0] for label, files in ggufs.items()}
    for label, path in paths.items():
        with open_embedder(path, threads=1) as embedder:  # the app loads each of them
            assert embedder.info.stage == label
            vec = embedder.embed_documents(["def f(x): return x"])
            assert vec.shape == (1, embedder.dim)
    with open_embedder(paths["rl"], threads=1) as embedder:
        q = embedder.embed_query("read a file line by line", reason=True, max_reason_tokens=8)
        assert abs(float((q.vector**2).sum()) - 1.0) < 1e-4

    results = tmp_path / "eval.json"
    code = train_eval.main(
        [
            "--config",
            str(TINY_CONFIG),
            "--data",
            str(tiny_sft.data_dir / "heldout"),
            *[f"--model={label}={path}" for label, path in paths.items()],
            "--threads",
            "1",
            "--json",
            str(results),
            "--sr3-eval",
            f"sft={tiny_sft.final}",
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    labels = [line.split()[0] for line in table.splitlines() if line.strip()]
    assert {"bm25", "base", "sft", "rl"} <= set(labels), table  # one table, four rows
    report = json.loads(results.read_text())
    rows = report["results"]
    assert set(rows) == {"bm25", "base", "sft", "rl"}
    # The acceptance criterion: SFT above the untrained base on the held-out split.
    assert rows["sft"]["ndcg@10"] > rows["base"]["ndcg@10"] + 0.02, table
    assert rows["sft"]["recall@10"] > rows["base"]["recall@10"], table
    assert report["sr3_eval"]["sft"]["bm25_ndcg@10"] == pytest.approx(
        rows["bm25"]["ndcg@10"], abs=1e-4
    )

    # The figures travel into the GGUF the app reads (sr3.eval).
    with_eval = convert(tiny_sft.final, tmp_path / "sft-eval.F32.gguf", out_type="f32")[0]
    info = inspect_gguf(with_eval)
    assert info.eval is not None
    assert info.eval["ndcg@10"] == pytest.approx(rows["sft"]["ndcg@10"], abs=1e-4)
    assert info.eval["dataset"] == report["dataset"]
