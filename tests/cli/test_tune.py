"""`sr3desk tune`: the train extra, data from the index, the verdict, the switch and undo,
a kill mid-training. Real runs: the tiny Qwen2 model, a few SFT steps, the app's runtime."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from corpora import copy_tune_home

from sr3desk.cli import main
from sr3desk.model.ggufinfo import inspect_gguf
from sr3desk.search.calibration import from_eval, index_identity
from sr3desk.settings import Settings
from sr3desk.tuning import STAGING
from training.tune import steps_for

QUERY = "handling exceptions raised by a function"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(tune_indexed: Path, tmp_path: Path) -> Path:
    """A copy of the indexed data directory for one test."""
    return copy_tune_home(tune_indexed, tmp_path / "copy")


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def tune_args(home: Path, *extra: str) -> list[str]:
    return ["tune", "--db", str(home), "--no-teacher", "--no-index", *extra]


def served_by(home: Path, gguf: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Assert that ``sr3desk search --mode vector`` answers from the generation of the
    model in ``gguf``, with that model's query vector (its best hit and score are those
    of a search of the served vectors with it); returns what it wrote on stderr."""
    from sr3desk.index.store import Store
    from sr3desk.model.runtime import open_embedder

    assert main(["search", QUERY, "--db", str(home), "--mode", "vector", "--json"]) == 0
    out, err = capsys.readouterr()
    best = json.loads(out)["results"][0]
    with open_embedder(gguf, threads=1) as embedder, Store.open(home) as reader:
        assert reader.read_model_id == embedder.model_id
        hit = reader.vector_search(embedder.embed_query(QUERY).vector, 1)[0]
    assert best["chunk"] == hit.text and best["score"] == pytest.approx(hit.score, abs=1e-4)
    return err


def test_missing_train_extra_is_one_line(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    before = snapshot(home)
    assert main(["tune", "--db", str(home)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install -e '.[train]'" in err
    assert snapshot(home) == before and not (home / STAGING).exists()


def test_dataset_is_drawn_from_the_index_with_whole_files_held_out(
    home: Path, tiny_qwen2_dir: Path
) -> None:
    from sr3desk.index.store import Store
    from training.data.beir import load_beir
    from training.tune import Tune, build_from_index

    tune = Tune(home, Path(Settings.load(home).model_path or ""), tiny_qwen2_dir, teacher=False)
    out = home / STAGING / "data"
    manifest = build_from_index(tune, out)
    held, trained = set(manifest["documents"]["heldout"]), set(manifest["documents"]["train"])
    assert held and trained and not held & trained
    with Store.open(home) as store:
        indexed = {hit.path: hit for hit in store.sample_chunks(10_000)}
    assert held | trained == set(indexed)  # every file comes from the index, none from disk
    train, heldout = load_beir(out / "train", "train"), load_beir(out / "heldout", "test")
    assert {p.doc for p in train.corpus.values()} == trained
    assert {p.doc for p in heldout.corpus.values()} == held
    for data in (train, heldout):
        for qid in data.judged_queries():
            assert all(pid in data.corpus for pid in data.qrels[qid])
    assert heldout.judged_queries() and (out / "train" / "negatives.jsonl").is_file()


def test_losing_tune_keeps_the_default_and_says_why(
    home: Path, tiny_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index_before = snapshot(home / "index")
    # A margin no model can clear: the verdict (training.tune.decide) must keep the current.
    # Half a minute: the steps come from a probe's measured s/step.
    assert main(tune_args(home, "--margin", "1.0", "--minutes", "0.5")) == 0
    out = capsys.readouterr().out
    assert "kept the current model: it scored nDCG@10" in out and "it needs +1.000" in out
    assert "bm25" in out and "current" in out and "tuned" in out
    assert Settings.load(home).model_path == str(tiny_gguf)
    assert snapshot(home / "index") == index_before
    result = json.loads((home / STAGING / "result.json").read_text())
    assert result["wins"] is False and result["weights"] == "checkpoint"
    assert result["s_per_step"] > 0 and result["steps"] == steps_for(0.5, result["s_per_step"])
    tuned = inspect_gguf(result["tuned"])
    assert tuned.path.parent.parent == home / "models" and tuned.eval is not None
    assert tuned.eval["ndcg@10"] == round(result["figures"]["tuned"]["ndcg@10"], 4)
    assert tuned.eval["bm25_ndcg@10"] == round(result["figures"]["bm25"]["ndcg@10"], 4)
    # Measured on this index's own held-out files: evidence about this index, no other.
    assert tuned.eval["index"] == index_identity(home)
    assert from_eval(tuned.eval, index=index_identity(home)) is not None


def test_winning_tune_switches_then_undo_restores(
    home: Path, tiny_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Any tuned model clears a margin of -1: the same verdict code, the other branch.
    assert main(tune_args(home, "--margin", "-1", "--steps", "3")) == 0
    out, err = capsys.readouterr()
    # Not a terminal: one line a stage, from the run's events.
    stages = [line for line in err.splitlines() if line.startswith("tune: ")]
    assert stages == [f"tune: {s}" for s in ("data", "sft", "export", "eval", "export")]
    result = json.loads((home / STAGING / "result.json").read_text())
    assert result["wins"] is True and "is now the default model" in out
    assert Settings.load(home).model_path == result["tuned"]
    tuned_id = inspect_gguf(result["tuned"]).model_id

    # The next indexing run builds the tuned model's generation (the old one served meanwhile).
    folders = Settings.load(home).folders
    assert main(["index", *folders, "--db", str(home)]) == 0
    capsys.readouterr()
    assert main(["status", "--db", str(home), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == tuned_id

    assert main(["tune", "--undo", "--db", str(home)]) == 0
    assert Settings.load(home).model_path == str(tiny_gguf)
    assert main(["tune", "--undo", "--db", str(home)]) == 2  # nothing left to undo


def test_kill_during_training_leaves_model_and_index(
    home: Path, tiny_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings_before = (home / "settings.json").read_bytes()
    index_before = snapshot(home / "index")
    env = {**os.environ, "SR3DESK_HOME": str(home)}
    command = [sys.executable, "-m", "sr3desk", *tune_args(home, "--steps", "500")]
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        sft = home / STAGING / "sft"
        deadline = time.monotonic() + 300
        # Killed once SFT has logged its first steps: mid-training, for sure.
        while not (sft / "log.jsonl").is_file():
            assert proc.poll() is None, "tune ended before training"
            assert time.monotonic() < deadline, "no training step within 5 minutes"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (home / "settings.json").read_bytes() == settings_before
    assert snapshot(home / "index") == index_before
    assert not list((home / "models").glob("*"))
    # Search serves as before: the current model's vectors, with no note of another.
    assert "served by" not in served_by(home, tiny_gguf, capsys)
    left = {p for p in (home / STAGING).rglob("*") if p.is_file()}
    assert sft / "log.jsonl" in left
    (home / STAGING / "left-by-a-killed-run").write_text("")  # whatever a kill leaves

    # The next run starts clean (nothing the killed one wrote is left) and finishes.
    started = time.time_ns()
    assert main(tune_args(home, "--margin", "1.0", "--steps", "3")) == 0
    assert Settings.load(home).model_path == str(tiny_gguf)
    assert json.loads((home / STAGING / "result.json").read_text())["steps"] == 3
    staged = [p for p in (home / STAGING).rglob("*") if p.is_file()]
    assert staged and all(p.stat().st_mtime_ns >= started for p in staged)
    assert not (home / STAGING / "left-by-a-killed-run").exists()
    assert snapshot(home / "index") == index_before
    capsys.readouterr()
    assert "served by" not in served_by(home, tiny_gguf, capsys)


def test_a_second_tune_is_refused_while_one_runs(
    home: Path, tiny_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sr3desk.index.lock import WriterLock
    from sr3desk.tuning import TUNE_LOCK

    running = home / STAGING / "sft" / "being-written"
    running.parent.mkdir(parents=True)
    running.write_text("the running tune's checkpoint")
    with WriterLock(home, TUNE_LOCK, "sr3desk tune"):  # what the running tune holds
        assert main(tune_args(home, "--steps", "1")) != 0
    err = capsys.readouterr().err
    assert f"Another sr3desk tune (pid {os.getpid()}) is writing to {home}" in err
    assert running.read_text() == "the running tune's checkpoint"
    assert Settings.load(home).model_path == str(tiny_gguf)


def test_sft_progress_is_sent_as_events_from_its_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sr3desk.tuning import EVENT_PROGRESS, TuneEvent
    from training.tune import sft_progress

    log_file = tmp_path / "log.jsonl"
    watch = sft_progress(log_file, 40)
    watch()  # no log yet: nothing
    log_file.write_text(json.dumps({"step": 10, "s_per_step": 2.0}) + "\n" + '{"step": 20, "s_')
    watch()  # a line being written is not read
    with log_file.open("a") as fh:
        fh.write('per_step": 1.5}\n' + json.dumps({"step": 20, "ndcg@10": 0.4}) + "\n")
    watch()  # an evaluation's record is no step
    events = [TuneEvent.from_line(line) for line in capsys.readouterr().out.splitlines()]
    assert events == [
        TuneEvent(EVENT_PROGRESS, "sft", step=10, steps=40, s_per_step=2.0),
        TuneEvent(EVENT_PROGRESS, "sft", step=20, steps=40, s_per_step=1.5),
    ]


def test_short_disk_space_fails_clearly(
    tmp_path: Path, tiny_qwen2_dir: Path, tiny_gguf: Path
) -> None:
    from training.tune import TuneError, check_space, space_needed

    needed = space_needed(tiny_qwen2_dir, tiny_gguf)
    assert needed > 5 * (tiny_qwen2_dir / "model.safetensors").stat().st_size
    with pytest.raises(TuneError, match=r"not enough disk space in .*: tuning needs about"):
        check_space(tmp_path, shutil.disk_usage(tmp_path).free + 10**15)
    check_space(tmp_path, 1)


def test_a_model_shipped_as_a_delta_is_tuned_from_base_and_delta(
    tmp_path: Path, tiny_qwen2_dir: Path, tiny_gguf: Path
) -> None:
    from sr3desk.tuning import checkpoint_of

    assert checkpoint_of(tiny_gguf) == (tiny_qwen2_dir, None)  # the checkpoint beside it
    root = tmp_path / "checkout"
    delta = root / "assets" / "models" / "shipped"
    delta.mkdir(parents=True)
    (delta / "delta.json").write_text(json.dumps({"base": {"recipe": "tiny-qwen2/1"}}))
    gguf = tmp_path / "models" / "shipped.Q8_0.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"")
    assert checkpoint_of(gguf, root) is None  # the base is not built
    (root / "build" / "models").mkdir(parents=True)
    (root / "build" / "models" / "tiny-qwen2").symlink_to(tiny_qwen2_dir)
    assert checkpoint_of(gguf, root) == (root / "build" / "models" / "tiny-qwen2", delta)


def test_a_model_kept_as_a_delta_is_tuned_into_a_delta_and_tuned_again(
    home: Path, tiny_qwen2_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped model is a delta over a built base; a tuned model of it is kept the same
    way (its changed tensors beside its GGUF, not the whole checkpoint), and the next tune
    starts from base + that delta."""
    from safetensors.torch import load_file, save_file

    from sr3desk.tuning import checkpoint_of, switch_default
    from training.delta import apply_delta, extract_delta

    trained = tmp_path / "trained"
    trained.mkdir()
    for path in tiny_qwen2_dir.iterdir():
        if path.is_file() and path.suffix != ".gguf":
            shutil.copyfile(path, trained / path.name)
    weights = load_file(str(trained / "model.safetensors"))
    moved = "model.layers.3.mlp.down_proj.weight"
    weights[moved] = weights[moved] * 1.5
    save_file(weights, str(trained / "model.safetensors"), metadata={"format": "pt"})
    shipped = home / "models" / "shipped"
    extract_delta(tiny_qwen2_dir, trained, shipped, stage="sft", threads=1)
    gguf = apply_delta(shipped, tiny_qwen2_dir, shipped, threads=1).paths[-1]
    assert checkpoint_of(gguf) == (tiny_qwen2_dir, shipped)
    switch_default(home, gguf)

    assert main(tune_args(home, "--steps", "1", "--margin", "-1")) == 0
    first = json.loads((home / STAGING / "result.json").read_text())
    tuned = Path(first["tuned"])
    assert first["wins"] and Settings.load(home).model_path == str(tuned)
    kept = {p.name for p in tuned.parent.iterdir()}
    assert {"delta.json", "delta.safetensors", "reference.npy", tuned.name} <= kept
    assert not any(name.startswith("model") for name in kept)  # no whole checkpoint
    assert first["weights"] == "delta" and "delta" in first["stage_seconds"]
    assert checkpoint_of(tuned) == (tiny_qwen2_dir, tuned.parent)
    delta = json.loads((tuned.parent / "delta.json").read_text())
    assert moved in delta["tensors"]  # over the base, so the shipped change is in it too
    capsys.readouterr()

    assert main(tune_args(home, "--steps", "1", "--margin", "1.0")) == 0
    second = json.loads((home / STAGING / "result.json").read_text())
    assert second["current"] == str(tuned) and not second["wins"]
    assert "merge" in second["stage_seconds"]  # base + the tuned delta, trained again
    assert Settings.load(home).model_path == str(tuned)
