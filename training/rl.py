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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from sr3desk.model.prompts import PromptSet
from training import modeling, prepare
from training.checkpoints import FINAL, read_prompts, read_state
from training.config import ConfigError, RLRunConfig
from training.data.batches import Batch, BatchSampler, Example, load_train_set, sample_corpus
from training.env import CorpusEnv
from training.heldout import load_heldout
from training.losses import InfoNCELoss
from training.objective import EmbedLM, EmbedLMOutput, Reference, SFTObjective
from training.rl_loss import GRPOLoss, group_advantages, token_kl
from training.rl_rollout import (
    PolicyOutput,
    ReasonLM,
    Rollouts,
    Scored,
    generate_rollouts,
    policy_forward,
    score_rollouts,
    stop_token_ids,
)
from training.run import Plan, Teachers, TrainingRun, prompt_encoder

if TYPE_CHECKING:
    from accelerate import Accelerator

    from training.data.beir import BeirSet

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

    r = cfg.rl

    # ---- setup: processes, precision, seed, output folder
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    accelerator = Accelerator(mixed_precision=prepare.mixed_precision(cfg.train.precision))
    init = resolve_init(cfg)
    plan = Plan.of(r, "rl")
    # Each process samples its own completions.
    seed = cfg.train.seed + accelerator.process_index
    run = TrainingRun(accelerator, cfg, out_dir_of(cfg), plan, seed)
    log.info("RL from %s: %d process(es) on %s", init, accelerator.num_processes, run.device)
    if cfg.train.fsdp:
        # generate() needs whole weights on each process; the 1.5B fits one 80 GB GPU.
        log.info("train.fsdp is an SFT setting: RL runs plain data parallel (DDP)")

    # ---- data, model, optimizer and schedule (linear warm-up to rl.lr, then constant)
    data = load_data(cfg, accelerator)
    model = load_model(cfg, init, run)
    trainable = [p for p in model.net.parameters() if p.requires_grad]
    prepare.log_parameters(model.net, trainable, cfg.lora.enabled, str(init))
    optimizer = prepare.make_optimizer(trainable, cfg.optim, r.lr)
    net = run.prepare(
        model.net,
        optimizer,
        lambda s: prepare.lr_factor(s, r.warmup_steps, r.steps),
        data.sampler,
    )

    # ---- resume, the environment, the loop, the end: the HF model for export
    run.resume(lambda folder: check_resume(cfg, folder))
    env = make_env(cfg, run, data, model)
    run.loop(RLStep(cfg, run, data, model, env), data.heldout, model.tokenizer, model.prompts)
    inner = accelerator.unwrap_model(net).embed_lm.model
    return run.finish(inner, model.tokenizer, model.prompts, "rl", cfg.lora.enabled)


def check_resume(cfg: RLRunConfig, folder: Path) -> None:
    """Raise ConfigError when checkpoint ``folder`` was trained from another model."""
    saved = RLRunConfig.from_dict(read_state(folder)["config"])
    if saved.model != cfg.model or saved.rl.init != cfg.rl.init:
        raise ConfigError(f"{folder} was trained from another model (model.* or rl.init)")


@dataclass
class RLData:
    """What RL trains on: this process's query stream, the corpus the environment
    holds (``texts[row]`` is passage ``passage_ids[row]``), the held-out set (None:
    no evaluation) and the teachers of the SFT part."""

    sampler: BatchSampler
    examples: dict[str, Example]
    passage_ids: list[str]
    row_of: dict[str, int]
    texts: list[str]
    heldout: BeirSet | None
    teachers: Teachers


def load_data(cfg: RLRunConfig, accelerator: Accelerator) -> RLData:
    """Training queries, their positives, and the corpus of ``rl.env.max_passages``."""
    r = cfg.rl
    train_set = sample_corpus(
        load_train_set(cfg.data.train_path), r.env.max_passages, cfg.train.seed
    )
    passage_ids = list(train_set.corpus)
    texts = [train_set.corpus[pid] for pid in passage_ids]
    rank, world = accelerator.process_index, accelerator.num_processes
    sampler = BatchSampler(train_set, r.queries, 0, cfg.train.seed, rank, world)
    heldout = load_heldout(cfg)
    log.info("data: %d queries over %d passages", len(train_set.examples), len(texts))
    # The SFT part distils the teachers as SFT did, from the same stored vectors.
    teachers = Teachers.load(cfg, train_set, accelerator, used=r.sft > 0)
    return RLData(
        sampler,
        {ex.query_id: ex for ex in train_set.examples},
        passage_ids,
        {pid: i for i, pid in enumerate(passage_ids)},
        texts,
        heldout,
        teachers,
    )


@dataclass
class RLModel:
    """The policy RL trains (unprepared), its tokenizer, prompts and stop tokens, and
    the frozen reference (None: LoRA's adapters off serve)."""

    net: ReasonLM
    tokenizer: Any
    prompts: PromptSet
    stops: list[int]
    reference: ReasonLM | None


def load_model(cfg: RLRunConfig, init: Path, run: TrainingRun) -> RLModel:
    """The initial checkpoint, trained; a frozen copy of it is the reference."""
    model, tokenizer = modeling.load_model(init)
    token_id = modeling.ensure_embed_token(model, tokenizer)
    prompts = read_prompts(init)
    stops = stop_token_ids(tokenizer, token_id)
    n_response = len(tokenizer.encode(prompts.answer_prefix, add_special_tokens=False)) + 1
    reference = None
    if cfg.lora.enabled:
        # New adapters on the initial model; the reference is that model, adapters off.
        model = prepare.add_lora(model, cfg.lora, token_id)
    else:
        bf16 = run.accelerator.mixed_precision == "bf16"
        ref_model = prepare.frozen_copy(model, bf16=bf16)
        reference = ReasonLM(EmbedLM(ref_model, token_id, n_response)).to(run.device)
        if cfg.model.train_layers:
            # The layers SFT trained, and no others: the delta over the base stays the same.
            prepare.train_top_layers(
                model, cfg.model.train_layers, token_id, cfg.model.train_token_rows
            )
    net = ReasonLM(EmbedLM(model, token_id, n_response))
    # The transformers model (peft's LoRA-injected base under LoRA).
    prepare.gradient_checkpointing(net.hf_model(), cfg.model, generates=True)
    net.train()
    return RLModel(net, tokenizer, prompts, stops, reference)


def make_env(cfg: RLRunConfig, run: TrainingRun, data: RLData, model: RLModel) -> CorpusEnv:
    """The environment: every passage encoded by the current model, plus the graph."""
    r = cfg.rl
    hf: Any = model.net.hf_model()
    token_id = model.net.embed_lm.token_id
    encode = prompt_encoder(model.tokenizer, model.prompts, run.device)

    def encode_passages(rows: Sequence[int]) -> torch.Tensor:
        was_training = hf.training
        hf.eval()
        vecs = []
        with torch.no_grad(), run.accelerator.autocast():
            for start in range(0, len(rows), r.env.batch_size):
                chunk = [data.texts[i] for i in rows[start : start + r.env.batch_size]]
                enc = encode(chunk, "document", cfg.model.max_document_tokens)
                ids, mask = enc["input_ids"], enc["attention_mask"]
                vecs.append(modeling.embed_at_token(hf, ids, mask, token_id).float())
        hf.train(was_training)
        return torch.cat(vecs)

    n = len(data.texts)
    env = CorpusEnv(
        encode_passages,
        n,
        graph_k=min(r.env.graph_k, n - 1),
        hops=r.env.hops,
        refresh_every=r.env.refresh_every,
        max_region=r.env.max_region or None,
        batch_size=r.env.batch_size,
    )
    t0 = time.perf_counter()
    env.full_refresh()
    log.info("environment: %d passages encoded in %.1fs", n, time.perf_counter() - t0)
    return env


@dataclass
class Feedback:
    """What the environment said of one batch's rollouts, and the documents the
    contrastive and SFT parts read: each query's positive, then its K hardest
    candidates (K is 0 when a query has fewer)."""

    scored: Scored
    advantages: torch.Tensor  # (N,) normalised within each query's group
    doc_rows: list[int]  # corpus rows, B + B*K
    k: int
    ignore: torch.Tensor  # (B, B + B*K): relevant to the query but not its positive
    docs: dict[str, torch.Tensor]
    plain: dict[str, torch.Tensor]  # the queries' plain (no reasoning) prompts
    seconds: float  # spent in the environment


@dataclass
class RLLoss:
    """One update's loss and its parts (scalars)."""

    total: torch.Tensor
    policy: torch.Tensor
    infonce: torch.Tensor
    sft: torch.Tensor


class RLStep:
    """One RL step: sample, score and update ``rl.ppo_epochs`` times on one batch of
    queries (see :class:`training.run.Step`)."""

    def __init__(
        self, cfg: RLRunConfig, run: TrainingRun, data: RLData, model: RLModel, env: CorpusEnv
    ) -> None:
        self.cfg, self.run, self.data, self.model, self.env = cfg, run, data, model, env
        self.policy_loss = GRPOLoss(cfg.rl.clip_eps, cfg.rl.kl_beta)
        self.infonce = InfoNCELoss(cfg.loss.temperature)
        self.sft_objective = SFTObjective(cfg.loss)
        self.reference = Reference(model.reference, lambda: run.accelerator.unwrap_model(run.net))
        self.encode = prompt_encoder(model.tokenizer, model.prompts, run.device)
        self.hf: Any = model.net.hf_model()  # generates: no gradient sync, so unwrapped

    def __call__(self) -> None:
        """Take one RL step and add its figures to the run's meter."""
        r, acc, device = self.cfg.rl, self.run.accelerator, self.run.device
        batch = next(self.data.sampler)
        b = len(batch.queries)
        examples, row_of = self.data.examples, self.data.row_of
        relevant = [{row_of[d] for d in examples[q].positive_ids} for q in batch.query_ids]

        # 1. sample G reasoning completions per query, batched
        t_gen = time.perf_counter()
        with acc.autocast():
            rollouts = generate_rollouts(
                self.hf,
                self.model.tokenizer,
                batch.queries,
                self.model.prompts,
                self.model.stops,
                r.group_size,
                r.max_reason_tokens,
                r.temperature,
                r.top_p,
                r.top_k,
            )
        t_gen = time.perf_counter() - t_gen
        with acc.autocast():
            ref = policy_forward(self.reference, rollouts, r.temperature)
        # Each query is a group; its G rollouts all have the sampler's positive.
        group = torch.arange(b, device=device).repeat_interleave(r.group_size)  # (N,)

        for epoch in range(r.ppo_epochs):
            # 2. the policy's log-probs and embeddings, with gradients
            with acc.autocast():
                pol = policy_forward(self.run.net, rollouts, r.temperature)
            if epoch == 0:
                old_logp = pol.logp.detach()
                # 3. environment: retrieve, refresh the region, reward
                feedback = self.feedback(batch, pol.embeddings.detach(), rollouts, relevant)
            # 4. the loss: policy + contrastive on the reasoning embeddings + SFT on plain queries
            with acc.autocast():
                loss = self.loss(batch, pol, old_logp, ref.logp, rollouts, feedback, group)
            self.run.backward(loss.total)

        # 5. bookkeeping
        self.run.meter.add(self.figures(pol, ref, rollouts, feedback, loss, t_gen))

    def feedback(
        self, batch: Batch, emb: torch.Tensor, rollouts: Rollouts, relevant: list[set[int]]
    ) -> Feedback:
        """Retrieve with the rollouts' embeddings ``emb`` (N, d), refresh that region
        of the environment, reward each rollout; pick each query's documents."""
        r, device, env = self.cfg.rl, self.run.device, self.env
        t_env = time.perf_counter()
        first = env.retrieve(emb, r.candidates)
        env.step([i for rel in relevant for i in sorted(rel)], first.ids)
        scored = score_rollouts(env, emb, relevant, rollouts, self.model.prompts, r)
        t_env = time.perf_counter() - t_env
        advantages = group_advantages(scored.rewards, r.group_size).to(device)  # (N,)
        b = len(batch.queries)
        doc_rows = [self.data.row_of[d] for d in batch.document_ids[:b]]
        doc_rows += [i for negs in scored.negatives for i in negs]
        k = r.negatives if all(len(n) == r.negatives for n in scored.negatives) else 0
        if k == 0:
            doc_rows = doc_rows[:b]
        ignore = torch.tensor(
            [[j != qi and d in relevant[qi] for j, d in enumerate(doc_rows)] for qi in range(b)],
            device=device,
        )  # (B, B + B*K)
        max_d, max_q = self.cfg.model.max_document_tokens, self.cfg.model.max_query_tokens
        docs = self.encode([self.data.texts[i] for i in doc_rows], "document", max_d)
        plain = self.encode(batch.queries, "query", max_q)
        return Feedback(scored, advantages, doc_rows, k, ignore, docs, plain, t_env)

    def loss(
        self,
        batch: Batch,
        pol: PolicyOutput,
        old_logp: torch.Tensor,
        ref_logp: torch.Tensor,
        rollouts: Rollouts,
        feedback: Feedback,
        group: torch.Tensor,
    ) -> RLLoss:
        """Policy loss + ``rl.contrastive`` InfoNCE of the reasoning embeddings
        against the documents + ``rl.sft`` times the SFT objective on the plain queries."""
        r, net, f = self.cfg.rl, self.run.net, feedback
        d_out = net(f.docs["input_ids"], f.docs["attention_mask"])
        assert isinstance(d_out, EmbedLMOutput)
        pg = self.policy_loss(pol.logp, old_logp, ref_logp, f.advantages, rollouts.action_mask)
        nce = self.infonce(
            pol.embeddings, d_out.embeddings, positives=group, ignore=f.ignore[group]
        )
        total = pg + r.contrastive * nce
        sft_total = torch.zeros((), device=self.run.device)
        if r.sft > 0:
            sft_total = self.sft_part(batch, d_out, f)
            total = total + r.sft * sft_total
        return RLLoss(total, pg, nce, sft_total)

    def sft_part(self, batch: Batch, d_out: EmbedLMOutput, f: Feedback) -> torch.Tensor:
        """The SFT objective on the plain query prompts against the same documents."""
        q_out = self.run.net(f.plain["input_ids"], f.plain["attention_mask"])
        assert isinstance(q_out, EmbedLMOutput)
        ref_logits = None
        if self.cfg.loss.kl > 0:
            ref_out = self.reference(f.plain["input_ids"], f.plain["attention_mask"])
            assert isinstance(ref_out, EmbedLMOutput)
            ref_logits = ref_out.logits
        doc_ids = [self.data.passage_ids[i] for i in f.doc_rows]
        teacher_scores, cross_scores = self.data.teachers.scores(
            batch.query_ids, doc_ids, self.run.device
        )
        parts = self.sft_objective(
            q_out,
            d_out,
            f.ignore,
            f.k,
            ref_logits,
            teacher_scores=teacher_scores,
            cross_scores=cross_scores,
        )
        return parts.total

    def figures(
        self,
        pol: PolicyOutput,
        ref: PolicyOutput,
        rollouts: Rollouts,
        f: Feedback,
        loss: RLLoss,
        t_gen: float,
    ) -> dict[str, float]:
        """What one step logs: rewards, sampling, the loss parts, the time spent."""
        with torch.no_grad():
            mask = rollouts.action_mask
            kl = float(
                (token_kl(pol.logp.detach(), ref.logp) * mask).sum() / mask.sum().clamp(min=1)
            )
        return {
            "reward": float(f.scored.rewards.mean()),
            "rank": sum(f.scored.rank) / len(f.scored.rank),
            "format": sum(f.scored.fmt) / len(f.scored.fmt),
            "forced": float(rollouts.forced.float().mean()),
            "tokens": float(rollouts.n_generated.float().mean()),
            "policy": float(loss.policy.detach()),
            "kl": kl,
            "infonce": float(loss.infonce.detach()),
            "sft": float(loss.sft.detach()),
            "region": float(self.env.stats.last_region),
            "gen_s": t_gen,
            "env_s": f.seconds,
        }

    def log_fields(self, elapsed: float) -> dict[str, Any]:
        """The environment's counters."""
        return {"env": self.env.stats.as_dict()}

    def log_line(self, record: dict[str, Any]) -> None:
        """Log a logged step's reward, its parts, the KL and the step time."""
        log.info(
            "step %d/%d reward %.3f (rank %.3f format %.3f forced %.2f) kl %.4f "
            "infonce %.3f sft %.3f region %d %.2fs/step",
            record["step"],
            self.cfg.rl.steps,
            record["reward"],
            record["rank"],
            record["format"],
            record["forced"],
            record["kl"],
            record["infonce"],
            record["sft"],
            int(record["region"]),
            record["s_per_step"],
        )

    def state(self) -> dict[str, Any]:
        """RL's checkpoints add the environment's counters."""
        return {"env": self.env.stats.as_dict()}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.rl``: parse the config and train; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    # --init is short for --rl.init: the one option every RL run gives.
    args = ["--rl.init" if a == "--init" else a for a in args]
    args = [f"--rl.init={a[7:]}" if a.startswith("--init=") else a for a in args]
    return prepare.run_from_command_line("rl", RLRunConfig, args, train, "Search-R3 RL (GRPO).")


if __name__ == "__main__":
    sys.exit(main())
