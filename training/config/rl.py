"""The RL run's configuration: the ``rl`` section (and its ``rl.env``) beside SFT's.

:class:`RLRunConfig` is :class:`~training.config.sft.Config` plus ``rl``: an RL run
reads the model, LoRA, loss, data, train and eval sections of the same YAML file,
and its checkpoints carry all of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from training.config.loader import check, help_text
from training.config.sft import Config
from training.rewards import RANK_KINDS


@dataclass
class EnvConfig:
    """The corpus environment: cached embeddings, kNN graph, partial refreshes."""

    graph_k: int = field(default=8, metadata=help_text("Neighbours per passage in the kNN graph."))
    hops: int = field(
        default=1,
        metadata=help_text("Graph hops around each retrieved candidate that a step re-encodes."),
    )
    refresh_every: int = field(
        default=50, metadata=help_text("Re-encode the whole corpus every N steps; 0: never.")
    )
    max_region: int = field(
        default=0,
        metadata=help_text("Cap on passages re-encoded per step (positives first); 0: no cap."),
    )
    batch_size: int = field(
        default=32, metadata=help_text("Passages per forward pass when encoding.")
    )
    max_passages: int = field(
        default=0,
        metadata=help_text(
            "Hold a seeded sample of this many training passages (the sampled queries' "
            "positives and negatives among them); 0: the whole training corpus."
        ),
    )

    def __post_init__(self) -> None:
        check(self.graph_k >= 1, f"rl.env.graph_k={self.graph_k}: use 1 or more")
        check(self.hops >= 0, f"rl.env.hops={self.hops}: use 0 or more")
        check(self.refresh_every >= 0, f"rl.env.refresh_every={self.refresh_every}: use >= 0")
        check(self.max_region >= 0, f"rl.env.max_region={self.max_region}: use 0 (no cap) or more")
        check(self.batch_size >= 1, f"rl.env.batch_size={self.batch_size}: use 1 or more")
        check(
            self.max_passages == 0 or self.max_passages >= 2,
            f"rl.env.max_passages={self.max_passages}: use 0 (all) or 2 or more",
        )


@dataclass
class RLConfig:
    """Group-relative policy optimisation of the reasoning before the embed token."""

    init: str = field(
        default="",
        metadata=help_text(
            "HF checkpoint to start from, normally SFT's final/ folder (also --init); "
            "empty: train.out_dir/final of this config."
        ),
    )
    out_dir: str = field(
        default="",
        metadata=help_text(
            "Checkpoints, log.jsonl and final/ go here; empty: 'rl' beside train.out_dir."
        ),
    )
    steps: int = field(default=100, metadata=help_text("RL steps (one optimizer step each)."))
    queries: int = field(default=8, metadata=help_text("Training queries per step per process."))
    group_size: int = field(default=8, metadata=help_text("Sampled completions per query (G)."))
    max_reason_tokens: int = field(
        default=64,
        metadata=help_text("Token budget of the reasoning; past it the suffix is forced, unpaid."),
    )
    temperature: float = field(default=1.0, metadata=help_text("Sampling temperature."))
    top_p: float = field(default=1.0, metadata=help_text("Nucleus sampling; 1 keeps all tokens."))
    top_k: int = field(
        default=0, metadata=help_text("Sample among the k likeliest tokens; 0: all.")
    )
    lr: float = field(
        default=1e-6,
        metadata=help_text("Learning rate (constant after warm-up); small on purpose."),
    )
    warmup_steps: int = field(default=0, metadata=help_text("Linear warm-up steps from 0 to lr."))
    clip_eps: float = field(
        default=0.2, metadata=help_text("PPO clip: the ratio is clipped to [1 - eps, 1 + eps].")
    )
    kl_beta: float = field(
        default=0.1,
        metadata=help_text("Weight of KL(policy || initial model) on generated tokens."),
    )
    ppo_epochs: int = field(
        default=1, metadata=help_text("Optimizer steps on each batch of rollouts (reuse).")
    )
    reward: str = field(
        default="ndcg",
        metadata=help_text(f"Ranking reward: one of {', '.join(RANK_KINDS)} (nDCG@10 or 1/rank)."),
    )
    format_weight: float = field(
        default=0.2,
        metadata=help_text("Weight of the format reward (token written once, in budget, in form)."),
    )
    candidates: int = field(
        default=20, metadata=help_text("Candidates the environment retrieves per rollout.")
    )
    negatives: int = field(
        default=2,
        metadata=help_text(
            "Hard negatives per query for the contrastive parts, from the candidates."
        ),
    )
    contrastive: float = field(
        default=1.0,
        metadata=help_text("Weight of InfoNCE on the reasoning embeddings (keep it on)."),
    )
    sft: float = field(
        default=1.0,
        metadata=help_text(
            "Weight of the SFT objective (loss.*) on plain query prompts: protects the "
            "no-reasoning search path; 0 turns it off."
        ),
    )
    log_every: int = field(default=5, metadata=help_text("Log every N steps."))
    save_every: int = field(
        default=0, metadata=help_text("Write a resumable checkpoint every N steps; 0: at the end.")
    )
    keep_checkpoints: int = field(default=2, metadata=help_text("Keep the newest N checkpoints."))
    resume: str = field(
        default="", metadata=help_text("Resume from a checkpoint folder, or 'auto' for the newest.")
    )
    env: EnvConfig = field(default_factory=EnvConfig)

    def __post_init__(self) -> None:
        check(self.steps > 0, f"rl.steps={self.steps}: must be positive")
        check(self.queries >= 1, f"rl.queries={self.queries}: use 1 or more")
        check(
            self.group_size >= 2,
            f"rl.group_size={self.group_size}: use 2 or more (advantages are group-relative)",
        )
        check(self.max_reason_tokens >= 1, "rl.max_reason_tokens must be at least 1")
        check(self.temperature > 0, f"rl.temperature={self.temperature}: must be positive")
        check(0 < self.top_p <= 1, f"rl.top_p={self.top_p}: use a value in (0, 1]")
        check(self.top_k >= 0, f"rl.top_k={self.top_k}: use 0 (off) or more")
        check(0 < self.lr < 1, f"rl.lr={self.lr}: use a value in (0, 1), e.g. 1e-6")
        check(self.warmup_steps >= 0, f"rl.warmup_steps={self.warmup_steps}: use 0 or more")
        check(0 < self.clip_eps < 1, f"rl.clip_eps={self.clip_eps}: use a value in (0, 1)")
        check(self.kl_beta >= 0, f"rl.kl_beta={self.kl_beta}: must be >= 0")
        check(self.ppo_epochs >= 1, f"rl.ppo_epochs={self.ppo_epochs}: use 1 or more")
        check(
            self.reward in RANK_KINDS,
            f"rl.reward={self.reward!r}: use one of {', '.join(RANK_KINDS)}",
        )
        check(self.format_weight >= 0, f"rl.format_weight={self.format_weight}: must be >= 0")
        check(self.candidates >= 1, f"rl.candidates={self.candidates}: use 1 or more")
        check(self.negatives >= 0, f"rl.negatives={self.negatives}: use 0 or more")
        check(self.contrastive >= 0, f"rl.contrastive={self.contrastive}: must be >= 0")
        check(self.sft >= 0, f"rl.sft={self.sft}: must be >= 0")
        check(self.log_every >= 1, f"rl.log_every={self.log_every}: use 1 or more")
        check(self.save_every >= 0, f"rl.save_every={self.save_every}: use 0 or more")
        check(self.keep_checkpoints >= 1, "rl.keep_checkpoints: use 1 or more")


@dataclass
class RLRunConfig(Config):
    """Everything one RL run needs: the SFT sections it shares, and ``rl``."""

    other_stages: ClassVar[tuple[str, ...]] = ()

    rl: RLConfig = field(default_factory=RLConfig)
