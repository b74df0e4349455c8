"""The SFT run's configuration: the sections every stage shares, and :class:`Config`.

One dataclass a YAML section (``model``, ``lora``, ``loss``, ``optim``, ``train``,
``eval``, and ``data`` from :mod:`training.config.data`); every field has a help
text and every section checks itself in ``__post_init__``. A checkpoint stores
:meth:`Config.to_dict`; :meth:`Config.from_dict` restores it. RL's sections are in
:mod:`training.config.rl`; loading is :mod:`training.config.loader`.

A later stage subclasses :class:`Config` and adds its own section; the sections a
stage does not own (named in ``other_stages``) may sit in the same YAML file and are
skipped by the stages that do not read them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from training.config.data import DataConfig
from training.config.loader import check, from_mapping, help_text

T = TypeVar("T")

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class ModelConfig:
    """The base model and how inputs are cut to length."""

    path: str = field(
        default="build/models/tiny-qwen2",
        metadata=help_text("HF checkpoint folder (or hub id) of the model to fine-tune."),
    )
    max_query_tokens: int = field(
        default=64, metadata=help_text("Query text is truncated to this many tokens.")
    )
    max_document_tokens: int = field(
        default=256, metadata=help_text("Document text is truncated to this many tokens.")
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata=help_text("Recompute activations in the backward pass: less memory, ~30% slower."),
    )
    train_layers: int = field(
        default=0,
        metadata=help_text(
            "Train only the top N decoder layers (and the final norm); the layers below and "
            "the embeddings stay frozen and get no backward pass (the CPU recipe's main "
            "saving; the trained layers are the delta that ships). 0: train every layer."
        ),
    )
    train_token_rows: bool = field(
        default=False,
        metadata=help_text(
            "With train_layers: also train the <|embed_token|> row of the input (and output) "
            "embeddings, nothing else of them. Needs optim.weight_decay=0 (decay would "
            "shrink every frozen row). Costs a backward pass through every layer (the "
            "input row's gradient comes from the bottom), so the CPU recipe leaves it off."
        ),
    )
    init_std: float = field(
        default=0.0,
        metadata=help_text(
            "Re-draw every weight matrix from N(0, init_std) (seed train.seed) before "
            "training and save that start as train.out_dir/base, the run's untrained base. "
            "Only for random test models whose own init is too large to learn from in a "
            "few CPU minutes; 0 keeps the checkpoint's weights."
        ),
    )

    def __post_init__(self) -> None:
        check(bool(self.path), "model.path is empty: give the base model's checkpoint folder")
        check(
            self.train_layers >= 0,
            f"model.train_layers={self.train_layers}: use 0 (all) or a layer count",
        )
        check(self.init_std >= 0, f"model.init_std={self.init_std}: use 0 (keep) or a std > 0")
        check(
            self.max_query_tokens >= 8,
            f"model.max_query_tokens={self.max_query_tokens}: use 8 or more",
        )
        check(
            self.max_document_tokens >= 8,
            f"model.max_document_tokens={self.max_document_tokens}: use 8 or more",
        )


@dataclass
class LoraConfig:
    """LoRA adapters (peft) instead of full fine-tuning."""

    enabled: bool = field(
        default=False, metadata=help_text("Train LoRA adapters; false trains every weight.")
    )
    r: int = field(default=16, metadata=help_text("LoRA rank."))
    alpha: int = field(
        default=32, metadata=help_text("LoRA scaling numerator (scale = alpha / r).")
    )
    dropout: float = field(default=0.05, metadata=help_text("Dropout on the LoRA input."))
    target_modules: list[str] = field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        metadata=help_text("Names of the linear layers that get adapters."),
    )
    train_embed_token: bool = field(
        default=True,
        metadata=help_text(
            "Also train the <|embed_token|> rows of the input and output embeddings "
            "(the token is new, so its rows carry no meaning yet)."
        ),
    )

    def __post_init__(self) -> None:
        if self.enabled:
            check(self.r > 0, f"lora.r={self.r}: the rank must be positive (8-64 is usual)")
            check(self.alpha > 0, f"lora.alpha={self.alpha}: must be positive")
            check(0.0 <= self.dropout < 1.0, f"lora.dropout={self.dropout}: use 0 <= x < 1")
            check(bool(self.target_modules), "lora.target_modules is empty: name some layers")


@dataclass
class LossConfig:
    """Weights of the four loss parts (and the teacher's distillation) and their settings."""

    lm: float = field(
        default=1.0,
        metadata=help_text(
            "Weight of LM cross-entropy on the response 'The embedding is <|embed_token|>.'"
        ),
    )
    kl: float = field(
        default=0.1,
        metadata=help_text("Weight of KL(model || frozen base) on the response tokens."),
    )
    infonce: float = field(
        default=1.0, metadata=help_text("Weight of InfoNCE over in-batch and hard negatives.")
    )
    triplet: float = field(
        default=0.5, metadata=help_text("Weight of the triplet margin loss on cosine similarity.")
    )
    temperature: float = field(
        default=0.05, metadata=help_text("InfoNCE temperature tau: logits are cos / tau.")
    )
    margin: float = field(
        default=0.2, metadata=help_text("Triplet margin: wants cos(q, d+) >= cos(q, d-) + margin.")
    )
    distill: float = field(
        default=0.0,
        metadata=help_text(
            "Weight of listwise distillation from the teacher (data.build.teacher): "
            "KL(teacher || model) of the score distributions over each query's candidates "
            "(the batch's positives and hard negatives). The teacher's vectors are computed "
            "once and cached beside the training set (teacher.npz), never in the loop. 0: off."
        ),
    )
    distill_temperature: float = field(
        default=0.05,
        metadata=help_text("Temperature of the model's side of the distillation: cos / tau."),
    )
    teacher_temperature: float = field(
        default=0.05,
        metadata=help_text(
            "Temperature of the teacher's side: its cosines / tau. Lower makes its "
            "distribution sharper (closer to InfoNCE's one-hot target)."
        ),
    )
    cross_distill: float = field(
        default=0.0,
        metadata=help_text(
            "Weight of listwise distillation from the cross-encoder: KL(cross-encoder || "
            "model) over each query's own positive and hard negatives, the pairs it scored "
            "when the data was built (data.build.cross_targets: train/cross.npz). 0: off."
        ),
    )
    cross_temperature: float = field(
        default=1.0,
        metadata=help_text(
            "Temperature of the cross-encoder's side: its logits / tau (they span about "
            "-11..11; the model's side uses distill_temperature)."
        ),
    )
    lm_queries: int = field(
        default=0,
        metadata=help_text(
            "Take the LM and KL parts on the first N queries of each micro-batch; 0: all. "
            "The response is the same text after every prompt, so a few rows estimate it "
            "well, and the vocabulary-wide output is most of a small model's cost."
        ),
    )

    def __post_init__(self) -> None:
        for name in ("lm", "kl", "infonce", "triplet", "distill", "cross_distill"):
            value = getattr(self, name)
            check(value >= 0.0, f"loss.{name}={value}: a loss weight cannot be negative")
        check(
            self.infonce > 0 or self.triplet > 0 or self.distill > 0 or self.cross_distill > 0,
            "loss.infonce, loss.triplet, loss.distill and loss.cross_distill are all 0: "
            "nothing would train "
            "the embedding",
        )
        for name in ("distill_temperature", "teacher_temperature", "cross_temperature"):
            value = getattr(self, name)
            check(
                0.0 < value <= 10.0,
                f"loss.{name}={value}: use a value in (0, 10], e.g. 0.05",
            )
        check(
            0.0 < self.temperature <= 10.0,
            f"loss.temperature={self.temperature}: use a value in (0, 10], e.g. 0.05",
        )
        check(self.lm_queries >= 0, f"loss.lm_queries={self.lm_queries}: use 0 (all) or more")
        check(
            0.0 <= self.margin <= 2.0,
            f"loss.margin={self.margin}: cosine differences lie in [0, 2]; use e.g. 0.2",
        )


@dataclass
class OptimConfig:
    """AdamW and its learning-rate schedule."""

    lr: float = field(default=1e-4, metadata=help_text("Peak learning rate."))
    weight_decay: float = field(default=0.0, metadata=help_text("AdamW weight decay."))
    beta1: float = field(default=0.9, metadata=help_text("AdamW beta1."))
    beta2: float = field(default=0.999, metadata=help_text("AdamW beta2."))
    warmup_steps: int = field(default=0, metadata=help_text("Linear warm-up steps from 0 to lr."))
    schedule: str = field(
        default="cosine", metadata=help_text(f"Decay after warm-up: one of {', '.join(SCHEDULES)}.")
    )
    min_lr_ratio: float = field(
        default=0.1, metadata=help_text("The schedule decays to lr * min_lr_ratio.")
    )
    grad_clip: float = field(
        default=1.0, metadata=help_text("Clip the gradient norm to this; 0 disables clipping.")
    )

    def __post_init__(self) -> None:
        check(0.0 < self.lr < 1.0, f"optim.lr={self.lr}: use a value in (0, 1), e.g. 1e-4")
        check(self.weight_decay >= 0, f"optim.weight_decay={self.weight_decay}: must be >= 0")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            check(0.0 <= value < 1.0, f"optim.{name}={value}: use 0 <= beta < 1")
        check(self.warmup_steps >= 0, f"optim.warmup_steps={self.warmup_steps}: must be >= 0")
        check(
            self.schedule in SCHEDULES,
            f"optim.schedule={self.schedule!r}: use one of {', '.join(SCHEDULES)}",
        )
        check(
            0.0 <= self.min_lr_ratio <= 1.0,
            f"optim.min_lr_ratio={self.min_lr_ratio}: use 0..1",
        )
        check(self.grad_clip >= 0, f"optim.grad_clip={self.grad_clip}: must be >= 0")


@dataclass
class TrainConfig:
    """The loop: batch sizes, steps, precision, checkpoints."""

    steps: int = field(default=100, metadata=help_text("Optimizer steps."))
    batch_size: int = field(
        default=16, metadata=help_text("Queries per micro-batch per process (in-batch negatives).")
    )
    grad_accum: int = field(default=1, metadata=help_text("Micro-batches per optimizer step."))
    negatives: int = field(
        default=1, metadata=help_text("Hard negatives per query taken from the mined ones.")
    )
    precision: str = field(
        default="auto",
        metadata=help_text(
            f"One of {', '.join(PRECISIONS)}; auto: bf16 autocast on a GPU that has it "
            "or a CPU that computes bf16 natively (AMX, AVX512-BF16), else fp32."
        ),
    )
    fsdp: bool = field(
        default=False,
        metadata=help_text("Shard parameters with FSDP when several processes run (large models)."),
    )
    gather_across_processes: bool = field(
        default=True,
        metadata=help_text("Use the other processes' documents as extra in-batch negatives."),
    )
    seed: int = field(default=0, metadata=help_text("Seed for data order and initialisation."))
    out_dir: str = field(
        default="build/runs/sft", metadata=help_text("Checkpoints, logs and final/ go here.")
    )
    log_every: int = field(default=10, metadata=help_text("Log the loss parts every N steps."))
    save_every: int = field(
        default=0,
        metadata=help_text("Write a resumable checkpoint every N steps; 0: only at the end."),
    )
    keep_checkpoints: int = field(
        default=2, metadata=help_text("Keep the newest N step checkpoints.")
    )
    resume: str = field(
        default="",
        metadata=help_text("Resume from a checkpoint folder, or 'auto' for the newest in out_dir."),
    )
    threads: int = field(default=0, metadata=help_text("torch CPU threads; 0: torch's default."))

    def __post_init__(self) -> None:
        check(self.steps > 0, f"train.steps={self.steps}: must be positive")
        check(
            self.batch_size >= 2,
            f"train.batch_size={self.batch_size}: use 2 or more (in-batch negatives)",
        )
        check(self.grad_accum >= 1, f"train.grad_accum={self.grad_accum}: use 1 or more")
        check(self.negatives >= 0, f"train.negatives={self.negatives}: must be >= 0")
        check(
            self.precision in PRECISIONS,
            f"train.precision={self.precision!r}: use one of {', '.join(PRECISIONS)}",
        )
        check(bool(self.out_dir), "train.out_dir is empty: give a folder for checkpoints")
        check(self.log_every >= 1, f"train.log_every={self.log_every}: use 1 or more")
        check(self.save_every >= 0, f"train.save_every={self.save_every}: use 0 or more")
        check(
            self.keep_checkpoints >= 1,
            f"train.keep_checkpoints={self.keep_checkpoints}: use 1 or more",
        )
        check(self.threads >= 0, f"train.threads={self.threads}: use 0 (default) or more")


@dataclass
class EvalConfig:
    """The quick in-process evaluation on the held-out split during training."""

    every: int = field(
        default=0,
        metadata=help_text("Evaluate every N steps (and at the end); 0: only at the end."),
    )
    max_queries: int = field(
        default=200, metadata=help_text("Evaluate on at most this many held-out queries; 0: all.")
    )
    batch_size: int = field(
        default=32, metadata=help_text("Texts per forward pass when embedding.")
    )
    enabled: bool = field(default=True, metadata=help_text("Run the in-process evaluation at all."))

    def __post_init__(self) -> None:
        check(self.every >= 0, f"eval.every={self.every}: use 0 or more")
        check(self.max_queries >= 0, f"eval.max_queries={self.max_queries}: use 0 or more")
        check(self.batch_size >= 1, f"eval.batch_size={self.batch_size}: use 1 or more")


@dataclass
class Config:
    """Everything one SFT run needs; stored in each of its checkpoints."""

    # YAML sections read by other stages (training.rl); this class skips them.
    other_stages: ClassVar[tuple[str, ...]] = ("rl",)

    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        check(
            not (self.model.train_layers and self.lora.enabled),
            "model.train_layers and lora.enabled are both set: use one way of training part "
            "of the model",
        )
        check(
            not (
                self.model.train_layers
                and self.model.train_token_rows
                and self.optim.weight_decay > 0
            ),
            f"optim.weight_decay={self.optim.weight_decay} with model.train_layers and "
            "model.train_token_rows: decay would shrink every frozen embedding row; use 0",
        )
        check(
            self.train.negatives <= self.data.build.negatives
            or not (self.data.build.sources or self.data.build.corpora),
            f"train.negatives={self.train.negatives} > data.build.negatives="
            f"{self.data.build.negatives}: mine at least as many negatives as training uses",
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON-safe) of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        """Build and validate from a nested dict such as :meth:`to_dict` wrote."""
        return from_mapping(cls, data)
