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

import copy
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from sr3desk.errors import Sr3Error
from sr3desk.model.prompts import PromptSet
from training import modeling
from training.config import Config, ConfigError, _check, _help, load_config, save_config
from training.data import BatchSampler, BeirSet, load_beir, load_train_set
from training.env import CorpusEnv
from training.losses import InfoNCELoss
from training.objective import EmbedLM, EmbedLMOutput, SFTObjective
from training.rewards import RANK_KINDS, combined_reward, format_reward, rank_reward
from training.rl_loss import GRPOLoss, group_advantages, token_kl
from training.rl_rollout import (
    ReasonLM,
    Rollouts,
    generate_rollouts,
    policy_forward,
    stop_token_ids,
)
from training.sft import (
    CHECKPOINT_PREFIX,
    FINAL,
    STATE_FILE,
    Progress,
    checkpoints,
    evaluate_embeddings,
    mixed_precision,
)

log = logging.getLogger(__name__)


@dataclass
class EnvConfig:
    """The corpus environment: cached embeddings, kNN graph, partial refreshes."""

    graph_k: int = field(default=8, metadata=_help("Neighbours per passage in the kNN graph."))
    hops: int = field(
        default=1,
        metadata=_help("Graph hops around each retrieved candidate that a step re-encodes."),
    )
    refresh_every: int = field(
        default=50, metadata=_help("Re-encode the whole corpus every N steps; 0: never.")
    )
    max_region: int = field(
        default=0,
        metadata=_help("Cap on passages re-encoded per step (positives first); 0: no cap."),
    )
    batch_size: int = field(default=32, metadata=_help("Passages per forward pass when encoding."))

    def __post_init__(self) -> None:
        _check(self.graph_k >= 1, f"rl.env.graph_k={self.graph_k}: use 1 or more")
        _check(self.hops >= 0, f"rl.env.hops={self.hops}: use 0 or more")
        _check(self.refresh_every >= 0, f"rl.env.refresh_every={self.refresh_every}: use >= 0")
        _check(self.max_region >= 0, f"rl.env.max_region={self.max_region}: use 0 (no cap) or more")
        _check(self.batch_size >= 1, f"rl.env.batch_size={self.batch_size}: use 1 or more")


@dataclass
class RLConfig:
    """Group-relative policy optimisation of the reasoning before the embed token."""

    init: str = field(
        default="",
        metadata=_help(
            "HF checkpoint to start from, normally SFT's final/ folder (also --init); "
            "empty: train.out_dir/final of this config."
        ),
    )
    out_dir: str = field(
        default="",
        metadata=_help(
            "Checkpoints, log.jsonl and final/ go here; empty: 'rl' beside train.out_dir."
        ),
    )
    steps: int = field(default=100, metadata=_help("RL steps (one optimizer step each)."))
    queries: int = field(default=8, metadata=_help("Training queries per step per process."))
    group_size: int = field(default=8, metadata=_help("Sampled completions per query (G)."))
    max_reason_tokens: int = field(
        default=64,
        metadata=_help("Token budget of the reasoning; past it the suffix is forced, unpaid."),
    )
    temperature: float = field(default=1.0, metadata=_help("Sampling temperature."))
    top_p: float = field(default=1.0, metadata=_help("Nucleus sampling; 1 keeps all tokens."))
    top_k: int = field(default=0, metadata=_help("Sample among the k likeliest tokens; 0: all."))
    lr: float = field(
        default=1e-6, metadata=_help("Learning rate (constant after warm-up); small on purpose.")
    )
    warmup_steps: int = field(default=0, metadata=_help("Linear warm-up steps from 0 to lr."))
    clip_eps: float = field(
        default=0.2, metadata=_help("PPO clip: the ratio is clipped to [1 - eps, 1 + eps].")
    )
    kl_beta: float = field(
        default=0.1, metadata=_help("Weight of KL(policy || initial model) on generated tokens.")
    )
    ppo_epochs: int = field(
        default=1, metadata=_help("Optimizer steps on each batch of rollouts (reuse).")
    )
    reward: str = field(
        default="ndcg",
        metadata=_help(f"Ranking reward: one of {', '.join(RANK_KINDS)} (nDCG@10 or 1/rank)."),
    )
    format_weight: float = field(
        default=0.2,
        metadata=_help("Weight of the format reward (token written once, in budget, in form)."),
    )
    candidates: int = field(
        default=20, metadata=_help("Candidates the environment retrieves per rollout.")
    )
    negatives: int = field(
        default=2,
        metadata=_help("Hard negatives per query for the contrastive parts, from the candidates."),
    )
    contrastive: float = field(
        default=1.0,
        metadata=_help("Weight of InfoNCE on the reasoning embeddings (keep it on)."),
    )
    sft: float = field(
        default=1.0,
        metadata=_help(
            "Weight of the SFT objective (loss.*) on plain query prompts: protects the "
            "no-reasoning search path; 0 turns it off."
        ),
    )
    log_every: int = field(default=5, metadata=_help("Log every N steps."))
    save_every: int = field(
        default=0, metadata=_help("Write a resumable checkpoint every N steps; 0: at the end.")
    )
    keep_checkpoints: int = field(default=2, metadata=_help("Keep the newest N checkpoints."))
    resume: str = field(
        default="", metadata=_help("Resume from a checkpoint folder, or 'auto' for the newest.")
    )
    env: EnvConfig = field(default_factory=EnvConfig)

    def __post_init__(self) -> None:
        _check(self.steps > 0, f"rl.steps={self.steps}: must be positive")
        _check(self.queries >= 1, f"rl.queries={self.queries}: use 1 or more")
        _check(
            self.group_size >= 2,
            f"rl.group_size={self.group_size}: use 2 or more (advantages are group-relative)",
        )
        _check(self.max_reason_tokens >= 1, "rl.max_reason_tokens must be at least 1")
        _check(self.temperature > 0, f"rl.temperature={self.temperature}: must be positive")
        _check(0 < self.top_p <= 1, f"rl.top_p={self.top_p}: use a value in (0, 1]")
        _check(self.top_k >= 0, f"rl.top_k={self.top_k}: use 0 (off) or more")
        _check(0 < self.lr < 1, f"rl.lr={self.lr}: use a value in (0, 1), e.g. 1e-6")
        _check(self.warmup_steps >= 0, f"rl.warmup_steps={self.warmup_steps}: use 0 or more")
        _check(0 < self.clip_eps < 1, f"rl.clip_eps={self.clip_eps}: use a value in (0, 1)")
        _check(self.kl_beta >= 0, f"rl.kl_beta={self.kl_beta}: must be >= 0")
        _check(self.ppo_epochs >= 1, f"rl.ppo_epochs={self.ppo_epochs}: use 1 or more")
        _check(
            self.reward in RANK_KINDS,
            f"rl.reward={self.reward!r}: use one of {', '.join(RANK_KINDS)}",
        )
        _check(self.format_weight >= 0, f"rl.format_weight={self.format_weight}: must be >= 0")
        _check(self.candidates >= 1, f"rl.candidates={self.candidates}: use 1 or more")
        _check(self.negatives >= 0, f"rl.negatives={self.negatives}: use 0 or more")
        _check(self.contrastive >= 0, f"rl.contrastive={self.contrastive}: must be >= 0")
        _check(self.sft >= 0, f"rl.sft={self.sft}: must be >= 0")
        _check(self.log_every >= 1, f"rl.log_every={self.log_every}: use 1 or more")
        _check(self.save_every >= 0, f"rl.save_every={self.save_every}: use 0 or more")
        _check(self.keep_checkpoints >= 1, "rl.keep_checkpoints: use 1 or more")


@dataclass
class RLRunConfig(Config):
    """Everything one RL run needs: the SFT sections it shares, and ``rl``."""

    other_stages: ClassVar[tuple[str, ...]] = ()

    rl: RLConfig = field(default_factory=RLConfig)


# ---------------------------------------------------------------- helpers


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


def read_prompts(model_dir: Path) -> PromptSet:
    """The prompts a checkpoint was trained with (its ``sr3.json``), else the defaults."""
    sidecar = model_dir / "sr3.json"
    if not sidecar.is_file():
        return PromptSet()
    saved = json.loads(sidecar.read_text(encoding="utf-8")).get("prompts", {})
    defaults = PromptSet()
    return PromptSet(
        document_system=str(saved.get("document_system", defaults.document_system)),
        query_system=str(saved.get("query_system", defaults.query_system)),
        reason_system=str(saved.get("reason_system", defaults.reason_system)),
        answer_prefix=str(saved.get("answer_prefix", defaults.answer_prefix)),
        embed_token=str(saved.get("embed_token", defaults.embed_token)),
    )


def out_dir_of(cfg: RLRunConfig) -> Path:
    """Where RL writes: ``rl.out_dir``, else ``rl`` beside SFT's ``train.out_dir``."""
    return Path(cfg.rl.out_dir) if cfg.rl.out_dir else Path(cfg.train.out_dir).parent / "rl"


def resolve_resume(cfg: RLRunConfig) -> Path | None:
    """The checkpoint to resume from (``rl.resume``: a folder, or 'auto'), or None."""
    if not cfg.rl.resume:
        return None
    if cfg.rl.resume == "auto":
        found = checkpoints(out_dir_of(cfg))
        return found[-1] if found else None
    path = Path(cfg.rl.resume)
    if not (path / STATE_FILE).is_file():
        raise ConfigError(f"rl.resume={path} is not a checkpoint folder (no {STATE_FILE})")
    return path


@dataclass
class Scored:
    """Rewards of N rollouts and what the contrastive parts take from the candidates."""

    rewards: torch.Tensor  # (N,)
    rank: list[float]
    fmt: list[float]
    negatives: list[list[int]]  # per query: hardest non-relevant passages, best first


def score_rollouts(
    env: CorpusEnv,
    queries: torch.Tensor,
    relevant: Sequence[set[int]],
    rollouts: Rollouts,
    prompts: PromptSet,
    r: RLConfig,
) -> Scored:
    """Reward each rollout from the (refreshed) cache: rank of its positives + format.

    queries: (N, d) rollout embeddings, query-major; relevant: per query, the corpus
    rows of its positives. The candidates are the top ``r.candidates`` cached
    passages plus the positives (so a positive outside the top still has a rank).
    """
    g = r.group_size
    top = env.retrieve(queries, r.candidates)
    rewards, ranks, fmts = [], [], []
    best: list[dict[int, float]] = [{} for _ in relevant]
    for row in range(queries.shape[0]):
        qi = row // g
        ids = list(dict.fromkeys(top.ids[row].tolist() + sorted(relevant[qi])))
        scores = env.scores(queries[row : row + 1], torch.tensor([ids])).squeeze(0).tolist()
        flags = [i in relevant[qi] for i in ids]
        rank = rank_reward(scores, flags, r.reward)
        fmt = format_reward(
            rollouts.texts[row],
            int(rollouts.n_generated[row]),
            r.max_reason_tokens,
            prompts.embed_token,
            prompts.answer_prefix,
        )
        rewards.append(combined_reward(rank, fmt, r.format_weight))
        ranks.append(rank)
        fmts.append(fmt)
        for i, s in zip(ids, scores, strict=True):
            if i not in relevant[qi]:
                best[qi][i] = max(s, best[qi].get(i, -2.0))
    negatives = [sorted(b, key=lambda i: -b[i])[: r.negatives] for b in best]
    return Scored(torch.tensor(rewards), ranks, fmts, negatives)


def _append_log(out_dir: Path, record: dict[str, Any]) -> None:
    with (out_dir / "log.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


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
    accelerator = Accelerator(mixed_precision=mixed_precision(cfg.train.precision))
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
    train_set = load_train_set(cfg.data.train_path)
    passage_ids = list(train_set.corpus)
    row_of = {pid: i for i, pid in enumerate(passage_ids)}
    texts = [train_set.corpus[pid] for pid in passage_ids]
    examples = {ex.query_id: ex for ex in train_set.examples}
    sampler = BatchSampler(train_set, r.queries, 0, cfg.train.seed, rank, world)
    heldout: BeirSet | None = None
    if cfg.eval.enabled and cfg.data.heldout_path.is_dir():
        heldout = load_beir(cfg.data.heldout_path, cfg.data.heldout_split)
    log.info("data: %d queries over %d passages", len(train_set.examples), len(texts))

    # ---- model: the initial checkpoint, trained; a frozen copy of it is the reference
    model, tokenizer = modeling.load_model(init)
    token_id = modeling.ensure_embed_token(model, tokenizer)
    prompts = read_prompts(init)
    stops = stop_token_ids(tokenizer, token_id)
    n_response = len(tokenizer.encode(prompts.answer_prefix, add_special_tokens=False)) + 1
    if cfg.lora.enabled:
        # New adapters on the initial model; the reference is that model, adapters off.
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        model = get_peft_model(  # type: ignore[assignment]
            model,
            PeftLoraConfig(
                r=cfg.lora.r,
                lora_alpha=cfg.lora.alpha,
                lora_dropout=cfg.lora.dropout,
                target_modules=list(cfg.lora.target_modules),
                task_type="CAUSAL_LM",
            ),
        )
        reference = None
    else:
        ref_model: torch.nn.Module = copy.deepcopy(model)
        ref_model.requires_grad_(False)
        ref_model.eval()
        if accelerator.mixed_precision == "bf16":
            ref_model.to(torch.bfloat16)  # only read, never trained: half the memory
        reference = ReasonLM(EmbedLM(ref_model, token_id, n_response)).to(device)
    net = ReasonLM(EmbedLM(model, token_id, n_response))
    hf: Any = net.hf_model()  # the transformers model (peft's LoRA-injected base under LoRA)
    if cfg.model.gradient_checkpointing:
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    net.train()
    trainable = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {
                "params": [p for p in trainable if p.ndim >= 2],
                "weight_decay": cfg.optim.weight_decay,
            },
            {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=r.lr,
        betas=(cfg.optim.beta1, cfg.optim.beta2),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / r.warmup_steps) if r.warmup_steps else 1.0
    )
    net, optimizer = accelerator.prepare(net, optimizer)
    progress = Progress()
    accelerator.register_for_checkpointing(sampler, progress, scheduler)
    log.info(
        "model: %.1fM parameters, %.1fM trained (%s)",
        sum(p.numel() for p in net.parameters()) / 1e6,
        sum(p.numel() for p in trainable) / 1e6,
        "LoRA" if cfg.lora.enabled else "full",
    )

    def frozen(input_ids: torch.Tensor, attention_mask: torch.Tensor, *rest: Any) -> Any:
        """The reference model's output (no gradient): the frozen copy, or adapters off."""
        with torch.no_grad():
            if reference is not None:
                return reference(input_ids, attention_mask, *rest)
            inner = accelerator.unwrap_model(net)
            with inner.embed_lm.model.disable_adapter():
                return inner(input_ids, attention_mask, *rest)

    # ---- resume: model, optimizer, schedule, query stream, RNG and step
    resume = resolve_resume(cfg)
    if resume is not None:
        saved = RLRunConfig.from_dict(
            json.loads((resume / STATE_FILE).read_text(encoding="utf-8"))["config"]
        )
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
        metrics = None
        if main_process:
            hf.eval()
            with torch.no_grad(), accelerator.autocast():
                metrics = evaluate_embeddings(hf, tokenizer, heldout, cfg, prompts)
            hf.train()
            log.info("eval step %d: %s", step, " ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
            _append_log(out_dir, {"step": step, "eval": metrics})
        accelerator.wait_for_everyone()
        return metrics

    def save_checkpoint(step: int) -> None:
        folder = out_dir / f"{CHECKPOINT_PREFIX}{step:06d}"
        accelerator.save_state(str(folder))
        if main_process:
            state = {"step": step, "config": cfg.to_dict(), "env": env.stats.as_dict()}
            (folder / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
            for old in checkpoints(out_dir)[: -r.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

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
                    sft_total = sft_objective(q_out, d_out, ignore, k, ref_logits).total
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
                _append_log(out_dir, mean)
            sums, t_log = {}, time.perf_counter()
        if r.save_every and step % r.save_every == 0 and step < r.steps:
            save_checkpoint(step)

    # ---- the end: evaluation, a resumable checkpoint, the HF model for export
    last = run_eval(progress.step)
    if main_process and first_eval is not None and last is not None:
        log.info(
            "held-out nDCG@10 (no reasoning): %.4f before RL -> %.4f after %d steps",
            first_eval["ndcg@10"],
            last["ndcg@10"],
            progress.step,
        )
    save_checkpoint(progress.step)
    final = out_dir / FINAL
    if main_process:
        if final.exists():
            shutil.rmtree(final)
        out_model = accelerator.unwrap_model(net).embed_lm.model
        if cfg.lora.enabled:
            out_model = out_model.merge_and_unload()
        out_model.save_pretrained(str(final))
        tokenizer.save_pretrained(str(final))
        save_config(cfg, final / "config.yaml")
        state = {"step": progress.step, "config": cfg.to_dict(), "env": env.stats.as_dict()}
        (final / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
        sidecar = {
            "name": f"{Path(cfg.model.path).name}-rl",
            "stage": "rl",
            "prompts": {k: v for k, v in vars(prompts).items() if k != "from_metadata"},
        }
        (final / "sr3.json").write_text(json.dumps(sidecar, indent=2), encoding="utf-8")
        log.info("final model: %s", final)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.rl``: parse the config and train; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = list(sys.argv[1:] if argv is None else argv)
    # --init is short for --rl.init: the one option every RL run gives.
    args = ["--rl.init" if a == "--init" else a for a in args]
    args = [f"--rl.init={a[7:]}" if a.startswith("--init=") else a for a in args]
    try:
        cfg = load_config(
            RLRunConfig, args, prog="python -m training.rl", description="Search-R3 RL (GRPO)."
        )
        final = train(cfg)
    except Sr3Error as exc:
        sys.stderr.write(f"training.rl: error: {exc}\n")
        return exc.exit_code
    sys.stdout.write(f"{final}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
