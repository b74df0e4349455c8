"""The whole recipe in one command: data, SFT, RL, export, evaluation, the choice.

    python -m training.recipe --config training/configs/smollm2-135m-cpu.yaml

Runs, in order, each stage as its own process (so a stage's memory is returned
before the next starts, and each one is the command a user could run alone):

1. data: the config's ``data.build`` into ``data.dir`` (kept when already built
   with the same settings);
2. SFT (``python -m training.sft``), resumed when a cut run left checkpoints,
   skipped when ``train.out_dir/final`` already holds this config's last step;
3. RL from the SFT model (``python -m training.rl``), when the config has an
   ``rl`` section and ``--no-rl`` is not given; resumed and skipped the same way;
4. export of each trained model to F16 and Q8_0 GGUFs (``python -m training.export``);
5. evaluation on the held-out documents (``python -m training.eval``): BM25, the
   base model, SFT, RL, each with and without reasoning, the teacher alone, and
   the app's hybrid search with each of them;
6. the choice: RL ships when it is not worse than SFT on the held-out documents
   with and without reasoning, else SFT; its held-out figures go into its
   ``sr3.eval`` and its GGUFs are written again with them;
7. evaluation on the cross-domain source, when the data has one, with the fusion
   weights each model's held-out figures give (never fitted on the test set);
8. with ``--ship DIR``: the chosen model as a delta over the base
   (``python -m training.delta extract``).

Every stage's wall time and the figures go to ``RUN/recipe.json`` (RUN: the
folder above ``train.out_dir``), and each evaluation's table, as markdown, to
``RUN/eval-heldout.md`` and ``RUN/eval-crossdomain.md``. A cut run starts again
where it stopped: rerun the same command.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training import stages
from training.checkpoints import FINAL, STATE_FILE
from training.config import ConfigError, RLRunConfig, load_config, read_yaml
from training.stages import QUANT, StageError, export_command, python_module

log = logging.getLogger(__name__)

HELDOUT, CROSSDOMAIN = "heldout", "crossdomain"


@dataclass
class Recipe:
    """The run's settings (from the command line) and what it has measured so far."""

    config: Path
    overrides: list[str]
    run_dir: Path
    base_gguf: Path
    rl: bool = True
    crossdomain_queries: int = 600
    ship: Path | None = None
    threads: int | None = None
    stages: dict[str, float] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    def save(self) -> Path:
        """Write ``recipe.json`` (stage times, figures, the choice); returns its path."""
        path = self.run_dir / "recipe.json"
        data = {
            "config": str(self.config),
            "overrides": self.overrides,
            "stage_seconds": {k: round(v, 1) for k, v in self.stages.items()},
            **self.results,
        }
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        return path


def run_stage(
    recipe: Recipe, name: str, command: Sequence[str], stdout: Path | None = None
) -> None:
    """Run one stage's process to the end, timing it (its standard output into
    ``stdout`` when given) and saving ``recipe.json``; raises :class:`StageError`."""
    try:
        stages.run_stage(name, command, recipe.stages, stdout=stdout)
    finally:
        recipe.save()


# Settings that say where a run is, not what it trains: left out when comparing.
_PLACE_KEYS = frozenset({"resume", "init", "out_dir", "log_every", "save_every"})


def _what_trains(config: dict[str, Any]) -> dict[str, Any]:
    return {
        k: _what_trains(v) if isinstance(v, dict) else v
        for k, v in config.items()
        if k not in _PLACE_KEYS
    }


def finished(out_dir: Path, steps: int, config: dict[str, Any] | None = None) -> bool:
    """True when ``out_dir/final`` holds a finished run of ``steps`` steps, trained
    with ``config``'s settings (its sections that the run saved) when given."""
    state_file = out_dir / FINAL / STATE_FILE
    if not state_file.is_file():
        return False
    state = json.loads(state_file.read_text(encoding="utf-8"))
    if int(state.get("step", -1)) < steps:
        return False
    if config is None:
        return True
    saved = _what_trains(state.get("config", {}))
    current = _what_trains(config)
    return all(current.get(section) == value for section, value in saved.items())


def export(recipe: Recipe, label: str, hf_dir: Path, eval_json: Path | None = None) -> Path:
    """F16 and Q8_0 GGUFs of ``hf_dir`` in the run folder; returns the Q8_0 path."""
    f16 = recipe.run_dir / f"{label}.F16.gguf"
    command, quant = export_command(hf_dir, f16, label, eval_json=eval_json)
    run_stage(recipe, f"export {label}", command)
    return quant


def evaluate(
    recipe: Recipe, split: str, models: dict[str, Path], reason: Sequence[str], extra: list[str]
) -> dict[str, Any]:
    """One ``training.eval`` run over ``models`` (label -> GGUF) plus the teacher and
    the fused rows; returns its JSON report."""
    out = recipe.run_dir / f"eval-{split}.json"
    command = python_module("training.eval", "--config", recipe.config, "--json", out, "--markdown")
    for label, gguf in models.items():
        command += ["--model", f"{label}={gguf}"]
    for label in reason:
        command += ["--reason", label]
    command += ["--teacher", "--fuse", "teacher"]
    for label in models:
        if label != "base" and label not in reason:
            command += ["--fuse", label]
    if recipe.threads:
        command += ["--threads", str(recipe.threads)]
    table = recipe.run_dir / f"eval-{split}.md"
    run_stage(recipe, f"eval {split}", command + extra, stdout=table)
    log.info("%s:\n%s", split, table.read_text(encoding="utf-8"))
    report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return report


def choose(rows: dict[str, dict[str, float]]) -> str:
    """``rl`` when it is not worse than ``sft`` by held-out nDCG@10 with and without
    reasoning, else ``sft``."""
    if "rl" not in rows:
        return "sft"
    plain = rows["rl"]["ndcg@10"] >= rows["sft"]["ndcg@10"]
    reasoned = rows["rl-reason"]["ndcg@10"] >= rows["sft-reason"]["ndcg@10"]
    return "rl" if plain and reasoned else "sft"


def run(recipe: Recipe) -> str:
    """Run every stage; returns the label of the model that ships (``sft`` or ``rl``)."""
    cfg = load_config(RLRunConfig, ["--config", str(recipe.config), *recipe.overrides])
    sets = ["--config", str(recipe.config), *recipe.overrides]
    recipe.run_dir.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    from training.data.build import ensure_dataset

    if not cfg.data.train:
        ensure_dataset(cfg.data.build, cfg.data.dir)
    recipe.stages["data"] = time.perf_counter() - t0

    sft_dir = Path(cfg.train.out_dir)
    if not finished(sft_dir, cfg.train.steps, cfg.to_dict()):
        run_stage(recipe, "sft", python_module("training.sft", *sets, "train.resume=auto"))
    trained = {"sft": sft_dir / FINAL}
    if recipe.rl:
        rl_dir = Path(cfg.rl.out_dir) if cfg.rl.out_dir else sft_dir.parent / "rl"
        if not finished(rl_dir, cfg.rl.steps, cfg.to_dict()):
            command = python_module("training.rl", *sets, f"rl.out_dir={rl_dir}", "rl.resume=auto")
            run_stage(recipe, "rl", [*command, "--init", str(sft_dir / FINAL)])
        trained["rl"] = rl_dir / FINAL

    ggufs = {label: export(recipe, label, hf) for label, hf in trained.items()}
    models = {"base": recipe.base_gguf, **ggufs}
    with_reason = {**models, **{f"{k}-reason": v for k, v in ggufs.items()}}
    reason = [f"{k}-reason" for k in ggufs]

    # Reasoning within the budget RL trained with (the app's own is 256 tokens: an
    # untrained model writes all of them for every query).
    budget = ["--max-reason-tokens", str(cfg.rl.max_reason_tokens)]
    heldout = evaluate(recipe, HELDOUT, with_reason, reason, budget)
    recipe.results[HELDOUT] = heldout
    ships = choose(heldout["results"])
    recipe.results["ships"] = ships
    log.info("ships: %s", ships)

    # Its held-out figures into its sr3.eval, and its GGUFs written again with them.
    sr3_eval = recipe.run_dir / f"{ships}.sr3-eval.json"
    sr3_eval.write_text(json.dumps(heldout["sr3_eval"][ships], indent=2), encoding="utf-8")
    shipped = export(recipe, ships, trained[ships], sr3_eval)

    cross = Path(cfg.data.dir) / CROSSDOMAIN
    if (cross / "corpus.jsonl").is_file():
        extra = ["--data", str(cross), "--split", "test"]
        extra += ["--weights-from", str(recipe.run_dir / f"eval-{HELDOUT}.json")]
        if recipe.crossdomain_queries:
            extra += ["--sample-queries", str(recipe.crossdomain_queries)]
        recipe.results[CROSSDOMAIN] = evaluate(recipe, CROSSDOMAIN, models, [], extra)
    if recipe.ship is not None:
        command = python_module(
            "training.delta", "extract", trained[ships], "--base", cfg.model.path
        )
        command += ["--out", str(recipe.ship), "--stage", ships, "--eval-json", str(sr3_eval)]
        run_stage(recipe, "ship", command)
    recipe.results["shipped_gguf"] = str(shipped)
    log.info("recipe: %s", recipe.save())
    return ships


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.recipe``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m training.recipe",
        description="Data, SFT, RL, export and evaluation of one config, in one command.",
    )
    parser.add_argument("--config", required=True, help="training YAML")
    parser.add_argument("overrides", nargs="*", help="key=value settings over the config")
    parser.add_argument(
        "--base", help="the untrained base as GGUF (default: MODEL_PATH/NAME.Q8_0.gguf)"
    )
    parser.add_argument("--no-rl", action="store_true", help="SFT only")
    parser.add_argument(
        "--crossdomain-queries",
        type=int,
        default=600,
        help="seeded sample of cross-domain queries (0: all); the corpus is always whole",
    )
    parser.add_argument("--ship", help="write the chosen model's delta to this folder")
    parser.add_argument("--threads", type=int, help="llama.cpp threads for the evaluation")
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        cfg = load_config(RLRunConfig, ["--config", ns.config, *ns.overrides])
        model_dir = Path(cfg.model.path)
        base = Path(ns.base) if ns.base else model_dir / f"{model_dir.name}.{QUANT}.gguf"
        if not base.is_file():
            raise ConfigError(f"no base GGUF at {base}: give --base (or run `make models`)")
        recipe = Recipe(
            config=Path(ns.config),
            overrides=list(ns.overrides),
            run_dir=Path(cfg.train.out_dir).parent,
            base_gguf=base,
            rl=not ns.no_rl and "rl" in read_yaml(ns.config),
            crossdomain_queries=ns.crossdomain_queries,
            ship=Path(ns.ship) if ns.ship else None,
            threads=ns.threads,
        )
        ships = run(recipe)
    except (ConfigError, StageError) as exc:
        sys.stderr.write(f"training.recipe: error: {exc}\n")
        return 2
    sys.stdout.write(f"ships: {ships}; figures: {recipe.run_dir / 'recipe.json'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
