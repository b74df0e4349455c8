"""Search-R3 reinforcement learning (stage 2), top to bottom.

    python -m training.rl --config training/configs/tiny-cpu.yaml [--init CHECKPOINT] [...]
    accelerate launch -m training.rl --config training/configs/qwen2.5-1.5b.yaml --init ...

Starts from the SFT model (``--init``; default: ``train.out_dir/final`` of the same
config) and runs group-relative policy optimisation on the reasoning that leads to
``<|embed_token|>``:

1. for each training query, sample ``rl.group_size`` completions of the reasoning
   prompt in one batched ``generate`` (the token, or the forced suffix when the
   budget runs out, as in the app);
2. one forward pass gives the completion tokens' log-probs and the embedding at the
   token; the frozen reference (the initial model) gives its log-probs;
3. the environment (:mod:`training.env`) retrieves candidates for each embedding,
   re-encodes the positives and the candidates' graph neighbourhoods with the
   current model, and the rollout's reward is the positive's rank among the fresh
   candidates (:mod:`training.rewards`) plus a format part;
4. advantages are normalised within each query's group; the loss is the clipped
   policy loss with KL to the reference, plus InfoNCE of the reasoning embeddings
   against the positives and the environment's hardest candidates, plus the SFT
   objective on the plain (no-reasoning) query prompts: reasoning and embedding
   improve together, and the default search path keeps what SFT taught it.

The defaults are conservative (small lr, KL to the reference, contrastive and SFT
parts on) so RL does not undo the SFT embedding. Writes ``rl.out_dir/checkpoint-*``
(resumable; the environment re-encodes the corpus on resume) and ``rl.out_dir/final``,
an HF checkpoint with ``sr3.json`` (stage ``rl``) that ``python -m training.export``
converts.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from training import modeling, prepare
from training.checkpoints import (
    FINAL,
    StepCounter,
    append_log,
    read_prompts,
    read_state,
    resolve_resume,
    save_checkpoint,
    save_final,
)
from training.config import ConfigError, RLRunConfig, save_config
from training.data.batches import BatchSampler, load_train_set, sample_corpus
from training.data.cross_targets import batch_tensors, cross_targets_for
from training.data.teacher_vectors import TeacherVectors, teacher_vectors_for
from training.env import CorpusEnv
from training.heldout import evaluate_step, load_heldout
from training.losses import InfoNCELoss
from training.objective import EmbedLM, EmbedLMOutput, SFTObjective
from training.rl_loss import GRPOLoss, group_advantages, token_kl
from training.rl_rollout import (
    ReasonLM,
    generate_rollouts,
    policy_forward,
    score_rollouts,
    stop_token_ids,
)

log = logging.getLogger(__name__)


def resolve_init(cfg: RLRunConfig) -> Path:
    """The checkpoint RL starts from: ``rl.init``, else SFT's ``train.out_dir/final``."""
    path = Path(cfg.rl.init) if cfg.rl.init else Path(cfg.train.out_dir) / FINAL
    if not (path / "config.json").is_file():
        how = (
            "give an HF checkpoint folder"
            if cfg.rl.init
            else "run `python -m training.sft` with this config first, or pass --init"
        )
        raise ConfigError(f"RL starts from {path}, which is not an HF checkpoint: {how}")
    return path


def out_dir_of(cfg: RLRunConfig) -> Path:
    """Where RL writes: ``rl.out_dir``, else ``rl`` beside SFT's ``train.out_dir``."""
    return Path(cfg.rl.out_dir) if cfg.rl.out_dir else Path(cfg.train.out_dir).parent / "rl"


# ---------------------------------------------------------------- the run


def train(cfg: RLRunConfig) -> Path:
    """Run RL as configured; returns the final HF checkpoint folder."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    r = cfg.rl
    g = r.group_size

    # ---- setup: processes, precision, seed, output folder
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    accelerator = Accelerator(mixed_precision=prepare.mixed_precision(cfg.train.precision))
    main_process = accelerator.is_main_process
    world, rank = accelerator.num_processes, accelerator.process_index
    device = accelerator.device
    set_seed(cfg.train.seed + rank)  # each process samples its own completions
    init = resolve_init(cfg)
    out_dir = out_dir_of(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    if main_process:
        save_config(cfg, out_dir / "config.yaml")
    log.info("RL from %s: %d process(es) on %s", init, world, device)
    if cfg.train.fsdp:
        # generate() needs whole weights on each process; the 1.5B fits one 80 GB GPU.
        log.info("train.fsdp is an SFT setting: RL runs plain data parallel (DDP)")

    # ---- data: training queries, their positives, the corpus the environment holds
    train_set = sample_corpus(
        load_train_set(cfg.data.train_path), r.env.max_passages, cfg.train.seed
    )
    passage_ids = list(train_set.corpus)
    row_of = {pid: i for i, pid in enumerate(passage_ids)}
    texts = [train_set.corpus[pid] for pid in passage_ids]
    examples = {ex.query_id: ex for ex in train_set.examples}
    sampler = BatchSampler(train_set, r.queries, 0, cfg.train.seed, rank, world)
    heldout = load_heldout(cfg)
    log.info("data: %d queries over %d passages", len(train_set.examples), len(texts))
    teacher_vectors: TeacherVectors | None = None
    if r.sft > 0 and cfg.loss.distill > 0:
        # The SFT part distils the teacher as SFT did, from the same stored vectors.
        with accelerator.main_process_first():
            teacher_vectors = teacher_vectors_for(cfg, train_set)
    weight = cfg.loss.cross_distill if r.sft > 0 else 0.0
    cross_targets = cross_targets_for(cfg.data.train_path, weight)

    # ---- model: the initial checkpoint, trained; a frozen copy of it is the reference
    model, tokenizer = modeling.load_model(init)
    token_id = modeling.ensure_embed_token(model, tokenizer)
    prompts = read_prompts(init)
    stops = stop_token_ids(tokenizer, token_id)
    n_response = len(tokenizer.encode(prompts.answer_prefix, add_special_tokens=False)) + 1
    if cfg.lora.enabled:
        # New adapters on the initial model; the reference is that model, adapters off.
        model = prepare.add_lora(model, cfg.lora, token_id)
        reference = None
    else:
        ref_model = prepare.frozen_copy(model, bf16=accelerator.mixed_precision == "bf16")
        reference = ReasonLM(EmbedLM(ref_model, token_id, n_response)).to(device)
        if cfg.model.train_layers:
            # The layers SFT trained, and no others: the delta over the base stays the same.
            prepare.train_top_layers(
                model, cfg.model.train_layers, token_id, cfg.model.train_token_rows
            )
    net = ReasonLM(EmbedLM(model, token_id, n_response))
    hf: Any = net.hf_model()  # the transformers model (peft's LoRA-injected base under LoRA)
    prepare.gradient_checkpointing(hf, cfg.model, generates=True)
    net.train()
    trainable = [p for p in net.parameters() if p.requires_grad]
    prepare.log_parameters(net, trainable, cfg.lora.enabled, str(init))
    # RL's schedule: linear warm-up to rl.lr, then constant.
    optimizer = prepare.make_optimizer(trainable, cfg.optim, r.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: prepare.lr_factor(s, r.warmup_steps, r.steps)
    )
    net, optimizer = accelerator.prepare(net, optimizer)
    progress = StepCounter()
    accelerator.register_for_checkpointing(sampler, progress, scheduler)

    def frozen(input_ids: torch.Tensor, attention_mask: torch.Tensor, *rest: Any) -> Any:
        """The reference model's output (no gradient): the frozen copy, or adapters off."""
        with torch.no_grad():
            if reference is not None:
                return reference(input_ids, attention_mask, *rest)
            inner = accelerator.unwrap_model(net)
            with inner.embed_lm.model.disable_adapter():
                return inner(input_ids, attention_mask, *rest)

    # ---- resume: model, optimizer, schedule, query stream, RNG and step
    resume = resolve_resume(r.resume, out_dir, "rl.resume")
    if resume is not None:
        saved = RLRunConfig.from_dict(read_state(resume)["config"])
        if saved.model != cfg.model or saved.rl.init != cfg.rl.init:
            raise ConfigError(f"{resume} was trained from another model (model.* or rl.init)")
        accelerator.load_state(str(resume))
        log.info("resumed from %s at step %d", resume, progress.step)

    # ---- the environment: every passage encoded by the current model, plus the graph
    def encode_prompts(batch_texts: list[str], kind: str, max_tokens: int) -> dict[str, Any]:
        enc = modeling.encode_prompts(tokenizer, batch_texts, kind, prompts, max_tokens)  # type: ignore[arg-type]
        return {k: v.to(device) for k, v in enc.items()}

    def encode_passages(rows: Sequence[int]) -> torch.Tensor:
        was_training = hf.training
        hf.eval()
        vecs = []
        with torch.no_grad(), accelerator.autocast():
            for start in range(0, len(rows), r.env.batch_size):
                chunk = [texts[i] for i in rows[start : start + r.env.batch_size]]
                enc = encode_prompts(chunk, "document", cfg.model.max_document_tokens)
                vecs.append(
                    modeling.embed_at_token(
                        hf,
                        enc["input_ids"],
                        enc["attention_mask"],
                        token_id,
                    ).float()
                )
        hf.train(was_training)
        return torch.cat(vecs)

    env = CorpusEnv(
        encode_passages,
        len(texts),
        graph_k=min(r.env.graph_k, len(texts) - 1),
        hops=r.env.hops,
        refresh_every=r.env.refresh_every,
        max_region=r.env.max_region or None,
        batch_size=r.env.batch_size,
    )
    t0 = time.perf_counter()
    env.full_refresh()
    log.info("environment: %d passages encoded in %.1fs", len(texts), time.perf_counter() - t0)

    policy_loss = GRPOLoss(r.clip_eps, r.kl_beta)
    infonce = InfoNCELoss(cfg.loss.temperature)
    sft_objective = SFTObjective(cfg.loss)

    def run_eval(step: int) -> dict[str, float] | None:
        if heldout is None:
            return None
        return evaluate_step(accelerator, hf, tokenizer, heldout, cfg, prompts, out_dir, step)

    def checkpoint(step: int) -> None:
        state = {"step": step, "config": cfg.to_dict(), "env": env.stats.as_dict()}
        save_checkpoint(accelerator, out_dir, step, state, r.keep_checkpoints)

    # ---- the loop
    first_eval = run_eval(progress.step) if progress.step == 0 else None
    sums: dict[str, float] = {}
    t_log = time.perf_counter()
    while progress.step < r.steps:
        batch = next(sampler)
        b = len(batch.queries)
        relevant = [{row_of[d] for d in examples[q].positive_ids} for q in batch.query_ids]

        # 1. sample G reasoning completions per query, batched
        t_gen = time.perf_counter()
        with accelerator.autocast():
            rollouts = generate_rollouts(
                hf,
                tokenizer,
                batch.queries,
                prompts,
                stops,
                g,
                r.max_reason_tokens,
                r.temperature,
                r.top_p,
                r.top_k,
            )
        t_gen = time.perf_counter() - t_gen
        with accelerator.autocast():
            ref = policy_forward(frozen, rollouts, r.temperature)
        # Each query is a group; its G rollouts all have the sampler's positive.
        group = torch.arange(b, device=device).repeat_interleave(g)  # (N,)

        for epoch in range(r.ppo_epochs):
            # 2. the policy's log-probs and embeddings, with gradients
            with accelerator.autocast():
                pol = policy_forward(net, rollouts, r.temperature)
            if epoch == 0:
                old_logp = pol.logp.detach()
                # 3. environment: retrieve, refresh the region with the current model, reward
                t_env = time.perf_counter()
                emb = pol.embeddings.detach()
                first = env.retrieve(emb, r.candidates)
                env.step([i for rel in relevant for i in sorted(rel)], first.ids)
                scored = score_rollouts(env, emb, relevant, rollouts, prompts, r)
                t_env = time.perf_counter() - t_env
                advantages = group_advantages(scored.rewards, g).to(device)  # (N,)
                # Documents: each query's positive, then its hardest candidates.
                doc_rows = [row_of[d] for d in batch.document_ids[:b]]
                doc_rows += [i for negs in scored.negatives for i in negs]
                k = r.negatives if all(len(n) == r.negatives for n in scored.negatives) else 0
                if k == 0:
                    doc_rows = doc_rows[:b]
                ignore = torch.tensor(
                    [
                        [j != qi and d in relevant[qi] for j, d in enumerate(doc_rows)]
                        for qi in range(b)
                    ],
                    device=device,
                )  # (B, B + B*K): relevant to the query but not its positive
                docs = encode_prompts(
                    [texts[i] for i in doc_rows], "document", cfg.model.max_document_tokens
                )
                plain = encode_prompts(batch.queries, "query", cfg.model.max_query_tokens)

            # 4. the loss: policy + contrastive on the reasoning embeddings + SFT on plain queries
            with accelerator.autocast():
                d_out = net(docs["input_ids"], docs["attention_mask"])
                assert isinstance(d_out, EmbedLMOutput)
                pg = policy_loss(pol.logp, old_logp, ref.logp, advantages, rollouts.action_mask)
                nce = infonce(
                    pol.embeddings, d_out.embeddings, positives=group, ignore=ignore[group]
                )
                loss = pg + r.contrastive * nce
                sft_total = torch.zeros((), device=device)
                if r.sft > 0:
                    q_out = net(plain["input_ids"], plain["attention_mask"])
                    assert isinstance(q_out, EmbedLMOutput)
                    ref_logits = None
                    if cfg.loss.kl > 0:
                        ref_out = frozen(plain["input_ids"], plain["attention_mask"])
                        assert isinstance(ref_out, EmbedLMOutput)
                        ref_logits = ref_out.logits
                    teacher_scores = None
                    if teacher_vectors is not None:
                        scores = teacher_vectors.scores(
                            batch.query_ids, [passage_ids[i] for i in doc_rows]
                        )
                        teacher_scores = torch.from_numpy(scores).to(device)
                    cross_scores = batch_tensors(
                        cross_targets, batch.query_ids, [passage_ids[i] for i in doc_rows], device
                    )
                    sft_total = sft_objective(
                        q_out,
                        d_out,
                        ignore,
                        k,
                        ref_logits,
                        teacher_scores=teacher_scores,
                        cross_scores=cross_scores,
                    ).total
                    loss = loss + r.sft * sft_total
            accelerator.backward(loss)
            if cfg.optim.grad_clip > 0:
                accelerator.clip_grad_norm_(net.parameters(), cfg.optim.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

        # 5. bookkeeping
        progress.step += 1
        step = progress.step
        with torch.no_grad():
            mask = rollouts.action_mask
            kl = float(
                (token_kl(pol.logp.detach(), ref.logp) * mask).sum() / mask.sum().clamp(min=1)
            )
        record = {
            "reward": float(scored.rewards.mean()),
            "rank": sum(scored.rank) / len(scored.rank),
            "format": sum(scored.fmt) / len(scored.fmt),
            "forced": float(rollouts.forced.float().mean()),
            "tokens": float(rollouts.n_generated.float().mean()),
            "policy": float(pg.detach()),
            "kl": kl,
            "infonce": float(nce.detach()),
            "sft": float(sft_total.detach()),
            "region": float(env.stats.last_region),
            "gen_s": t_gen,
            "env_s": t_env,
        }
        for key, value in record.items():
            sums[key] = sums.get(key, 0.0) + value
        if step % r.log_every == 0 or step == r.steps:
            n = r.log_every if step % r.log_every == 0 else step % r.log_every
            elapsed = time.perf_counter() - t_log
            mean = {key: value / n for key, value in sums.items()}
            mean.update(step=step, s_per_step=elapsed / n, lr=float(scheduler.get_last_lr()[0]))
            mean["env"] = env.stats.as_dict()  # type: ignore[assignment]
            log.info(
                "step %d/%d reward %.3f (rank %.3f format %.3f forced %.2f) kl %.4f "
                "infonce %.3f sft %.3f region %d %.2fs/step",
                step,
                r.steps,
                mean["reward"],
                mean["rank"],
                mean["format"],
                mean["forced"],
                mean["kl"],
                mean["infonce"],
                mean["sft"],
                int(mean["region"]),
                mean["s_per_step"],
            )
            if main_process:
                append_log(out_dir, mean)
            sums, t_log = {}, time.perf_counter()
        if r.save_every and step % r.save_every == 0 and step < r.steps:
            checkpoint(step)

    # ---- the end: evaluation, a resumable checkpoint, the HF model for export
    last = run_eval(progress.step)
    if main_process and first_eval is not None and last is not None:
        log.info(
            "held-out nDCG@10 (no reasoning): %.4f before RL -> %.4f after %d steps",
            first_eval["ndcg@10"],
            last["ndcg@10"],
            progress.step,
        )
    checkpoint(progress.step)
    final = save_final(
        accelerator,
        accelerator.unwrap_model(net).embed_lm.model,
        tokenizer,
        out_dir,
        "rl",
        prompts,
        cfg,
        {"step": progress.step, "config": cfg.to_dict(), "env": env.stats.as_dict()},
        merge_lora=cfg.lora.enabled,
    )
    accelerator.end_training()
    return final


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.rl``: parse the config and train; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    # --init is short for --rl.init: the one option every RL run gives.
    args = ["--rl.init" if a == "--init" else a for a in args]
    args = [f"--rl.init={a[7:]}" if a.startswith("--init=") else a for a in args]
    return prepare.run_from_command_line("rl", RLRunConfig, args, train, "Search-R3 RL (GRPO).")


if __name__ == "__main__":
    sys.exit(main())
