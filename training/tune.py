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

What it did goes to ``tune-staging/result.json`` (read by ``sr3desk tune``, which
switches the default model when the tuned one won). Only the move into the models
folder and that switch touch anything outside the staging folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sr3desk.errors import IndexAccessError
from sr3desk.index.lock import WriterLock
from sr3desk.tuning import RESULT, STAGING, TRAIN_SHARE, TUNE_LOCK
from training.config import BuildConfig
from training.data.beir import BeirSet, CorpusEntry, write_beir
from training.data.build import MANIFEST, _assemble_split, _DocPassages, split_documents
from training.data.mining import NEGATIVES, bm25_scorer, mine_negatives, write_negatives
from training.data.teacher_vectors import TEACHER_VECTORS, TeacherVectors, write_teacher_vectors

log = logging.getLogger(__name__)

CONFIG = Path(__file__).parent / "configs" / "smollm2-135m-cpu.yaml"
QUANT = "Q8_0"
# The tuned model must beat the current one by this much held-out nDCG@10 on the
# user's own pseudo-queries to become the default: less is within the noise of a few
# dozen queries, and a switch costs re-embedding the whole index.
MARGIN = 0.02
PROBE_STEPS = 3
MIN_STEPS = 5
# Free space asked beyond the run's own files (checkpoints, GGUFs, data).
SPARE_BYTES = 200 * 1024 * 1024


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


def _python(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", *map(str, args)]


def run_stage(tune: Tune, name: str, command: Sequence[str]) -> None:
    """Run one stage's process to the end, timing it; raises :class:`TuneError`."""
    log.info("== %s: %s", name, " ".join(command))
    t0 = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(list(command), env=env, check=False, stdout=sys.stderr)
    tune.stages[name] = tune.stages.get(name, 0.0) + time.perf_counter() - t0
    if done.returncode != 0:
        raise TuneError(f"{name} failed (exit {done.returncode}); its log is above")


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


def index_documents(home: Path, max_passages: int, seed: int, min_chars: int) -> list[_DocPassages]:
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
        docs.append(_DocPassages(path, passages, [h.heading or "" for h in chunks]))
    return docs


def build_from_index(tune: Tune, out: Path) -> dict[str, Any]:
    """Write a training set (``out/train``, ``out/heldout``, ``out/manifest.json``) in the
    layout :mod:`training.data.build` writes, from the user's index; returns the manifest.

    Raises :class:`TuneError` when the index has too few embedded files.
    """
    cfg = BuildConfig(
        heldout_fraction=tune.heldout_fraction,
        queries=["heading", "cloze"],
        cloze_keep=0.0,
        min_chars=80,
        negatives=4,
        miner="bm25",
        teacher_vectors=False,
        seed=tune.seed,
    )
    docs = index_documents(tune.home, tune.max_passages, tune.seed, cfg.min_chars)
    if len(docs) < 2:
        raise TuneError(
            f"the index has {len(docs)} embedded file(s) to learn from: tuning needs 2 or "
            "more (index more documents, or wait until their vectors are built)"
        )
    held = split_documents([d.key for d in docs], cfg.heldout_fraction, cfg.seed)
    train = _assemble_split([d for d in docs if d.key not in held], cfg, "q")
    heldout = _assemble_split([d for d in docs if d.key in held], cfg, "h")
    if not train.judged_queries() or not heldout.judged_queries():
        raise TuneError("the index's passages gave no pseudo-queries on one side of the split")
    filtered = 0
    vectors = None
    if tune.teacher and _teacher_installed():
        vectors, filtered = _teacher_filter(train)
    write_beir(train, out / "train", "train")
    if vectors is not None:
        # SFT distils the teacher's ranking as the CPU recipe does (loss.distill).
        write_teacher_vectors(out / "train" / TEACHER_VECTORS, vectors)
        tune.distill = True
    write_beir(heldout, out / "heldout", "test")
    texts = [p.full_text for p in train.corpus.values()]
    write_negatives(
        out / "train" / NEGATIVES, mine_negatives(train, cfg.negatives, bm25_scorer(texts))
    )
    manifest = {
        "source": "index",
        "home": str(tune.home),
        "build": asdict(cfg),
        "documents": {
            "train": sorted(d.key for d in docs if d.key not in held),
            "heldout": sorted(held),
        },
        "counts": {
            "train_passages": len(train.corpus),
            "train_queries": len(train.queries),
            "heldout_passages": len(heldout.corpus),
            "heldout_queries": len(heldout.queries),
            "teacher_filtered": filtered,
        },
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), "utf-8")
    log.info("data from the index: %s", manifest["counts"])
    return manifest


def _teacher_installed() -> bool:
    import importlib.util

    from training.teacher import MODULE

    return importlib.util.find_spec(MODULE) is not None


def _teacher_filter(train: BeirSet, k: int = 20) -> tuple[TeacherVectors, int]:
    """Drop training queries whose passage the teacher does not rank in its top ``k``;
    returns the teacher's vectors and how many queries were dropped."""
    from training.data.filtering import teacher_filter
    from training.data.teacher_vectors import compute_teacher_vectors
    from training.teacher import Teacher

    teacher = Teacher(max_tokens=128)
    queries = {q: train.queries[q] for q in train.judged_queries()}
    passages = {pid: p.full_text for pid, p in train.corpus.items()}
    vectors = compute_teacher_vectors(teacher, queries, passages)
    return vectors, len(teacher_filter(train, vectors, k))


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
    train_layers = 5
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
    run_stage(tune, "probe", _python("training.sft", *args))
    log_file = out / "log.jsonl"
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
    """F16 and Q8_0 GGUFs of ``hf_dir`` named ``name`` in ``out_dir``; returns the Q8_0 path."""
    f16 = out_dir / f"{name}.F16.gguf"
    command = _python("training.export", hf_dir, f16, "--type", "f16", "--quant", QUANT)
    command += ["--name", name, "--stage", "sft"]
    if eval_json is not None:
        command += ["--eval-json", str(eval_json)]
    run_stage(tune, "export", command)
    return out_dir / f"{name}.{QUANT}.gguf"


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

    s_per_step = None
    steps = tune.steps
    if not steps:
        s_per_step = probe_s_per_step(tune, data)
        steps = steps_for(tune.minutes, s_per_step)
        log.info("%.2f s/step measured: %d steps in %.0f minutes", s_per_step, steps, tune.minutes)
    sft_dir = staging / "sft"
    args = sft_args(tune, data, sft_dir, steps)
    run_stage(tune, "sft", _python("training.sft", *args, "train.resume=auto"))

    name = f"{tune.model.name.split('.')[0].removesuffix('-tuned')}-tuned"
    name = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    model_dir = staging / name
    model_dir.mkdir()
    tuned = export(tune, sft_dir / "final", model_dir, name, None)

    report_file = staging / "eval.json"
    command = _python("training.eval", "--data", str(data / "heldout"), "--split", "test")
    command += ["--model", f"current={tune.model}", "--model", f"tuned={tuned}"]
    command += ["--json", str(report_file), "--sr3-eval", f"tuned={staging / 'sr3-eval.json'}"]
    run_stage(tune, "eval", command)
    report = json.loads(report_file.read_text(encoding="utf-8"))
    verdict = decide(report["results"], tune.margin)
    mark_index(staging / "sr3-eval.json", tune.home)

    # Its own figures into its sr3.eval (the fusion weighs it by them), then the model
    # and its checkpoint into the models folder: one rename, nothing half there.
    for old in model_dir.glob("*.gguf"):
        old.unlink()
    tuned = export(tune, sft_dir / "final", model_dir, name, staging / "sr3-eval.json")
    (model_dir / f"{name}.F16.gguf").unlink(missing_ok=True)
    weights = keep_weights(tune, sft_dir / "final", origin, model_dir)
    from sr3desk.settings import models_dir

    target = models_dir(tune.home) / name
    os.replace(model_dir, target)
    shutil.rmtree(sft_dir, ignore_errors=True)  # its checkpoints: the model's size, thrice
    result = {
        "wins": verdict.wins,
        "reason": verdict.reason,
        "verdict": asdict(verdict),
        "current": str(tune.model),
        "tuned": str(target / tuned.name),
        "weights": weights,  # how it is kept for the next tune: "delta" or "checkpoint"
        "steps": steps,
        "s_per_step": s_per_step,
        "figures": report["results"],
        "counts": manifest["counts"],
        "heldout_documents": manifest["documents"]["heldout"],
        "stage_seconds": {k: round(v, 1) for k, v in tune.stages.items()},
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    (staging / RESULT).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


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
        return 2
    log.info("tune: %s", "wins" if result["wins"] else "kept aside")
    return 0


if __name__ == "__main__":
    sys.exit(main())
