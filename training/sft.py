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

import copy
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from sr3desk.errors import Sr3Error
from sr3desk.model.prompts import PromptSet
from sr3desk.search.metrics import ndcg_at_k, recall_at_k, reciprocal_rank
from training import modeling
from training.config import Config, ConfigError, load_config, save_config
from training.data import BatchSampler, BeirSet, ensure_dataset, load_beir, load_train_set
from training.objective import EmbedLM, SFTObjective, gather_with_grad, no_gather

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
FINAL = "final"
BASE = "base"  # the re-drawn start of a run with model.init_std
STATE_FILE = "train_state.json"


class Progress:
    """The step counter, saved with each checkpoint (accelerate's custom-object protocol)."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict[str, int]:
        """Counter state for the checkpoint."""
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the counter from a checkpoint."""
        self.step = int(state["step"])


def mixed_precision(precision: str) -> str:
    """accelerate's mixed_precision for ``train.precision`` on this machine."""
    if precision == "auto":
        cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return "bf16" if cuda_bf16 else "no"
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]


def lr_factor(step: int, cfg: Config) -> float:
    """Multiplier of the peak lr at ``step``: linear warm-up, then the chosen decay."""
    o = cfg.optim
    if step < o.warmup_steps:
        return (step + 1) / o.warmup_steps
    if o.schedule == "constant":
        return 1.0
    span = max(cfg.train.steps - o.warmup_steps, 1)
    done = min((step - o.warmup_steps) / span, 1.0)
    shape = 1.0 - done if o.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * done))
    return o.min_lr_ratio + (1.0 - o.min_lr_ratio) * shape


def checkpoints(out_dir: Path) -> list[Path]:
    """Step checkpoints in ``out_dir``, oldest first."""
    return sorted(p for p in out_dir.glob(f"{CHECKPOINT_PREFIX}*") if (p / STATE_FILE).is_file())


def resolve_resume(cfg: Config) -> Path | None:
    """The checkpoint to resume from (``train.resume``: a folder, or 'auto'), or None."""
    if not cfg.train.resume:
        return None
    if cfg.train.resume == "auto":
        found = checkpoints(Path(cfg.train.out_dir))
        return found[-1] if found else None
    path = Path(cfg.train.resume)
    if not (path / STATE_FILE).is_file():
        raise ConfigError(f"train.resume={path} is not a checkpoint folder (no {STATE_FILE})")
    return path


def read_checkpoint_config(path: str | Path) -> Config:
    """The config a checkpoint (or a final/ folder) was trained with."""
    state = json.loads((Path(path) / STATE_FILE).read_text(encoding="utf-8"))
    return Config.from_dict(state["config"])


def evaluate_embeddings(
    model: nn.Module,
    tokenizer: Any,
    data: BeirSet,
    cfg: Config,
    prompts: PromptSet,
) -> dict[str, float]:
    """nDCG@10, Recall@10 and MRR@10 of the torch model on (part of) the held-out set.

    A quick check during training; the reported figures come from
    ``python -m training.eval`` on the exported GGUF.
    """
    qids = data.judged_queries()
    if cfg.eval.max_queries:
        qids = qids[: cfg.eval.max_queries]
    ids = list(data.corpus)
    docs = modeling.embed_texts(
        model,  # type: ignore[arg-type]
        tokenizer,
        [data.corpus[i].full_text for i in ids],
        "document",
        prompts,
        cfg.eval.batch_size,
        cfg.model.max_document_tokens,
    )
    queries = modeling.embed_texts(
        model,  # type: ignore[arg-type]
        tokenizer,
        [data.queries[q] for q in qids],
        "query",
        prompts,
        cfg.eval.batch_size,
        cfg.model.max_query_tokens,
    )
    ranks = (queries @ docs.T).argsort(dim=1, descending=True)[:, :10]
    totals = {"ndcg@10": 0.0, "recall@10": 0.0, "mrr@10": 0.0}
    for row, qid in zip(ranks.tolist(), qids, strict=True):
        ranked = [ids[i] for i in row]
        relevant = {d for d, r in data.qrels[qid].items() if r > 0}
        totals["ndcg@10"] += ndcg_at_k(ranked, relevant, 10)
        totals["recall@10"] += recall_at_k(ranked, relevant, 10)
        totals["mrr@10"] += reciprocal_rank(ranked, relevant, 10)
    return {k: v / max(len(qids), 1) for k, v in totals.items()}


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
        mixed_precision=mixed_precision(cfg.train.precision),
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
    heldout: BeirSet | None = None
    if cfg.eval.enabled and cfg.data.heldout_path.is_dir():
        heldout = load_beir(cfg.data.heldout_path, cfg.data.heldout_split)
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
        save_base(model, tokenizer, out_dir / BASE, prompts, cfg)
    n_response = len(tokenizer.encode(prompts.answer_prefix, add_special_tokens=False)) + 1
    reference: EmbedLM | None = None
    if cfg.loss.kl > 0 and not cfg.lora.enabled:
        # Full fine-tuning needs its own frozen copy; LoRA turns its adapters off instead.
        ref_model = copy.deepcopy(model).requires_grad_(False).eval()
        if accelerator.mixed_precision == "bf16":
            ref_model.to(torch.bfloat16)  # only read, never trained: half the memory
        reference = EmbedLM(ref_model, token_id, n_response).to(accelerator.device)
    if cfg.lora.enabled:
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        trainable_tokens = None
        if cfg.lora.train_embed_token:
            trainable_tokens = {_module_name(model, model.get_input_embeddings()): [token_id]}
            out_emb = model.get_output_embeddings()
            if out_emb is not None and out_emb.weight is not model.get_input_embeddings().weight:
                trainable_tokens[_module_name(model, out_emb)] = [token_id]
        model = get_peft_model(
            model,
            PeftLoraConfig(
                r=cfg.lora.r,
                lora_alpha=cfg.lora.alpha,
                lora_dropout=cfg.lora.dropout,
                target_modules=list(cfg.lora.target_modules),
                trainable_token_indices=trainable_tokens,
                task_type="CAUSAL_LM",
            ),
        )
    if cfg.model.gradient_checkpointing:
        hf = model.get_base_model() if cfg.lora.enabled else model
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        hf.config.use_cache = False
    model.train()
    net = EmbedLM(model, token_id, n_response)
    trainable = [p for p in net.parameters() if p.requires_grad]
    log.info(
        "model: %s, %.1fM parameters, %.2fM trained (%s)",
        cfg.model.path,
        sum(p.numel() for p in net.parameters()) / 1e6,
        sum(p.numel() for p in trainable) / 1e6,
        "LoRA" if cfg.lora.enabled else "full",
    )

    # ---- optimizer and schedule; decay only matrices (not norms, biases)
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    # The fused kernel is several times faster; sharded (FSDP) parameters use the default.
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.optim.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.optim.lr,
        betas=(cfg.optim.beta1, cfg.optim.beta2),
        fused=not cfg.train.fsdp,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    # The schedule is stepped by hand once per optimizer step (a prepared scheduler
    # would step once per process), so it is registered, not prepared.
    net, optimizer = accelerator.prepare(net, optimizer)
    progress = Progress()
    accelerator.register_for_checkpointing(sampler, progress, scheduler)
    objective = SFTObjective(cfg.loss)
    logit_rows = (cfg.loss.lm_queries or None) if cfg.loss.lm > 0 or cfg.loss.kl > 0 else 0
    gather = gather_with_grad if cfg.train.gather_across_processes and world > 1 else no_gather

    # ---- resume: model, optimizer, schedule, data position, RNG and step
    resume = resolve_resume(cfg)
    if resume is not None:
        saved = read_checkpoint_config(resume)
        if saved.model != cfg.model or saved.lora != cfg.lora:
            raise ConfigError(f"{resume} was trained with another model.*/lora.* config")
        accelerator.load_state(str(resume))
        log.info("resumed from %s at step %d", resume, progress.step)

    def encode(texts: list[str], kind: str, max_tokens: int) -> dict[str, torch.Tensor]:
        enc = modeling.encode_prompts(tokenizer, texts, kind, prompts, max_tokens)  # type: ignore[arg-type]
        return {k: v.to(accelerator.device) for k, v in enc.items()}

    def save_checkpoint(step: int) -> None:
        folder = out_dir / f"{CHECKPOINT_PREFIX}{step:06d}"
        accelerator.save_state(str(folder))
        if main_process:
            state = {"step": step, "config": cfg.to_dict()}
            (folder / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
            for old in checkpoints(out_dir)[: -cfg.train.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    def run_eval(step: int) -> dict[str, float] | None:
        if heldout is None or cfg.train.fsdp:
            return None  # sharded weights: evaluate the exported model instead
        metrics = None
        if main_process:
            inner = accelerator.unwrap_model(net).hf_model()
            inner.eval()
            with torch.no_grad(), accelerator.autocast():
                metrics = evaluate_embeddings(inner, tokenizer, heldout, cfg, prompts)
            inner.train()
            log.info("eval step %d: %s", step, " ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
            _append_log(out_dir, {"step": step, "eval": metrics})
        accelerator.wait_for_everyone()
        return metrics

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
                if not checked_response:  # the template must put the response last
                    _check_response(tokenizer, q_out.targets[0], prompts)
                    checked_response = True
                ref_logits = None
                if cfg.loss.kl > 0:
                    with torch.no_grad():
                        if reference is not None:
                            ref = reference(q["input_ids"], q["attention_mask"], logit_rows)
                            ref_logits = ref.logits
                        else:
                            inner_net = accelerator.unwrap_model(net)
                            with inner_net.model.disable_adapter():
                                ref = inner_net(q["input_ids"], q["attention_mask"], logit_rows)
                                ref_logits = ref.logits
                ignore = torch.tensor(batch.ignore, device=accelerator.device)
                parts = objective(
                    q_out, d_out, ignore, batch.negatives_per_query, ref_logits, gather
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
            log.info(
                "step %d/%d loss %.4f (lm %.4f kl %.4f infonce %.4f triplet %.4f) "
                "lr %.2e %.2fs/step",
                step,
                cfg.train.steps,
                record["loss"],
                record["lm"],
                record["kl"],
                record["infonce"],
                record["triplet"],
                record["lr"],
                record["s_per_step"],
            )
            if main_process:
                _append_log(out_dir, record)
            sums, tokens, t_log = {}, 0, time.perf_counter()
        if cfg.train.save_every and step % cfg.train.save_every == 0 and step < cfg.train.steps:
            save_checkpoint(step)
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
    save_checkpoint(progress.step)
    final = out_dir / FINAL
    state_dict = None
    if cfg.train.fsdp:  # every process takes part in gathering the shards
        full = accelerator.get_state_dict(net)
        state_dict = {k.removeprefix("model."): v for k, v in full.items()} if full else None
    if main_process:
        hf = accelerator.unwrap_model(net).model
        if cfg.lora.enabled:
            hf = hf.merge_and_unload()
        if final.exists():
            shutil.rmtree(final)
        hf.save_pretrained(str(final), state_dict=state_dict)
        tokenizer.save_pretrained(str(final))
        save_config(cfg, final / "config.yaml")
        (final / STATE_FILE).write_text(
            json.dumps({"step": progress.step, "config": cfg.to_dict()}, indent=2),
            encoding="utf-8",
        )
        sidecar = {
            "name": f"{Path(cfg.model.path).name}-sft",
            "stage": "sft",
            "prompts": {k: v for k, v in vars(prompts).items() if k != "from_metadata"},
        }
        (final / "sr3.json").write_text(json.dumps(sidecar, indent=2), encoding="utf-8")
        log.info("final model: %s", final)
    accelerator.wait_for_everyone()
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


def save_base(
    model: nn.Module, tokenizer: Any, folder: Path, prompts: PromptSet, cfg: Config
) -> None:
    """Save the untrained start of a run as an HF checkpoint with an ``sr3.json`` (stage base)."""
    if folder.exists():
        shutil.rmtree(folder)
    cast(Any, model).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    sidecar = {
        "name": f"{Path(cfg.model.path).name}-base",
        "stage": "base",
        "prompts": {k: v for k, v in vars(prompts).items() if k != "from_metadata"},
    }
    (folder / "sr3.json").write_text(json.dumps(sidecar, indent=2), encoding="utf-8")
    log.info("untrained base: %s", folder)


def _module_name(model: nn.Module, module: nn.Module) -> str:
    """The attribute name of ``module`` inside ``model`` (e.g. embed_tokens, lm_head)."""
    for name, mod in model.named_modules():
        if mod is module:
            return name.rsplit(".", 1)[-1]
    raise ValueError("module not found in the model")


def _check_response(tokenizer: Any, targets: torch.Tensor, prompts: PromptSet) -> None:
    """Fail early when the LM targets are not the response text (template mismatch)."""
    text = tokenizer.decode(targets.tolist())
    want = prompts.answer_prefix + prompts.embed_token
    if text.strip() != want.strip():
        raise ValueError(f"response tokens decode to {text!r}, expected {want!r}")


def _append_log(out_dir: Path, record: dict[str, Any]) -> None:
    with (out_dir / "log.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.sft``: parse the config and train; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        cfg = load_config(
            Config,
            argv,
            prog="python -m training.sft",
            description="Search-R3 supervised fine-tuning.",
        )
        final = train(cfg)
    except Sr3Error as exc:
        sys.stderr.write(f"training.sft: error: {exc}\n")
        return exc.exit_code
    sys.stdout.write(f"{final}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
