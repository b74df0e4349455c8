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
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sr3desk.model.prompts import PromptSet
from training import modeling, prepare
from training.checkpoints import (
    BASE,
    StepCounter,
    append_log,
    read_state,
    resolve_resume,
    save_checkpoint,
    save_final,
    save_model,
)
from training.config import Config, ConfigError, save_config
from training.data.batches import BatchSampler, load_train_set
from training.data.build import ensure_dataset
from training.data.cross_targets import batch_tensors, cross_targets_for
from training.data.teacher_vectors import TeacherVectors, teacher_vectors_for
from training.heldout import evaluate_step, load_heldout
from training.objective import EmbedLM, SFTObjective, gather_with_grad, no_gather

log = logging.getLogger(__name__)


def read_checkpoint_config(path: str | Path) -> Config:
    """The config a checkpoint (or a final/ folder) was trained with."""
    return Config.from_dict(read_state(path)["config"])


def train(cfg: Config) -> Path:
    """Run SFT as configured; returns the final HF checkpoint folder."""
    from accelerate import Accelerator
    from accelerate.utils import (
        DistributedDataParallelKwargs,
        FullyShardedDataParallelPlugin,
        set_seed,
    )

    # ---- setup: processes, precision, seed, output folder
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    fsdp_plugin = None
    if cfg.train.fsdp:
        fsdp_plugin = FullyShardedDataParallelPlugin(
            fsdp_version=2,
            auto_wrap_policy="transformer_based_wrap",
            state_dict_type="SHARDED_STATE_DICT",
        )
    # Without LM and KL parts the output layer gets no gradient; DDP must be told.
    unused = cfg.loss.lm == 0 and cfg.loss.kl == 0
    accelerator = Accelerator(
        # Without an accelerator, torchrun/accelerate launch run one CPU process each (gloo).
        cpu=not torch.accelerator.is_available(),
        mixed_precision=prepare.mixed_precision(cfg.train.precision),
        gradient_accumulation_steps=cfg.train.grad_accum,
        fsdp_plugin=fsdp_plugin,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=unused)],
    )
    main_process = accelerator.is_main_process
    world, rank = accelerator.num_processes, accelerator.process_index
    if not main_process:
        log.setLevel(logging.WARNING)  # one process reports; all of them train
    set_seed(cfg.train.seed)
    out_dir = Path(cfg.train.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if main_process:
        save_config(cfg, out_dir / "config.yaml")
    log.info(
        "SFT: %d process(es) on %s, precision %s",
        world,
        accelerator.device,
        accelerator.mixed_precision,
    )

    # ---- data: build the dataset once (main process first), then each process samples
    with accelerator.main_process_first():
        if not cfg.data.train:
            ensure_dataset(cfg.data.build, cfg.data.dir)
    train_set = load_train_set(cfg.data.train_path)
    sampler = BatchSampler(
        train_set, cfg.train.batch_size, cfg.train.negatives, cfg.train.seed, rank, world
    )
    heldout = load_heldout(cfg)
    teacher_vectors: TeacherVectors | None = None
    if cfg.loss.distill > 0:
        # Built with the dataset when data.build uses the teacher; else computed once here.
        with accelerator.main_process_first():
            teacher_vectors = teacher_vectors_for(cfg, train_set)
    cross_targets = cross_targets_for(cfg.data.train_path, cfg.loss.cross_distill)
    log.info(
        "data: %d training queries over %d passages; held-out: %s",
        len(train_set.examples),
        len(train_set.corpus),
        f"{len(heldout.judged_queries())} queries" if heldout else "none",
    )

    # ---- model: base + embed token, frozen reference for KL, LoRA or full
    model: Any
    model, tokenizer = modeling.load_model(cfg.model.path)
    if cfg.model.init_std > 0:
        redraw_weights(model, cfg.model.init_std, cfg.train.seed)
    token_id = modeling.ensure_embed_token(model, tokenizer)
    prompts = PromptSet()
    if cfg.model.init_std > 0 and main_process:
        # The re-drawn start is this run's untrained base: evaluate against it, not
        # against the checkpoint it was drawn for.
        name = f"{Path(cfg.model.path).name}-{BASE}"
        save_model(out_dir / BASE, model, tokenizer, name, BASE, prompts)
        log.info("untrained base: %s", out_dir / BASE)
    n_response = len(tokenizer.encode(prompts.answer_prefix, add_special_tokens=False)) + 1
    reference: EmbedLM | None = None
    if cfg.loss.kl > 0 and not cfg.lora.enabled:
        # Full fine-tuning needs its own frozen copy; LoRA turns its adapters off instead.
        ref_model = prepare.frozen_copy(model, bf16=accelerator.mixed_precision == "bf16")
        reference = EmbedLM(ref_model, token_id, n_response).to(accelerator.device)
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
    net = EmbedLM(model, token_id, n_response)
    trainable = [p for p in net.parameters() if p.requires_grad]
    prepare.log_parameters(net, trainable, cfg.lora.enabled, cfg.model.path)

    # ---- optimizer and schedule
    optimizer = prepare.make_optimizer(trainable, cfg.optim, cfg.optim.lr, fused=not cfg.train.fsdp)
    o = cfg.optim
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: prepare.lr_factor(s, o.warmup_steps, cfg.train.steps, o.schedule, o.min_lr_ratio),
    )
    # The schedule is stepped by hand once per optimizer step (a prepared scheduler
    # would step once per process), so it is registered, not prepared.
    net, optimizer = accelerator.prepare(net, optimizer)
    progress = StepCounter()
    accelerator.register_for_checkpointing(sampler, progress, scheduler)
    objective = SFTObjective(cfg.loss)
    logit_rows = (cfg.loss.lm_queries or None) if cfg.loss.lm > 0 or cfg.loss.kl > 0 else 0
    gather = gather_with_grad if cfg.train.gather_across_processes and world > 1 else no_gather

    # ---- resume: model, optimizer, schedule, data position, RNG and step
    resume = resolve_resume(cfg.train.resume, out_dir, "train.resume")
    if resume is not None:
        saved = read_checkpoint_config(resume)
        if saved.model != cfg.model or saved.lora != cfg.lora:
            raise ConfigError(f"{resume} was trained with another model.*/lora.* config")
        accelerator.load_state(str(resume))
        log.info("resumed from %s at step %d", resume, progress.step)

    def encode(texts: list[str], kind: str, max_tokens: int) -> dict[str, torch.Tensor]:
        enc = modeling.encode_prompts(tokenizer, texts, kind, prompts, max_tokens)  # type: ignore[arg-type]
        return {k: v.to(accelerator.device) for k, v in enc.items()}

    def checkpoint(step: int) -> None:
        state = {"step": step, "config": cfg.to_dict()}
        save_checkpoint(accelerator, out_dir, step, state, cfg.train.keep_checkpoints)

    def run_eval(step: int) -> dict[str, float] | None:
        if heldout is None or cfg.train.fsdp:
            return None  # sharded weights: evaluate the exported model instead
        inner = accelerator.unwrap_model(net).hf_model()
        return evaluate_step(accelerator, inner, tokenizer, heldout, cfg, prompts, out_dir, step)

    # ---- the loop
    first_eval = run_eval(0) if progress.step == 0 else None
    sums: dict[str, float] = {}
    t_log = time.perf_counter()
    tokens = 0
    checked_response = False
    while progress.step < cfg.train.steps:
        for _ in range(cfg.train.grad_accum):
            batch = next(sampler)
            q = encode(batch.queries, "query", cfg.model.max_query_tokens)
            d = encode(batch.documents, "document", cfg.model.max_document_tokens)
            tokens += int(q["attention_mask"].sum() + d["attention_mask"].sum())
            with accelerator.accumulate(net), accelerator.autocast():
                q_out = net(q["input_ids"], q["attention_mask"], logit_rows=logit_rows)
                d_out = net(d["input_ids"], d["attention_mask"], logit_rows=0)
                # The template must put the response last (checked where there are
                # response rows: none when the LM and KL parts are off).
                if not checked_response and q_out.targets.shape[0] > 0:
                    _check_response(tokenizer, q_out.targets[0], prompts)
                    checked_response = True
                ref_logits = None
                if cfg.loss.kl > 0:
                    with torch.no_grad():
                        if reference is not None:
                            # Only the rows whose logits are compared: a forward pass
                            # of the whole batch would be wasted on the others.
                            rows = slice(None) if logit_rows is None else slice(logit_rows)
                            ref = reference(
                                q["input_ids"][rows], q["attention_mask"][rows], logit_rows
                            )
                            ref_logits = ref.logits
                        else:
                            inner_net = accelerator.unwrap_model(net)
                            with inner_net.model.disable_adapter():
                                ref = inner_net(q["input_ids"], q["attention_mask"], logit_rows)
                                ref_logits = ref.logits
                ignore = torch.tensor(batch.ignore, device=accelerator.device)
                teacher_scores = None
                if teacher_vectors is not None:
                    scores = teacher_vectors.scores(batch.query_ids, batch.document_ids)
                    teacher_scores = torch.from_numpy(scores).to(accelerator.device)
                cross_scores = batch_tensors(
                    cross_targets, batch.query_ids, batch.document_ids, accelerator.device
                )
                parts = objective(
                    q_out,
                    d_out,
                    ignore,
                    batch.negatives_per_query,
                    ref_logits,
                    gather,
                    teacher_scores,
                    cross_scores,
                )
                accelerator.backward(parts.total)
                if accelerator.sync_gradients and cfg.optim.grad_clip > 0:
                    accelerator.clip_grad_norm_(net.parameters(), cfg.optim.grad_clip)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            for key, value in parts.floats().items():
                sums[key] = sums.get(key, 0.0) + value / cfg.train.grad_accum
        progress.step += 1
        step = progress.step
        if step % cfg.train.log_every == 0 or step == cfg.train.steps:
            n = (
                cfg.train.log_every
                if step % cfg.train.log_every == 0
                else step % cfg.train.log_every
            )
            elapsed = time.perf_counter() - t_log
            record = {k: v / n for k, v in sums.items()}
            record.update(
                step=step,
                lr=float(scheduler.get_last_lr()[0]),
                s_per_step=elapsed / n,
                tokens_per_s=tokens * world / max(elapsed, 1e-9),
            )
            shown = " ".join(
                f"{k} {record[k]:.4f}"
                for k in ("lm", "kl", "infonce", "triplet", "distill", "cross")
                if k in record
            )
            log.info(
                "step %d/%d loss %.4f (%s) lr %.2e %.2fs/step",
                step,
                cfg.train.steps,
                record["loss"],
                shown,
                record["lr"],
                record["s_per_step"],
            )
            if main_process:
                append_log(out_dir, record)
            sums, tokens, t_log = {}, 0, time.perf_counter()
        if cfg.train.save_every and step % cfg.train.save_every == 0 and step < cfg.train.steps:
            checkpoint(step)
        if cfg.eval.every and step % cfg.eval.every == 0 and step < cfg.train.steps:
            run_eval(step)

    # ---- the end: a last evaluation, a resumable checkpoint, the merged HF model
    last = run_eval(progress.step)
    if main_process and last is not None and first_eval is not None:
        log.info(
            "held-out nDCG@10: %.4f at step 0 -> %.4f at step %d",
            first_eval["ndcg@10"],
            last["ndcg@10"],
            progress.step,
        )
    checkpoint(progress.step)
    state_dict = None
    if cfg.train.fsdp:  # every process takes part in gathering the shards
        full = accelerator.get_state_dict(net)
        state_dict = {k.removeprefix("model."): v for k, v in full.items()} if full else None
    final = save_final(
        accelerator,
        accelerator.unwrap_model(net).model,
        tokenizer,
        out_dir,
        "sft",
        prompts,
        cfg,
        {"step": progress.step, "config": cfg.to_dict()},
        merge_lora=cfg.lora.enabled,
        state_dict=state_dict,
    )
    accelerator.end_training()
    return final


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
