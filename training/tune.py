"""Tune the current model to the user's own index: data, SFT, export, A/B, the verdict.

    python -m training.tune --home DATA_DIR --model CURRENT.gguf --base HF_DIR [--minutes 60]

``sr3desk tune`` runs this (the app never imports torch). Everything is written in
``DATA_DIR/tune-staging/`` (:data:`STAGING`), removed at the start of each run, so a
run killed at any moment leaves the index and the settings as they were, and the
next run starts clean. Stages, each the command a user could run alone:

1. data: passages sampled from the index's active generation (not from the disk),
   grouped by file; whole files held out; pseudo-queries from headings and cloze
   sentences (:mod:`training.data.build`), the teacher's filter where it is installed;
2. a probe of a few SFT steps measures s/step; the real run's steps fill the time asked;
3. SFT on the current model's checkpoint with the CPU recipe's config, RL off;
4. export to F16 and Q8_0 GGUFs;
5. A/B through the app's runtime (:mod:`training.eval`): BM25, the current model and
   the tuned one on the held-out files' pseudo-queries;
6. the verdict (:func:`decide`): the tuned model wins only when it beats the current
   one by :data:`MARGIN` nDCG@10; its figures go into its ``sr3.eval``, and it is moved
   into ``DATA_DIR/models/`` with its checkpoint (so it can be tuned again).

What it did goes to ``tune-staging/result.json``. Its parent (``sr3desk tune``, the
window) follows it by the events it writes on its standard output, one JSON object a
line (:class:`sr3desk.tuning.TuneEvent`): each stage as it begins, the SFT steps
planned, SFT's progress (read here from SFT's own ``log.jsonl``), the result, or the
error; its log goes to standard error. The parent switches the default model when the
tuned one won: only the move into the models folder and that switch touch anything
outside the staging folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sr3desk.errors import IndexAccessError
from sr3desk.index.lock import WriterLock
from sr3desk.tuning import (
    EVENT_ERROR,
    EVENT_PLAN,
    EVENT_PROGRESS,
    EVENT_RESULT,
    EVENT_STAGE,
    RESULT,
    STAGING,
    TRAIN_SHARE,
    TUNE_LOCK,
    TuneEvent,
)
from training import stages
from training.checkpoints import FINAL, LOG_FILE
from training.config import BuildConfig, read_yaml
from training.data.beir import CorpusEntry
from training.data.build import DocPassages, split_dataset, write_dataset
from training.stages import StageError, export_command, python_module

log = logging.getLogger(__name__)

CONFIG = Path(__file__).parent / "configs" / "smollm2-135m-cpu.yaml"
# The tuned model must beat the current one by this much held-out nDCG@10 on the
# user's own pseudo-queries to become the default: less is within the noise of a few
# dozen queries, and a switch costs re-embedding the whole index.
MARGIN = 0.02
PROBE_STEPS = 3
MIN_STEPS = 5
# Free space asked beyond the run's own files (checkpoints, GGUFs, data).
SPARE_BYTES = 200 * 1024 * 1024
# The teacher's filter drops a pseudo-query whose passage it ranks below this.
TEACHER_K = 20


class TuneError(RuntimeError):
    """A stage failed or cannot start; the message says which and why."""


@dataclass
class Verdict:
    """The A/B's outcome: ``wins``, the figures compared (nDCG@10) and why, in one line."""

    wins: bool
    current: float
    tuned: float
    bm25: float | None
    margin: float
    reason: str


def decide(rows: dict[str, dict[str, float]], margin: float = MARGIN) -> Verdict:
    """The verdict on training.eval's result rows (``current``, ``tuned``, ``bm25``).

    The tuned model wins when its held-out nDCG@10 is at least the current model's plus
    ``margin``.

    >>> decide({"current": {"ndcg@10": 0.5}, "tuned": {"ndcg@10": 0.53}}).wins
    True
    >>> decide({"current": {"ndcg@10": 0.5}, "tuned": {"ndcg@10": 0.51}}).wins
    False
    """
    cur, new = rows["current"]["ndcg@10"], rows["tuned"]["ndcg@10"]
    bm25 = rows.get("bm25", {}).get("ndcg@10")
    gain = new - cur
    wins = gain >= margin - 1e-9
    if wins:
        reason = f"nDCG@10 {new:.3f} against {cur:.3f} ({gain:+.3f}, margin {margin:+.3f})"
    else:
        reason = (
            f"it scored nDCG@10 {new:.3f} against the current model's {cur:.3f} "
            f"({gain:+.3f}; it needs {margin:+.3f})"
        )
    if bm25 is not None:
        reason += f"; keyword search {bm25:.3f}"
    return Verdict(wins, cur, new, bm25, margin, reason)


@dataclass
class Tune:
    """One run's settings and what it has measured so far."""

    home: Path
    model: Path  # the current default model's GGUF
    base: Path  # its HF checkpoint: what SFT starts from
    minutes: float = 60.0
    steps: int = 0  # 0: sized from the minutes and the probe's s/step
    margin: float = MARGIN
    max_passages: int = 2000
    heldout_fraction: float = 0.2
    teacher: bool = True
    overrides: list[str] = field(default_factory=list)
    seed: int = 0
    distill: bool = False  # set when the data carries the teacher's vectors
    delta: Path | None = None  # the current model is ``base`` + this delta (training.delta)
    stages: dict[str, float] = field(default_factory=dict)

    @property
    def staging(self) -> Path:
        """The folder every file of the run is written in."""
        return self.home / STAGING


def send(event: TuneEvent) -> None:
    """Write ``event`` to the parent: one JSON line on standard output."""
    sys.stdout.write(event.to_line() + "\n")
    sys.stdout.flush()


def run_stage(
    tune: Tune, name: str, command: Sequence[str], watch: Callable[[], None] | None = None
) -> None:
    """Run one stage's process to the end (:func:`training.stages.run_stage`, its output
    into this log, ``watch`` called while it runs), timing it and telling the parent it
    began; raises :class:`TuneError`."""
    send(TuneEvent(EVENT_STAGE, stage=name))
    try:
        stages.run_stage(name, command, tune.stages, stdout=sys.stderr, watch=watch)
    except StageError as exc:
        raise TuneError(f"{name} failed (exit {exc.code}); its log is above") from None


class LogFollower:
    """The records a training run appends to its ``log.jsonl`` (``path``), as they come."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def new_records(self) -> list[dict[str, Any]]:
        """The records written since the last call (none while the file is missing); a
        line still being written waits for its end."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        records = []
        for line in data[:end].decode("utf-8", "replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records


def sft_progress(log_file: Path, steps: int) -> Callable[[], None]:
    """What follows an SFT run of ``steps`` steps logging to ``log_file``: each call sends
    a progress event per step record written since the last one."""
    follower = LogFollower(log_file)

    def watch() -> None:
        for record in follower.new_records():
            if "s_per_step" in record:  # a step's record (an evaluation's has none)
                step, seconds = int(record["step"]), float(record["s_per_step"])
                send(TuneEvent(EVENT_PROGRESS, "sft", step, steps, seconds))

    return watch


def space_needed(base: Path, model: Path) -> int:
    """Bytes a run writes: a merged base, two checkpoints and a final one of ``base``'s
    size, the probe's, two GGUFs of ``model``'s size and the F16 one, plus :data:`SPARE_BYTES`."""
    weights = sum(p.stat().st_size for p in base.glob("*.safetensors"))
    return 6 * weights + 3 * model.stat().st_size + SPARE_BYTES


def check_space(folder: Path, needed: int) -> None:
    """Raise :class:`TuneError` when ``folder``'s file system has less than ``needed`` free."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise TuneError(
            f"not enough disk space in {folder}: tuning needs about {needed / 1e9:.1f} GB "
            f"free, there are {free / 1e9:.1f} GB"
        )


def index_documents(home: Path, max_passages: int, seed: int, min_chars: int) -> list[DocPassages]:
    """Passages of the index's active generation, grouped by file (one document each).

    Takes the data directory; returns up to ``max_passages`` passages drawn at random
    (by ``seed``) from the embedded ones, in text order within each file.
    """
    from sr3desk.index.store import Store

    with Store.open(home) as store:
        hits = store.sample_chunks(max_passages, seed=seed)
    by_file: dict[str, list[Any]] = {}
    for hit in hits:
        if len(hit.text.strip()) >= min_chars:
            by_file.setdefault(hit.path, []).append(hit)
    docs = []
    for path in sorted(by_file):
        chunks = sorted(by_file[path], key=lambda h: h.ordinal)
        passages = [
            CorpusEntry(id=f"{path}#{h.ordinal}", text=h.text.strip(), doc=path) for h in chunks
        ]
        docs.append(DocPassages(path, passages, [h.heading or "" for h in chunks]))
    return docs


def build_from_index(tune: Tune, out: Path) -> dict[str, Any]:
    """Write a training set (``out/train``, ``out/heldout``, ``out/manifest.json``) in the
    layout :mod:`training.data.build` writes, from the user's index; returns the manifest.

    With the teacher installed (and ``tune.teacher``), its filter drops the pseudo-queries
    whose passage it ranks below :data:`TEACHER_K`, and its vectors are kept: SFT then
    distils its ranking as the CPU recipe does (``loss.distill``). Raises
    :class:`TuneError` when the index has too few embedded files.
    """
    teacher = tune.teacher and _teacher_installed()
    cfg = BuildConfig(
        heldout_fraction=tune.heldout_fraction,
        queries=["heading", "cloze"],
        cloze_keep=0.0,
        min_chars=80,
        negatives=4,
        miner="bm25",
        teacher_filter_k=TEACHER_K if teacher else 0,
        teacher_vectors=teacher,
        teacher_max_tokens=128,
        seed=tune.seed,
    )
    docs = index_documents(tune.home, tune.max_passages, tune.seed, cfg.min_chars)
    if len(docs) < 2:
        raise TuneError(
            f"the index has {len(docs)} embedded file(s) to learn from: tuning needs 2 or "
            "more (index more documents, or wait until their vectors are built)"
        )
    splits = split_dataset(docs, cfg)
    if not splits.train.judged_queries() or not splits.heldout.judged_queries():
        raise TuneError("the index's passages gave no pseudo-queries on one side of the split")
    manifest = write_dataset(splits, cfg, out, meta={"source": "index", "home": str(tune.home)})
    tune.distill = teacher
    return manifest


def _teacher_installed() -> bool:
    import importlib.util

    from training.teacher import MODULE

    return importlib.util.find_spec(MODULE) is not None


def merge_delta(base: Path, delta_dir: Path, out: Path) -> Path:
    """The HF checkpoint of a model shipped as a delta (``delta_dir``) over ``base``,
    written to ``out`` after checking that ``base`` is the one the delta was made for;
    returns ``out``. Raises :class:`TuneError` when the delta or the base does not fit."""
    from training.delta.apply import check_base, load
    from training.delta.manifest import DeltaError
    from training.delta.tensors import merge

    try:
        manifest, tensors, _reference = load(delta_dir)
        check_base(base, manifest)
        return merge(base, tensors, out)
    except DeltaError as exc:
        raise TuneError(str(exc)) from exc


def keep_weights(tune: Tune, final: Path, origin: Path, model_dir: Path) -> str:
    """Put what the tuned model can be trained again from into ``model_dir``, beside its
    GGUF; returns "delta" or "checkpoint".

    When the current model was itself a delta over ``origin`` (the shipped default
    model), the tuned one is kept the same way: its changed tensors over ``origin``
    (:func:`training.delta.extract_delta`, tens of MB), found again by
    :func:`sr3desk.tuning.checkpoint_of`. Otherwise, or when that delta cannot be made
    (too big, or ``origin`` lacks the recipe stamp that locates it), the whole HF
    checkpoint in ``final``.
    """
    from training.delta.extract import RECIPE_STAMP

    if tune.delta is not None and (origin / RECIPE_STAMP).is_file():
        from training.delta import DeltaError, extract_delta

        t0 = time.perf_counter()
        out = tune.staging / "delta"
        try:
            extract_delta(origin, final, out, name=model_dir.name, stage="sft")
        except DeltaError as exc:
            log.warning("keeping the whole checkpoint: %s", exc)
        else:
            for item in out.iterdir():
                os.replace(item, model_dir / item.name)
            tune.stages["delta"] = time.perf_counter() - t0
            return "delta"
    for item in final.iterdir():
        if item.is_file():
            shutil.copy2(item, model_dir / item.name)
    return "checkpoint"


def _n_layers(base: Path) -> int:
    config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    return int(config.get("num_hidden_layers", 0))


def sft_args(tune: Tune, data: Path, out: Path, steps: int) -> list[str]:
    """The CPU recipe's config with this run's paths and ``steps``: the SFT command's
    arguments (without the module)."""
    train_layers = int(read_yaml(CONFIG).get("model", {}).get("train_layers", 0))
    layers = _n_layers(tune.base)
    if layers and train_layers >= layers:
        train_layers = max(1, layers // 2)  # small test models: still a partial delta
    return [
        "--config",
        str(CONFIG),
        f"model.path={tune.base}",
        f"model.train_layers={train_layers}",
        f"data.dir={data}",
        "data.build.sources=[]",
        "data.build.corpora=[]",
        "data.build.corpus_sample=[]",
        "data.build.crossdomain=",
        "data.build.miner=bm25",
        "data.build.teacher_filter_k=0",
        "data.build.teacher_vectors=false",
        *([] if tune.distill else ["loss.distill=0"]),
        f"train.out_dir={out}",
        f"train.steps={steps}",
        f"optim.warmup_steps={max(1, min(20, steps // 10))}",
        f"train.log_every={max(1, min(10, steps))}",
        f"train.save_every={max(1, steps // 4)}",
        "eval.enabled=false",
        *tune.overrides,
    ]


def probe_s_per_step(tune: Tune, data: Path) -> float:
    """Seconds per SFT step on this machine, measured by a few steps (the first one,
    which warms up, left out when there are more)."""
    out = tune.staging / "probe"
    args = sft_args(tune, data, out, PROBE_STEPS)
    args += ["train.log_every=1", f"train.save_every={PROBE_STEPS + 1}"]
    run_stage(tune, "probe", python_module("training.sft", *args))
    log_file = out / LOG_FILE
    records = [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines()]
    times = [float(r["s_per_step"]) for r in records if "s_per_step" in r]
    if not times:
        raise TuneError(f"the probe wrote no step times in {log_file}")
    kept = times[1:] or times
    shutil.rmtree(out, ignore_errors=True)
    return sum(kept) / len(kept)


def steps_for(minutes: float, s_per_step: float) -> int:
    """SFT steps that fill :data:`TRAIN_SHARE` of ``minutes`` at ``s_per_step``, at least
    :data:`MIN_STEPS`.

    >>> steps_for(60, 15.0)
    144
    """
    return max(MIN_STEPS, int(minutes * 60 * TRAIN_SHARE / max(s_per_step, 1e-6)))


def export(tune: Tune, hf_dir: Path, out_dir: Path, name: str, eval_json: Path | None) -> Path:
    """F16 and Q8_0 GGUFs of ``hf_dir`` named ``name`` in ``out_dir``, with the figures in
    ``eval_json``; returns the Q8_0 path."""
    f16 = out_dir / f"{name}.F16.gguf"
    command, quant = export_command(hf_dir, f16, "sft", name=name, eval_json=eval_json)
    run_stage(tune, "export", command)
    return quant


def mark_index(sr3_eval: Path, home: Path) -> None:
    """Name the index in ``home`` in the figures at ``sr3_eval`` (a JSON dict).

    They come from this index's own held-out files, so the app's fusion takes them
    as evidence about this index (:func:`sr3desk.search.calibration.from_eval`),
    and about no other.
    """
    from sr3desk.search.calibration import index_identity

    figures = json.loads(sr3_eval.read_text(encoding="utf-8"))
    figures["index"] = index_identity(home)
    sr3_eval.write_text(json.dumps(figures, indent=2), encoding="utf-8")


def run(tune: Tune) -> dict[str, Any]:
    """Every stage under the data directory's tune lock; returns the result (also in
    ``tune-staging/result.json``). Raises :class:`TuneError` when another tune holds the
    lock: its staging folder is left alone."""
    lock = WriterLock(tune.home, TUNE_LOCK, "sr3desk tune")
    try:
        lock.acquire()
    except IndexAccessError as exc:
        raise TuneError(str(exc)) from None
    try:
        return _run(tune)
    finally:
        lock.release()


def _run(tune: Tune) -> dict[str, Any]:
    t_start = time.perf_counter()
    staging = tune.staging
    shutil.rmtree(staging, ignore_errors=True)  # what a killed run left
    staging.mkdir(parents=True)
    send(TuneEvent(EVENT_STAGE, stage="data"))
    check_space(tune.home, space_needed(tune.base, tune.model))
    origin = tune.base  # what a delta of the tuned model is made over
    if tune.delta is not None:
        t0 = time.perf_counter()
        tune.base = merge_delta(tune.base, tune.delta, staging / "base")
        tune.stages["merge"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    data = staging / "data"
    manifest = build_from_index(tune, data)
    tune.stages["data"] = time.perf_counter() - t0
    steps, s_per_step = train(tune, data)
    result = evaluate_and_keep(tune, data, origin)
    result.update(
        steps=steps,
        s_per_step=s_per_step,
        figures=result.pop("figures"),
        counts=manifest["counts"],
        heldout_documents=manifest["documents"]["heldout"],
        stage_seconds={k: round(v, 1) for k, v in tune.stages.items()},
        seconds=round(time.perf_counter() - t_start, 1),
    )
    (staging / RESULT).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def train(tune: Tune, data: Path) -> tuple[int, float | None]:
    """SFT on ``data`` into ``tune-staging/sft``, for the steps asked or, without them, the
    steps a probe's measured s/step fits in the minutes; its progress goes to the parent.
    Returns the steps and the measured s/step (None: not measured)."""
    s_per_step = None
    steps = tune.steps
    if not steps:
        s_per_step = probe_s_per_step(tune, data)
        steps = steps_for(tune.minutes, s_per_step)
        log.info("%.2f s/step measured: %d steps in %.0f minutes", s_per_step, steps, tune.minutes)
    send(TuneEvent(EVENT_PLAN, steps=steps, s_per_step=s_per_step))
    sft_dir = tune.staging / "sft"
    args = sft_args(tune, data, sft_dir, steps)
    command = python_module("training.sft", *args, "train.resume=auto")
    run_stage(tune, "sft", command, watch=sft_progress(sft_dir / LOG_FILE, steps))
    return steps, s_per_step


def evaluate_and_keep(tune: Tune, data: Path, origin: Path) -> dict[str, Any]:
    """Export SFT's model, A/B it against the current one on ``data``'s held-out files,
    and move it, with its figures and what it can be trained again from (over
    ``origin``), into the models folder. Returns the result's verdict part: ``wins``,
    ``reason``, ``verdict``, ``current``, ``tuned``, ``weights`` and ``figures``."""
    staging, final = tune.staging, tune.staging / "sft" / FINAL
    name = f"{tune.model.name.split('.')[0].removesuffix('-tuned')}-tuned"
    name = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    model_dir = staging / name
    model_dir.mkdir()
    tuned = export(tune, final, model_dir, name, None)

    report_file, sr3_eval = staging / "eval.json", staging / "sr3-eval.json"
    command = python_module("training.eval", "--data", data / "heldout", "--split", "test")
    command += ["--model", f"current={tune.model}", "--model", f"tuned={tuned}"]
    command += ["--json", str(report_file), "--sr3-eval", f"tuned={sr3_eval}"]
    run_stage(tune, "eval", command)
    report = json.loads(report_file.read_text(encoding="utf-8"))
    verdict = decide(report["results"], tune.margin)
    mark_index(sr3_eval, tune.home)

    # Its own figures into its sr3.eval (the fusion weighs it by them), then the model
    # and its checkpoint into the models folder: one rename, nothing half there.
    for old in model_dir.glob("*.gguf"):
        old.unlink()
    tuned = export(tune, final, model_dir, name, sr3_eval)
    (model_dir / f"{name}.F16.gguf").unlink(missing_ok=True)
    weights = keep_weights(tune, final, origin, model_dir)
    from sr3desk.settings import models_dir

    target = models_dir(tune.home) / name
    os.replace(model_dir, target)
    shutil.rmtree(final.parent, ignore_errors=True)  # its checkpoints: the model's size, thrice
    return {
        "wins": verdict.wins,
        "reason": verdict.reason,
        "verdict": asdict(verdict),
        "current": str(tune.model),
        "tuned": str(target / tuned.name),
        "weights": weights,  # how it is kept for the next tune: "delta" or "checkpoint"
        "figures": report["results"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.tune``; returns the exit status (2 when a stage fails)."""
    parser = argparse.ArgumentParser(
        prog="python -m training.tune",
        description="Tune the current model to the user's index (what `sr3desk tune` runs).",
    )
    parser.add_argument("--home", required=True, help="the data directory (index, models)")
    parser.add_argument("--model", required=True, help="the current model's GGUF")
    parser.add_argument("--base", required=True, help="its HF checkpoint folder")
    parser.add_argument("--delta", help="the current model is --base plus this delta folder")
    parser.add_argument("--minutes", type=float, default=60.0, help="time to spend (default 60)")
    parser.add_argument("--steps", type=int, default=0, help="SFT steps (default: from --minutes)")
    parser.add_argument("--margin", type=float, default=MARGIN, help="nDCG@10 the tuned must gain")
    parser.add_argument("--max-passages", type=int, default=2000, help="passages sampled")
    parser.add_argument("--no-teacher", action="store_true", help="no teacher filter")
    parser.add_argument("--seed", type=int, default=0, help="sampling and split seed")
    parser.add_argument("overrides", nargs="*", help="key=value SFT settings over the config")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    tune = Tune(
        home=Path(ns.home).resolve(),
        model=Path(ns.model).resolve(),
        base=Path(ns.base).resolve(),
        delta=Path(ns.delta).resolve() if ns.delta else None,
        minutes=ns.minutes,
        steps=ns.steps,
        margin=ns.margin,
        max_passages=ns.max_passages,
        teacher=not ns.no_teacher,
        overrides=list(ns.overrides),
        seed=ns.seed,
    )
    try:
        result = run(tune)
    except TuneError as exc:
        sys.stderr.write(f"training.tune: error: {exc}\n")
        send(TuneEvent(EVENT_ERROR, message=str(exc)))
        return 2
    send(TuneEvent(EVENT_RESULT, result=result))
    log.info("tune: %s", "wins" if result["wins"] else "kept aside")
    return 0


if __name__ == "__main__":
    sys.exit(main())
