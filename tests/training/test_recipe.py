"""The one-command recipe (training/recipe.py): which model ships, and when a stage
is already done."""

from __future__ import annotations

import json
from pathlib import Path

from training.recipe import choose, finished


def _rows(**ndcg: float) -> dict[str, dict[str, float]]:
    return {label.replace("_", "-"): {"ndcg@10": v} for label, v in ndcg.items()}


def test_rl_ships_only_when_not_worse_with_and_without_reasoning() -> None:
    assert choose(_rows(sft=0.5, sft_reason=0.4)) == "sft"  # no RL run
    assert choose(_rows(sft=0.5, sft_reason=0.4, rl=0.5, rl_reason=0.41)) == "rl"
    assert choose(_rows(sft=0.5, sft_reason=0.4, rl=0.49, rl_reason=0.6)) == "sft"
    assert choose(_rows(sft=0.5, sft_reason=0.4, rl=0.6, rl_reason=0.39)) == "sft"


def test_a_stage_is_done_when_its_final_model_has_the_last_step(tmp_path: Path) -> None:
    assert not finished(tmp_path, 10)
    (tmp_path / "final").mkdir()
    state = tmp_path / "final" / "train_state.json"
    state.write_text(json.dumps({"step": 9, "config": {}}))
    assert not finished(tmp_path, 10)
    state.write_text(json.dumps({"step": 10, "config": {}}))
    assert finished(tmp_path, 10)


def test_a_stage_trained_with_other_settings_is_not_done(tmp_path: Path) -> None:
    (tmp_path / "final").mkdir()
    saved = {"optim": {"lr": 1e-4}, "train": {"steps": 10, "resume": "auto", "out_dir": "a"}}
    state = {"step": 10, "config": saved}
    (tmp_path / "final" / "train_state.json").write_text(json.dumps(state))
    now = {"optim": {"lr": 1e-4}, "train": {"steps": 10, "resume": "", "out_dir": "b"}, "rl": {}}
    assert finished(tmp_path, 10, now)  # where it ran and how it resumed do not count
    now["optim"] = {"lr": 2e-4}
    assert not finished(tmp_path, 10, now)
