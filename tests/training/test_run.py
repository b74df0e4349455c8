"""The frame SFT and RL share (training/run.py), with a toy model and step: what it
logs, which checkpoints it keeps, and that a resumed run ends where a straight one does.
The real loops run in test_sft.py and test_rl.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from training.checkpoints import checkpoints, read_state
from training.config import Config
from training.run import Meter, Plan, TrainingRun


class Stream:
    """A toy batch sampler with the checkpoint protocol: random batches from a seed."""

    def __init__(self) -> None:
        self.drawn = 0

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.drawn)
        self.drawn += 1
        x = torch.randn(8, 3, generator=gen)
        return x, x @ torch.tensor([[1.0], [-2.0], [0.5]])

    def state_dict(self) -> dict[str, int]:
        return {"drawn": self.drawn}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.drawn = int(state["drawn"])


class ToyStep:
    """A least-squares step: the frame's backward, one figure, one extra log field."""

    def __init__(self, run: TrainingRun, stream: Stream) -> None:
        self.run, self.stream = run, stream

    def __call__(self) -> None:
        x, y = next(self.stream)
        loss = ((self.run.net(x) - y) ** 2).mean()
        self.run.backward(loss)
        self.run.meter.add({"loss": float(loss.detach())})

    def log_fields(self, elapsed: float) -> dict[str, Any]:
        return {"drawn": self.stream.drawn}

    def log_line(self, record: dict[str, Any]) -> None:
        pass

    def state(self) -> dict[str, Any]:
        return {"drawn": self.stream.drawn}


def train_toy(out: Path, steps: int, resume: str = "") -> nn.Linear:
    from accelerate import Accelerator

    plan = Plan(
        steps=steps,
        log_every=2,
        save_every=2,
        keep_checkpoints=2,
        resume=resume,
        resume_option="train.resume",
    )
    run = TrainingRun(Accelerator(cpu=True), Config(), out, plan, seed=0)
    net = nn.Linear(3, 1)
    stream = Stream()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    run.prepare(net, optimizer, lambda s: 1.0 / (1 + s), stream)
    run.resume(lambda folder: None)
    run.loop(ToyStep(run, stream), None, None, None)  # type: ignore[arg-type]
    return net


def test_the_frame_logs_checkpoints_and_resumes_exactly(tmp_path: Path) -> None:
    straight = train_toy(tmp_path / "straight", steps=5)
    rows = [json.loads(x) for x in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 5]  # every log_every, and the last step
    assert list(rows[0]) == ["loss", "step", "lr", "s_per_step", "drawn"]
    assert rows[0]["lr"] == pytest.approx(0.1 / 3) and rows[-1]["drawn"] == 5
    # Every save_every steps and at the end; the newest keep_checkpoints stay.
    kept = checkpoints(tmp_path / "straight")
    assert [p.name for p in kept] == ["checkpoint-000004", "checkpoint-000005"]
    state = read_state(kept[-1])
    assert list(state) == ["step", "config", "drawn"] and state["step"] == 5
    assert Config.from_dict(state["config"]) == Config()

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(kept[0], resumed / kept[0].name)
    again = train_toy(resumed, steps=5, resume="auto")
    assert torch.equal(straight.weight, again.weight) and torch.equal(straight.bias, again.bias)
    rows = [json.loads(x) for x in (resumed / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5]


def test_the_meter_sums_micro_batches() -> None:
    meter = Meter()
    meter.add({"loss": 1.0}, divisor=2)
    meter.add({"loss": 3.0}, divisor=2)
    meter.add({"loss": 4.0, "kl": 1.0})
    assert meter.sums == {"loss": 6.0, "kl": 1.0}
    meter.reset()
    assert meter.sums == {}
