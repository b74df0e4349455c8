"""Search-R3 supervised fine-tuning (stage 1), top to bottom.

    python -m training.sft --config training/configs/tiny-cpu.yaml [--train.steps 50 ...]
    accelerate launch -m training.sft --config training/configs/smollm2-135m.yaml
    torchrun --nproc_per_node 8 -m training.sft --config training/configs/qwen2.5-1.5b.yaml

One process by default; under ``accelerate launch`` or ``torchrun`` every process
trains on its own share of the queries (DDP, or FSDP with ``train.fsdp``), and the
other processes' documents serve as extra in-batch negatives.

The loss is the paper's four parts (:class:`training.objective.SFTObjective`): LM
cross-entropy on the response "The embedding is <|embed_token|>", KL to the frozen
base on the same tokens, InfoNCE over in-batch and mined hard negatives, and a
triplet margin on cosine. Writes ``out_dir/checkpoint-NNNNNN/`` (resumable, with the
config) and ``out_dir/final/``: a plain HF checkpoint (LoRA merged) with ``sr3.json``
that ``python -m training.export`` converts to GGUF.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from sr3desk.model.prompts import PromptSet
from training import modeling, prepare
from training.checkpoints import BASE, read_state, save_model
from training.config import Config, ConfigError
from training.data.batches import Batch, BatchSampler, load_train_set
from training.data.build import ensure_dataset
from training.heldout import load_heldout
from training.objective import (
    EmbedLM,
    LossParts,
    Reference,
    SFTObjective,
    gather_with_grad,
    no_gather,
)
from training.run import Plan, Teachers, TrainingRun, prompt_encoder

if TYPE_CHECKING:
    from accelerate import Accelerator

    from training.data.beir import BeirSet

log = logging.getLogger(__name__)


def read_checkpoint_config(path: str | Path) -> Config:
    """The config a checkpoint (or a final/ folder) was trained with."""
    return Config.from_dict(read_state(path)["config"])


def train(cfg: Config) -> Path:
    """Run SFT as configured; returns the final HF checkpoint folder."""
    # ---- setup: processes, precision, seed, output folder
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    accelerator = make_accelerator(cfg)
    if not accelerator.is_main_process:
        log.setLevel(logging.WARNING)  # one process reports; all of them train
    t = cfg.train
    plan = Plan.of(t, "train", eval_every=cfg.eval.every)
    run = TrainingRun(accelerator, cfg, Path(t.out_dir), plan, t.seed)
    log.info(
        "SFT: %d process(es) on %s, precision %s",
        accelerator.num_processes,
        accelerator.device,
        accelerator.mixed_precision,
    )

    # ---- data, model, optimizer and schedule
    data = load_data(cfg, accelerator)
    model = load_model(cfg, run)
    trainable = [p for p in model.net.parameters() if p.requires_grad]
    prepare.log_parameters(model.net, trainable, cfg.lora.enabled, cfg.model.path)
    o = cfg.optim
    optimizer = prepare.make_optimizer(trainable, o, o.lr, fused=not t.fsdp)
    net = run.prepare(
        model.net,
        optimizer,
        lambda s: prepare.lr_factor(s, o.warmup_steps, t.steps, o.schedule, o.min_lr_ratio),
        data.sampler,
    )

    # ---- resume, the loop, the end: a merged HF model
    run.resume(lambda folder: check_resume(cfg, folder))
    heldout = None if t.fsdp else data.heldout  # sharded weights: evaluate the exported model
    run.loop(SFTStep(cfg, run, data, model), heldout, model.tokenizer, model.prompts)
    state_dict = None
    if t.fsdp:  # every process takes part in gathering the shards
        full = accelerator.get_state_dict(net)
        state_dict = {k.removeprefix("model."): v for k, v in full.items()} if full else None
    inner = accelerator.unwrap_model(net).model
    return run.finish(inner, model.tokenizer, model.prompts, "sft", cfg.lora.enabled, state_dict)


def make_accelerator(cfg: Config) -> Accelerator:
    """The accelerate Accelerator of an SFT run: precision, accumulation, DDP or FSDP."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, FullyShardedDataParallelPlugin

    fsdp_plugin = None
    if cfg.train.fsdp:
        fsdp_plugin = FullyShardedDataParallelPlugin(
            fsdp_version=2,
            auto_wrap_policy="transformer_based_wrap",
            state_dict_type="SHARDED_STATE_DICT",
        )
    # Without LM and KL parts the output layer gets no gradient; DDP must be told.
    unused = cfg.loss.lm == 0 and cfg.loss.kl == 0
    return Accelerator(
        # Without an accelerator, torchrun/accelerate launch run one CPU process each (gloo).
        cpu=not torch.accelerator.is_available(),
        mixed_precision=prepare.mixed_precision(cfg.train.precision),
        gradient_accumulation_steps=cfg.train.grad_accum,
        fsdp_plugin=fsdp_plugin,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=unused)],
    )


def check_resume(cfg: Config, folder: Path) -> None:
    """Raise ConfigError when checkpoint ``folder`` was trained with another model or LoRA."""
    saved = read_checkpoint_config(folder)
    if saved.model != cfg.model or saved.lora != cfg.lora:
        raise ConfigError(f"{folder} was trained with another model.*/lora.* config")


@dataclass
class SFTData:
    """What SFT trains and evaluates on: this process's batches, the held-out set
    (None: no evaluation) and the teachers the loss distils."""

    sampler: BatchSampler
    heldout: BeirSet | None
    teachers: Teachers


def load_data(cfg: Config, accelerator: Accelerator) -> SFTData:
    """Build the dataset once (main process first), then each process samples its share."""
    with accelerator.main_process_first():
        if not cfg.data.train:
            ensure_dataset(cfg.data.build, cfg.data.dir)
    train_set = load_train_set(cfg.data.train_path)
    t = cfg.train
    rank, world = accelerator.process_index, accelerator.num_processes
    sampler = BatchSampler(train_set, t.batch_size, t.negatives, t.seed, rank, world)
    heldout = load_heldout(cfg)
    # Built with the dataset when data.build uses the teacher; else computed once here.
    teachers = Teachers.load(cfg, train_set, accelerator)
    log.info(
        "data: %d training queries over %d passages; held-out: %s",
        len(train_set.examples),
        len(train_set.corpus),
        f"{len(heldout.judged_queries())} queries" if heldout else "none",
    )
    return SFTData(sampler, heldout, teachers)


@dataclass
class SFTModel:
    """The model SFT trains: ``net`` over the transformers (or peft) model, its
    tokenizer and prompts, and the frozen copy KL compares with (None: LoRA's
    adapters off serve, or there is no KL part)."""

    net: EmbedLM
    tokenizer: Any
    prompts: PromptSet
    reference: EmbedLM | None


def load_model(cfg: Config, run: TrainingRun) -> SFTModel:
    """Base + embed token, re-drawn as ``model.init_std`` asks (saved as the run's
    untrained base), a frozen reference for KL, then LoRA or the trained layers."""
    model: Any
    model, tokenizer = modeling.load_model(cfg.model.path)
    if cfg.model.init_std > 0:
        redraw_weights(model, cfg.model.init_std, cfg.train.seed)
    token_id = modeling.ensure_embed_token(model, tokenizer)
    prompts = PromptSet()
    if cfg.model.init_std > 0 and run.main_process:
        # The re-drawn start is this run's untrained base: evaluate against it, not
        # against the checkpoint it was drawn for.
        name = f"{Path(cfg.model.path).name}-{BASE}"
        save_model(run.out_dir / BASE, model, tokenizer, name, BASE, prompts)
        log.info("untrained base: %s", run.out_dir / BASE)
    n_response = len(tokenizer.encode(prompts.answer_prefix, add_special_tokens=False)) + 1
    reference: EmbedLM | None = None
    if cfg.loss.kl > 0 and not cfg.lora.enabled:
        # Full fine-tuning needs its own frozen copy; LoRA turns its adapters off instead.
        bf16 = run.accelerator.mixed_precision == "bf16"
        ref_model = prepare.frozen_copy(model, bf16=bf16)
        reference = EmbedLM(ref_model, token_id, n_response).to(run.accelerator.device)
    if cfg.lora.enabled:
        model = prepare.add_lora(model, cfg.lora, token_id)
    elif cfg.model.train_layers:
        prepare.train_top_layers(
            model, cfg.model.train_layers, token_id, cfg.model.train_token_rows
        )
    prepare.gradient_checkpointing(
        model.get_base_model() if cfg.lora.enabled else model, cfg.model, generates=False
    )
    model.train()
    return SFTModel(EmbedLM(model, token_id, n_response), tokenizer, prompts, reference)


class SFTStep:
    """One SFT optimizer step: ``train.grad_accum`` micro-batches of queries and their
    documents through :class:`SFTObjective` (see :class:`training.run.Step`)."""

    def __init__(self, cfg: Config, run: TrainingRun, data: SFTData, model: SFTModel) -> None:
        self.cfg, self.run, self.data, self.model = cfg, run, data, model
        self.objective = SFTObjective(cfg.loss)
        loss = cfg.loss
        self.logit_rows = (loss.lm_queries or None) if loss.lm > 0 or loss.kl > 0 else 0
        many = cfg.train.gather_across_processes and run.accelerator.num_processes > 1
        self.gather = gather_with_grad if many else no_gather
        self.reference = Reference(model.reference, lambda: run.accelerator.unwrap_model(run.net))
        self.encode = prompt_encoder(model.tokenizer, model.prompts, run.device)
        self.tokens = 0  # since the last logged step
        self.checked_response = False

    def __call__(self) -> None:
        """Take one optimizer step over ``train.grad_accum`` micro-batches."""
        acc, m, t = self.run.accelerator, self.cfg.model, self.cfg.train
        for _ in range(t.grad_accum):
            batch = next(self.data.sampler)
            q = self.encode(batch.queries, "query", m.max_query_tokens)
            d = self.encode(batch.documents, "document", m.max_document_tokens)
            self.tokens += int(q["attention_mask"].sum() + d["attention_mask"].sum())
            with acc.accumulate(self.run.net), acc.autocast():
                parts = self.loss(batch, q, d)
                self.run.backward(parts.total)
            self.run.meter.add(parts.floats(), t.grad_accum)

    def loss(
        self, batch: Batch, q: dict[str, torch.Tensor], d: dict[str, torch.Tensor]
    ) -> LossParts:
        """The loss parts of one micro-batch: ``batch`` with its queries ``q`` and
        documents ``d`` encoded (input_ids, attention_mask)."""
        net, device = self.run.net, self.run.device
        q_out = net(q["input_ids"], q["attention_mask"], logit_rows=self.logit_rows)
        d_out = net(d["input_ids"], d["attention_mask"], logit_rows=0)
        # The template must put the response last (checked where there are response
        # rows: none when the LM and KL parts are off).
        if not self.checked_response and q_out.targets.shape[0] > 0:
            _check_response(self.model.tokenizer, q_out.targets[0], self.model.prompts)
            self.checked_response = True
        ref_logits = None
        if self.cfg.loss.kl > 0:
            ids, mask = q["input_ids"], q["attention_mask"]
            if self.model.reference is not None and self.logit_rows is not None:
                # Only the rows whose logits are compared: a forward pass of the whole
                # batch through the copy would be wasted on the others.
                ids, mask = ids[: self.logit_rows], mask[: self.logit_rows]
            ref_logits = self.reference(ids, mask, self.logit_rows).logits
        ignore = torch.tensor(batch.ignore, device=device)
        teacher_scores, cross_scores = self.data.teachers.scores(
            batch.query_ids, batch.document_ids, device
        )
        return self.objective(
            q_out,
            d_out,
            ignore,
            batch.negatives_per_query,
            ref_logits,
            self.gather,
            teacher_scores,
            cross_scores,
        )

    def log_fields(self, elapsed: float) -> dict[str, Any]:
        """The tokens per second (all processes) since the last logged step."""
        world = self.run.accelerator.num_processes
        fields = {"tokens_per_s": self.tokens * world / max(elapsed, 1e-9)}
        self.tokens = 0
        return fields

    def log_line(self, record: dict[str, Any]) -> None:
        """Log a logged step's loss, its parts, lr and step time."""
        shown = " ".join(
            f"{k} {record[k]:.4f}"
            for k in ("lm", "kl", "infonce", "triplet", "distill", "cross")
            if k in record
        )
        log.info(
            "step %d/%d loss %.4f (%s) lr %.2e %.2fs/step",
            record["step"],
            self.cfg.train.steps,
            record["loss"],
            shown,
            record["lr"],
            record["s_per_step"],
        )

    def state(self) -> dict[str, Any]:
        """SFT's checkpoints hold the step and config only."""
        return {}


def redraw_weights(model: nn.Module, std: float, seed: int) -> None:
    """Re-draw every weight matrix of ``model`` from N(0, ``std``), in place.

    Norm scales and biases (1-D) are kept. Deterministic for a given ``seed``.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim >= 2:
                param.copy_(torch.randn(param.shape, generator=gen) * std)
    log.info("weights re-drawn from N(0, %g) (model.init_std)", std)


def _check_response(tokenizer: Any, targets: torch.Tensor, prompts: PromptSet) -> None:
    """Fail early when the LM targets are not the response text (template mismatch)."""
    text = tokenizer.decode(targets.tolist())
    want = prompts.answer_prefix + prompts.embed_token
    if text.strip() != want.strip():
        raise ValueError(f"response tokens decode to {text!r}, expected {want!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.sft``: parse the config and train; returns the exit status."""
    return prepare.run_from_command_line(
        "sft", Config, argv, train, "Search-R3 supervised fine-tuning."
    )


if __name__ == "__main__":
    sys.exit(main())
