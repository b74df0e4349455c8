"""The frame a training loop runs in, for SFT and RL alike.

A stage (:mod:`training.sft`, :mod:`training.rl`) builds its data and its model,
then hands the frame its step; the frame does what every run does around it::

    run = TrainingRun(accelerator, cfg, out_dir, plan, seed)  # seed, out_dir, config.yaml
    net = run.prepare(net, optimizer, lr_factor, sampler)     # accelerate, schedule, state
    run.resume(check)                  # model, optimizer, schedule, data position, RNG, step
    run.loop(step, heldout, tokenizer, prompts)  # log, checkpoint, evaluate, to the end
    final = run.finish(model, tokenizer, prompts, stage, merge_lora)  # final/, for export

The step (:class:`Step`) takes one optimizer step through :meth:`TrainingRun.backward`
and adds its figures to :attr:`TrainingRun.meter`; the frame logs their means every
``plan.log_every`` steps. What a run writes is :mod:`training.checkpoints`' layout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from sr3desk.model.prompts import PromptSet
from training import modeling
from training.checkpoints import (
    StepCounter,
    append_log,
    resolve_resume,
    save_checkpoint,
    save_final,
)
from training.config import Config, save_config
from training.data.cross_targets import CrossTargets, batch_tensors, cross_targets_for
from training.data.teacher_vectors import TeacherVectors, teacher_vectors_for
from training.heldout import evaluate_step

if TYPE_CHECKING:
    from accelerate import Accelerator

    from training.data.batches import TrainSet
    from training.data.beir import BeirSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """How long a run trains and how often it logs, saves and evaluates (0: never).

    ``resume`` is the run's resume setting ("", "auto" or a checkpoint folder) and
    ``resume_option`` its name in the config (``train.resume``, ``rl.resume``).
    """

    steps: int
    log_every: int
    save_every: int
    keep_checkpoints: int
    resume: str
    resume_option: str
    eval_every: int = 0

    @classmethod
    def of(cls, section: Any, name: str, eval_every: int = 0) -> Plan:
        """The plan of config ``section`` named ``name`` (``train`` for SFT, ``rl``): its
        steps, log_every, save_every, keep_checkpoints and resume."""
        return cls(
            steps=section.steps,
            log_every=section.log_every,
            save_every=section.save_every,
            keep_checkpoints=section.keep_checkpoints,
            resume=section.resume,
            resume_option=f"{name}.resume",
            eval_every=eval_every,
        )


class Meter:
    """The figures of the steps since the last logged one: their sums and the time taken."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.since = time.perf_counter()

    def add(self, figures: Mapping[str, float], divisor: int = 1) -> None:
        """Add each of ``figures`` divided by ``divisor`` (the micro-batches of a step)."""
        for key, value in figures.items():
            self.sums[key] = self.sums.get(key, 0.0) + value / divisor

    def reset(self) -> None:
        """Start a new span: no figures, the clock at now."""
        self.sums = {}
        self.since = time.perf_counter()


class Step(Protocol):
    """What a stage supplies to the frame: its optimizer step, its log line, its state."""

    def __call__(self) -> None:
        """Take one optimizer step (:meth:`TrainingRun.backward`) and add its figures
        to :attr:`TrainingRun.meter`."""

    def log_fields(self, elapsed: float) -> dict[str, Any]:
        """Fields a logged record adds after its means, step, lr and s_per_step;
        ``elapsed`` is the seconds since the last logged record."""

    def log_line(self, record: dict[str, Any]) -> None:
        """Log the human line of the logged ``record``."""

    def state(self) -> dict[str, Any]:
        """What ``train_state.json`` holds beside the step and the config."""


class TrainingRun:
    """One training run's frame: accelerate, output folder, log, resume, checkpoints,
    evaluation and the final model.

    ``accelerator`` is the stage's; ``cfg`` the run's config (saved to
    ``out_dir/config.yaml`` and into every checkpoint); ``seed`` seeds every RNG.
    """

    def __init__(
        self, accelerator: Accelerator, cfg: Config, out_dir: Path, plan: Plan, seed: int
    ) -> None:
        from accelerate.utils import set_seed

        self.accelerator = accelerator
        self.cfg = cfg
        self.out_dir = out_dir
        self.plan = plan
        self.progress = StepCounter()
        self.meter = Meter()
        self.net: Any = None
        self.optimizer: Any = None
        self.scheduler: Any = None
        self._state: Callable[[], dict[str, Any]] = dict
        if not accelerator.is_main_process:
            log.setLevel(logging.WARNING)  # one process reports; all of them train
        set_seed(seed)
        out_dir.mkdir(parents=True, exist_ok=True)
        if accelerator.is_main_process:
            save_config(cfg, out_dir / "config.yaml")

    @property
    def main_process(self) -> bool:
        """Whether this process is the one that writes and reports."""
        return bool(self.accelerator.is_main_process)

    @property
    def device(self) -> torch.device:
        """The device this process trains on."""
        return self.accelerator.device

    def prepare(
        self,
        net: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        lr_factor: Callable[[int], float],
        sampler: Any,
    ) -> Any:
        """Hand ``net`` and ``optimizer`` to accelerate; returns the prepared net.

        The schedule (peak lr times ``lr_factor(step)``) is stepped by hand once per
        optimizer step (a prepared scheduler would step once per process), so it is
        registered for checkpointing with ``sampler`` and the step counter, not prepared.
        """
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        self.net, self.optimizer = self.accelerator.prepare(net, optimizer)
        self.scheduler = scheduler
        self.accelerator.register_for_checkpointing(sampler, self.progress, scheduler)
        return self.net

    def resume(self, check: Callable[[Path], None]) -> None:
        """Resume as ``plan.resume`` says: model, optimizer, schedule, data position, RNG
        and step. ``check(folder)`` raises ConfigError when the checkpoint does not fit."""
        folder = resolve_resume(self.plan.resume, self.out_dir, self.plan.resume_option)
        if folder is None:
            return
        check(folder)
        self.accelerator.load_state(str(folder))
        log.info("resumed from %s at step %d", folder, self.progress.step)

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagate ``loss``; where gradients sync, clip them (``optim.grad_clip``)
        and step the schedule. The optimizer steps (accelerate skips it mid-accumulation)."""
        acc = self.accelerator
        acc.backward(loss)
        if acc.sync_gradients and self.cfg.optim.grad_clip > 0:
            acc.clip_grad_norm_(self.net.parameters(), self.cfg.optim.grad_clip)
        self.optimizer.step()
        if acc.sync_gradients:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def loop(self, step: Step, heldout: BeirSet | None, tokenizer: Any, prompts: PromptSet) -> None:
        """Train until ``plan.steps``: ``step`` each time, then log, checkpoint and
        evaluate on ``heldout`` (None: never) as planned. Ends with an evaluation and a
        resumable checkpoint of the last step."""

        def evaluate(at: int) -> dict[str, float] | None:
            if heldout is None:
                return None
            model = self.accelerator.unwrap_model(self.net).hf_model()
            acc, cfg = self.accelerator, self.cfg
            return evaluate_step(acc, model, tokenizer, heldout, cfg, prompts, self.out_dir, at)

        self._state = step.state
        plan = self.plan
        first = evaluate(0) if self.progress.step == 0 else None
        self.meter.reset()
        while self.progress.step < plan.steps:
            step()
            self.progress.step += 1
            at = self.progress.step
            if at % plan.log_every == 0 or at == plan.steps:
                self._log(step, at)
            if plan.save_every and at % plan.save_every == 0 and at < plan.steps:
                self.checkpoint()
            if plan.eval_every and at % plan.eval_every == 0 and at < plan.steps:
                evaluate(at)
        last = evaluate(self.progress.step)
        if self.main_process and first is not None and last is not None:
            log.info(
                "held-out nDCG@10 (no reasoning): %.4f at step 0 -> %.4f at step %d",
                first["ndcg@10"],
                last["ndcg@10"],
                self.progress.step,
            )
        self.checkpoint()

    def _log(self, step: Step, at: int) -> None:
        """Log the means of the figures since the last logged step, in log.jsonl too."""
        every = self.plan.log_every
        n = every if at % every == 0 else at % every
        elapsed = time.perf_counter() - self.meter.since
        record: dict[str, Any] = {k: v / n for k, v in self.meter.sums.items()}
        record.update(step=at, lr=float(self.scheduler.get_last_lr()[0]), s_per_step=elapsed / n)
        record.update(step.log_fields(elapsed))
        step.log_line(record)
        if self.main_process:
            append_log(self.out_dir, record)
        self.meter.reset()

    def state(self) -> dict[str, Any]:
        """What ``train_state.json`` holds: the step, the config, and the step's state."""
        return {"step": self.progress.step, "config": self.cfg.to_dict(), **self._state()}

    def checkpoint(self) -> Path:
        """Save the resumable ``checkpoint-NNNNNN`` of this step; returns its folder."""
        at, keep = self.progress.step, self.plan.keep_checkpoints
        return save_checkpoint(self.accelerator, self.out_dir, at, self.state(), keep)

    def finish(
        self,
        model: Any,
        tokenizer: Any,
        prompts: PromptSet,
        stage: str,
        merge_lora: bool,
        state_dict: dict[str, Any] | None = None,
    ) -> Path:
        """Save ``out_dir/final`` (:func:`save_final`) from ``model``, the unwrapped
        transformers or peft model, and end the run; returns the final folder."""
        final = save_final(
            self.accelerator,
            model,
            tokenizer,
            self.out_dir,
            stage,
            prompts,
            self.cfg,
            self.state(),
            merge_lora=merge_lora,
            state_dict=state_dict,
        )
        self.accelerator.end_training()
        return final


Encode = Callable[[list[str], str, int], dict[str, torch.Tensor]]


def prompt_encoder(tokenizer: Any, prompts: PromptSet, device: Any) -> Encode:
    """A function of ``(texts, kind, max_tokens)`` that renders the texts as ``kind``
    prompts (:func:`modeling.encode_prompts`) and returns their tensors on ``device``."""

    def encode(texts: list[str], kind: str, max_tokens: int) -> dict[str, torch.Tensor]:
        enc = modeling.encode_prompts(tokenizer, texts, kind, prompts, max_tokens)  # type: ignore[arg-type]
        return {k: v.to(device) for k, v in enc.items()}

    return encode


@dataclass
class Teachers:
    """What the SFT objective distils: the teacher's stored vectors and the
    cross-encoder's scores of the training set (each None when its part is off)."""

    vectors: TeacherVectors | None
    cross: CrossTargets | None

    @classmethod
    def load(
        cls, cfg: Config, train_set: TrainSet, accelerator: Accelerator, used: bool = True
    ) -> Teachers:
        """The teachers ``cfg.loss`` asks for (none unless ``used``): the vectors built
        with the dataset, else computed once here (main process first)."""
        vectors = None
        if used and cfg.loss.distill > 0:
            with accelerator.main_process_first():
                vectors = teacher_vectors_for(cfg, train_set)
        weight = cfg.loss.cross_distill if used else 0.0
        return cls(vectors, cross_targets_for(cfg.data.train_path, weight))

    def scores(
        self, query_ids: Sequence[str], document_ids: Sequence[str], device: Any
    ) -> tuple[torch.Tensor | None, tuple[torch.Tensor, torch.Tensor] | None]:
        """``(teacher_scores, cross_scores)`` of a batch, as :class:`SFTObjective` takes them."""
        teacher_scores = None
        if self.vectors is not None:
            scores = self.vectors.scores(query_ids, document_ids)
            teacher_scores = torch.from_numpy(scores).to(device)
        return teacher_scores, batch_tensors(self.cross, query_ids, document_ids, device)


__all__ = ["Encode", "Meter", "Plan", "Step", "Teachers", "TrainingRun", "prompt_encoder"]
