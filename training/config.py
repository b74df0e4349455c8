"""Training configuration: dataclasses, loaded from YAML with command-line overrides.

Every field has a help text and every section checks itself in ``__post_init__``,
so a wrong value fails at start-up with a message that says what to change, not
an hour into a run. The command line is generated from the same classes::

    python -m training.sft --config training/configs/tiny-cpu.yaml --optim.lr 1e-3
    python -m training.sft --config training/configs/tiny-cpu.yaml train.steps=10

A checkpoint stores :meth:`Config.to_dict`; :meth:`Config.from_dict` restores it.

Stages built on this file (``training.rl``) subclass :class:`Config` and add their
own section; the sections a stage does not own (named in ``other_stages``) may sit
in the same YAML file and are skipped by the stages that do not read them.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from sr3desk.errors import Sr3Error

T = TypeVar("T")

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("constant", "linear", "cosine")
QUERY_KINDS = ("heading", "cloze", "llm")
MINERS = ("bm25", "none")


class ConfigError(Sr3Error):
    """A configuration value is missing, unknown or out of range."""


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass
class ModelConfig:
    """The base model and how inputs are cut to length."""

    path: str = field(
        default="build/models/tiny-qwen2",
        metadata=_help("HF checkpoint folder (or hub id) of the model to fine-tune."),
    )
    max_query_tokens: int = field(
        default=64, metadata=_help("Query text is truncated to this many tokens.")
    )
    max_document_tokens: int = field(
        default=256, metadata=_help("Document text is truncated to this many tokens.")
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata=_help("Recompute activations in the backward pass: less memory, ~30% slower."),
    )
    init_std: float = field(
        default=0.0,
        metadata=_help(
            "Re-draw every weight matrix from N(0, init_std) (seed train.seed) before "
            "training and save that start as train.out_dir/base, the run's untrained base. "
            "Only for random test models whose own init is too large to learn from in a "
            "few CPU minutes; 0 keeps the checkpoint's weights."
        ),
    )

    def __post_init__(self) -> None:
        _check(bool(self.path), "model.path is empty: give the base model's checkpoint folder")
        _check(self.init_std >= 0, f"model.init_std={self.init_std}: use 0 (keep) or a std > 0")
        _check(
            self.max_query_tokens >= 8,
            f"model.max_query_tokens={self.max_query_tokens}: use 8 or more",
        )
        _check(
            self.max_document_tokens >= 8,
            f"model.max_document_tokens={self.max_document_tokens}: use 8 or more",
        )


@dataclass
class LoraConfig:
    """LoRA adapters (peft) instead of full fine-tuning."""

    enabled: bool = field(
        default=False, metadata=_help("Train LoRA adapters; false trains every weight.")
    )
    r: int = field(default=16, metadata=_help("LoRA rank."))
    alpha: int = field(default=32, metadata=_help("LoRA scaling numerator (scale = alpha / r)."))
    dropout: float = field(default=0.05, metadata=_help("Dropout on the LoRA input."))
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
        metadata=_help("Names of the linear layers that get adapters."),
    )
    train_embed_token: bool = field(
        default=True,
        metadata=_help(
            "Also train the <|embed_token|> rows of the input and output embeddings "
            "(the token is new, so its rows carry no meaning yet)."
        ),
    )

    def __post_init__(self) -> None:
        if self.enabled:
            _check(self.r > 0, f"lora.r={self.r}: the rank must be positive (8-64 is usual)")
            _check(self.alpha > 0, f"lora.alpha={self.alpha}: must be positive")
            _check(0.0 <= self.dropout < 1.0, f"lora.dropout={self.dropout}: use 0 <= x < 1")
            _check(bool(self.target_modules), "lora.target_modules is empty: name some layers")


@dataclass
class LossConfig:
    """Weights of the four loss parts and their hyper-parameters."""

    lm: float = field(
        default=1.0,
        metadata=_help(
            "Weight of LM cross-entropy on the response 'The embedding is <|embed_token|>.'"
        ),
    )
    kl: float = field(
        default=0.1, metadata=_help("Weight of KL(model || frozen base) on the response tokens.")
    )
    infonce: float = field(
        default=1.0, metadata=_help("Weight of InfoNCE over in-batch and hard negatives.")
    )
    triplet: float = field(
        default=0.5, metadata=_help("Weight of the triplet margin loss on cosine similarity.")
    )
    temperature: float = field(
        default=0.05, metadata=_help("InfoNCE temperature tau: logits are cos / tau.")
    )
    margin: float = field(
        default=0.2, metadata=_help("Triplet margin: wants cos(q, d+) >= cos(q, d-) + margin.")
    )
    lm_queries: int = field(
        default=0,
        metadata=_help(
            "Take the LM and KL parts on the first N queries of each micro-batch; 0: all. "
            "The response is the same text after every prompt, so a few rows estimate it "
            "well, and the vocabulary-wide output is most of a small model's cost."
        ),
    )

    def __post_init__(self) -> None:
        for name in ("lm", "kl", "infonce", "triplet"):
            value = getattr(self, name)
            _check(value >= 0.0, f"loss.{name}={value}: a loss weight cannot be negative")
        _check(
            self.infonce > 0 or self.triplet > 0,
            "loss.infonce and loss.triplet are both 0: nothing would train the embedding",
        )
        _check(
            0.0 < self.temperature <= 10.0,
            f"loss.temperature={self.temperature}: use a value in (0, 10], e.g. 0.05",
        )
        _check(self.lm_queries >= 0, f"loss.lm_queries={self.lm_queries}: use 0 (all) or more")
        _check(
            0.0 <= self.margin <= 2.0,
            f"loss.margin={self.margin}: cosine differences lie in [0, 2]; use e.g. 0.2",
        )


@dataclass
class OptimConfig:
    """AdamW and its learning-rate schedule."""

    lr: float = field(default=1e-4, metadata=_help("Peak learning rate."))
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay."))
    beta1: float = field(default=0.9, metadata=_help("AdamW beta1."))
    beta2: float = field(default=0.999, metadata=_help("AdamW beta2."))
    warmup_steps: int = field(default=0, metadata=_help("Linear warm-up steps from 0 to lr."))
    schedule: str = field(
        default="cosine", metadata=_help(f"Decay after warm-up: one of {', '.join(SCHEDULES)}.")
    )
    min_lr_ratio: float = field(
        default=0.1, metadata=_help("The schedule decays to lr * min_lr_ratio.")
    )
    grad_clip: float = field(
        default=1.0, metadata=_help("Clip the gradient norm to this; 0 disables clipping.")
    )

    def __post_init__(self) -> None:
        _check(0.0 < self.lr < 1.0, f"optim.lr={self.lr}: use a value in (0, 1), e.g. 1e-4")
        _check(self.weight_decay >= 0, f"optim.weight_decay={self.weight_decay}: must be >= 0")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            _check(0.0 <= value < 1.0, f"optim.{name}={value}: use 0 <= beta < 1")
        _check(self.warmup_steps >= 0, f"optim.warmup_steps={self.warmup_steps}: must be >= 0")
        _check(
            self.schedule in SCHEDULES,
            f"optim.schedule={self.schedule!r}: use one of {', '.join(SCHEDULES)}",
        )
        _check(
            0.0 <= self.min_lr_ratio <= 1.0,
            f"optim.min_lr_ratio={self.min_lr_ratio}: use 0..1",
        )
        _check(self.grad_clip >= 0, f"optim.grad_clip={self.grad_clip}: must be >= 0")


@dataclass
class BuildConfig:
    """How ``training.data from-folder`` turns documents into a training set."""

    sources: list[str] = field(
        default_factory=list,
        metadata=_help(
            "Folders of documents (read with the app's extraction), a FOLDOC dictd file "
            "(*.dict.dz) or the Jargon File (jargon*.txt[.gz])."
        ),
    )
    include: list[str] = field(
        default_factory=list,
        metadata=_help("Glob patterns (relative to a source folder) of files to use; empty: all."),
    )
    max_files: int = field(
        default=0, metadata=_help("Use at most this many documents (sorted by path); 0: all.")
    )
    chunk_tokens: int = field(default=200, metadata=_help("Passage length in tokens."))
    overlap_tokens: int = field(default=0, metadata=_help("Overlap between passages in tokens."))
    tokenizer: str = field(
        default="",
        metadata=_help(
            "GGUF whose tokenizer counts tokens for chunking; empty: the app's approximate counter."
        ),
    )
    min_chars: int = field(default=80, metadata=_help("Passages shorter than this are dropped."))
    heldout_fraction: float = field(
        default=0.1, metadata=_help("Share of documents held out for evaluation (by document).")
    )
    queries: list[str] = field(
        default_factory=lambda: ["heading", "cloze"],
        metadata=_help(
            "Pseudo-query kinds: heading (a section title for its passages), cloze (a sentence "
            "for its passage, removed from it), llm (questions written by a chat GGUF)."
        ),
    )
    cloze_keep: float = field(
        default=0.0,
        metadata=_help("Probability that a cloze sentence stays in its passage."),
    )
    max_queries_per_document: int = field(
        default=0, metadata=_help("Cap on pseudo-queries per document; 0: no cap.")
    )
    llm_model: str = field(
        default="", metadata=_help("Chat GGUF for 'llm' questions (e.g. SmolLM2-135M-Instruct).")
    )
    llm_max_questions: int = field(
        default=200, metadata=_help("At most this many LLM questions in all.")
    )
    negatives: int = field(
        default=8, metadata=_help("Hard negatives mined per query (BM25 top-ranked non-positives).")
    )
    miner: str = field(
        default="bm25", metadata=_help(f"How negatives are mined: one of {', '.join(MINERS)}.")
    )
    seed: int = field(default=0, metadata=_help("Seed for the split and the cloze sentences."))

    def __post_init__(self) -> None:
        _check(self.max_files >= 0, f"build.max_files={self.max_files}: use 0 (all) or more")
        _check(self.chunk_tokens >= 16, f"build.chunk_tokens={self.chunk_tokens}: use 16 or more")
        _check(
            0 <= self.overlap_tokens <= self.chunk_tokens // 2,
            f"build.overlap_tokens={self.overlap_tokens}: use 0 <= overlap <= chunk_tokens / 2",
        )
        _check(
            0.0 < self.heldout_fraction < 1.0,
            f"build.heldout_fraction={self.heldout_fraction}: use a share in (0, 1), e.g. 0.1",
        )
        _check(bool(self.queries), f"build.queries is empty: use some of {QUERY_KINDS}")
        for kind in self.queries:
            _check(
                kind in QUERY_KINDS,
                f"build.queries has {kind!r}: use some of {', '.join(QUERY_KINDS)}",
            )
        _check(
            "llm" not in self.queries or bool(self.llm_model),
            "build.queries has 'llm' but build.llm_model is empty: give a chat GGUF",
        )
        _check(0.0 <= self.cloze_keep <= 1.0, f"build.cloze_keep={self.cloze_keep}: use 0..1")
        _check(self.negatives >= 0, f"build.negatives={self.negatives}: must be >= 0")
        _check(self.miner in MINERS, f"build.miner={self.miner!r}: use one of {', '.join(MINERS)}")


@dataclass
class DataConfig:
    """Where the training and held-out sets are, and how to build them when missing."""

    dir: str = field(
        default="build/data/tiny",
        metadata=_help(
            "Dataset folder written by `python -m training.data from-folder` (train/ and "
            "heldout/); built from data.build.sources when it does not exist yet."
        ),
    )
    train: str = field(
        default="",
        metadata=_help(
            "Instead of dir/train: a BEIR folder (qrels/train.tsv) or a pairs/triplets JSONL."
        ),
    )
    heldout: str = field(
        default="", metadata=_help("Instead of dir/heldout: a BEIR folder for evaluation.")
    )
    heldout_split: str = field(
        default="test", metadata=_help("Which qrels/<split>.tsv of the held-out folder to use.")
    )
    build: BuildConfig = field(default_factory=BuildConfig)

    def __post_init__(self) -> None:
        _check(
            bool(self.dir or self.train),
            "data.dir and data.train are both empty: give a dataset folder",
        )

    @property
    def train_path(self) -> Path:
        """The training set: ``train`` when given, else ``dir/train``."""
        return Path(self.train) if self.train else Path(self.dir) / "train"

    @property
    def heldout_path(self) -> Path:
        """The held-out BEIR folder: ``heldout`` when given, else ``dir/heldout``."""
        return Path(self.heldout) if self.heldout else Path(self.dir) / "heldout"


@dataclass
class TrainConfig:
    """The loop: batch sizes, steps, precision, checkpoints."""

    steps: int = field(default=100, metadata=_help("Optimizer steps."))
    batch_size: int = field(
        default=16, metadata=_help("Queries per micro-batch per process (in-batch negatives).")
    )
    grad_accum: int = field(default=1, metadata=_help("Micro-batches per optimizer step."))
    negatives: int = field(
        default=1, metadata=_help("Hard negatives per query taken from the mined ones.")
    )
    precision: str = field(
        default="auto",
        metadata=_help(
            f"One of {', '.join(PRECISIONS)}; auto: bf16 autocast on a GPU that has it, "
            "fp32 on CPU."
        ),
    )
    fsdp: bool = field(
        default=False,
        metadata=_help("Shard parameters with FSDP when several processes run (large models)."),
    )
    gather_across_processes: bool = field(
        default=True,
        metadata=_help("Use the other processes' documents as extra in-batch negatives."),
    )
    seed: int = field(default=0, metadata=_help("Seed for data order and initialisation."))
    out_dir: str = field(
        default="build/runs/sft", metadata=_help("Checkpoints, logs and final/ go here.")
    )
    log_every: int = field(default=10, metadata=_help("Log the loss parts every N steps."))
    save_every: int = field(
        default=0, metadata=_help("Write a resumable checkpoint every N steps; 0: only at the end.")
    )
    keep_checkpoints: int = field(default=2, metadata=_help("Keep the newest N step checkpoints."))
    resume: str = field(
        default="",
        metadata=_help("Resume from a checkpoint folder, or 'auto' for the newest in out_dir."),
    )
    threads: int = field(default=0, metadata=_help("torch CPU threads; 0: torch's default."))

    def __post_init__(self) -> None:
        _check(self.steps > 0, f"train.steps={self.steps}: must be positive")
        _check(
            self.batch_size >= 2,
            f"train.batch_size={self.batch_size}: use 2 or more (in-batch negatives)",
        )
        _check(self.grad_accum >= 1, f"train.grad_accum={self.grad_accum}: use 1 or more")
        _check(self.negatives >= 0, f"train.negatives={self.negatives}: must be >= 0")
        _check(
            self.precision in PRECISIONS,
            f"train.precision={self.precision!r}: use one of {', '.join(PRECISIONS)}",
        )
        _check(bool(self.out_dir), "train.out_dir is empty: give a folder for checkpoints")
        _check(self.log_every >= 1, f"train.log_every={self.log_every}: use 1 or more")
        _check(self.save_every >= 0, f"train.save_every={self.save_every}: use 0 or more")
        _check(
            self.keep_checkpoints >= 1,
            f"train.keep_checkpoints={self.keep_checkpoints}: use 1 or more",
        )
        _check(self.threads >= 0, f"train.threads={self.threads}: use 0 (default) or more")


@dataclass
class EvalConfig:
    """The quick in-process evaluation on the held-out split during training."""

    every: int = field(
        default=0, metadata=_help("Evaluate every N steps (and at the end); 0: only at the end.")
    )
    max_queries: int = field(
        default=200, metadata=_help("Evaluate on at most this many held-out queries; 0: all.")
    )
    batch_size: int = field(default=32, metadata=_help("Texts per forward pass when embedding."))
    enabled: bool = field(default=True, metadata=_help("Run the in-process evaluation at all."))

    def __post_init__(self) -> None:
        _check(self.every >= 0, f"eval.every={self.every}: use 0 or more")
        _check(self.max_queries >= 0, f"eval.max_queries={self.max_queries}: use 0 or more")
        _check(self.batch_size >= 1, f"eval.batch_size={self.batch_size}: use 1 or more")


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
        _check(
            self.train.negatives <= self.data.build.negatives or not self.data.build.sources,
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


# ---------------------------------------------------------------- loading


def from_mapping(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a nested mapping, coercing and checking each value.

    Unknown keys raise :class:`ConfigError` naming the closest known key; a
    top-level section listed in ``cls.other_stages`` is skipped.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'} must be a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    skip = set(getattr(cls, "other_stages", ())) if not where else set()
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in skip and key not in fields:
            continue
        if key not in fields:
            near = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {where}{near[0]}?)" if near else ""
            known = ", ".join(fields)
            raise ConfigError(f"unknown config key {where}{key}{hint}; known: {known}")
        kwargs[key] = _coerce(value, hints[key], f"{where}{key}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from exc


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """Convert a YAML or command-line value to the field's declared type."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return from_mapping(hint, value or {}, where=f"{name}.")
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        is_null = value is None or (
            isinstance(value, str) and value.lower() in ("null", "none", "~")
        )
        if is_null and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], name)
    if origin in (list, tuple):
        if isinstance(value, str):
            parsed = yaml.safe_load(value) if value.strip().startswith("[") else None
            items = (
                parsed
                if isinstance(parsed, list)
                else [v.strip() for v in value.split(",") if v.strip()]
            )
        elif isinstance(value, list | tuple):
            items = list(value)
        elif value is None:
            items = []
        else:
            raise ConfigError(f"{name} must be a list, got {value!r}")
        item_type = args[0] if args else str
        out = [_coerce(v, item_type, f"{name}[{i}]") for i, v in enumerate(items)]
        return tuple(out) if origin is tuple else out
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "on", "1"):
            return True
        if text in ("false", "no", "off", "0"):
            return False
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be an integer, got {value!r}") from None
        if number != int(number):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        return int(number)
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if hint is str:
        if value is None:
            return ""
        if isinstance(value, Mapping | list):
            raise ConfigError(f"{name} must be a string, got {value!r}")
        return str(value)
    return value


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a dict; ConfigError when missing or malformed."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of sections")
    return data


def _field_paths(cls: type, prefix: str = "") -> list[tuple[str, dataclasses.Field[Any], Any]]:
    """Every leaf field of a dataclass tree as (dotted name, field, type)."""
    hints = typing.get_type_hints(cls)
    out: list[tuple[str, dataclasses.Field[Any], Any]] = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            out.extend(_field_paths(hint, f"{prefix}{f.name}."))
        else:
            out.append((f"{prefix}{f.name}", f, hint))
    return out


def _default_text(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        return json.dumps(f.default)
    if f.default_factory is not dataclasses.MISSING:
        return json.dumps(f.default_factory())
    return "required"


def add_field_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one ``--section.field V`` option per leaf field of dataclass ``cls``.

    Read the values back with :func:`overrides_from_args`.
    """
    for dotted, f, _hint in _field_paths(cls):
        text = f.metadata.get("help", "")
        parser.add_argument(
            f"--{dotted}",
            dest=f"set:{dotted}",
            default=None,
            metavar="V",
            help=f"{text} (default: {_default_text(f)})",
        )


def overrides_from_args(
    ns: argparse.Namespace, tree: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Apply the ``--section.field`` values of a parsed namespace onto ``tree`` (a copy)."""
    out = _merge({}, tree or {})
    for key, value in vars(ns).items():
        if key.startswith("set:") and value is not None:
            _set_dotted(out, key[4:], _yaml_scalar(value))
    return out


def build_parser(
    cls: type, prog: str | None = None, description: str | None = None
) -> argparse.ArgumentParser:
    """An argparse parser with ``--config``, ``KEY=VALUE`` and one ``--section.field`` per field."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description or (cls.__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument(
        "--config", action="append", default=[], help="YAML config file (repeat to layer)"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="overrides such as train.steps=10 (same as --train.steps 10)",
    )
    add_field_arguments(parser, cls)
    return parser


def load_config(
    cls: type[T],
    argv: Sequence[str] | None = None,
    prog: str | None = None,
    description: str | None = None,
) -> T:
    """Parse ``--config FILE`` (repeatable), ``--a.b V`` and ``a.b=V`` into a checked ``cls``.

    ``argv`` defaults to ``sys.argv[1:]``. Later sources win: the files in order,
    then ``--a.b V`` options, then ``a.b=V`` overrides.
    """
    parser = build_parser(cls, prog=prog, description=description)
    ns = parser.parse_args(list(argv) if argv is not None else None)
    tree: dict[str, Any] = {}
    for path in ns.config:
        tree = _merge(tree, read_yaml(path))
    tree = overrides_from_args(ns, tree)
    known = {dotted for dotted, _f, _h in _field_paths(cls)}
    for item in ns.overrides:
        if "=" not in item:
            raise ConfigError(f"cannot read argument {item!r}: write overrides as key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if key not in known:
            near = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ConfigError(f"unknown config key {key}{hint}")
        _set_dotted(tree, key, _yaml_scalar(value))
    return from_mapping(cls, tree)


def _yaml_scalar(value: str) -> Any:
    """Parse a command-line value the way YAML would (lists, null, booleans)."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def save_config(config: Any, path: str | Path) -> None:
    """Write a config dataclass as YAML (readable, and loadable with ``--config``)."""
    Path(path).write_text(
        yaml.safe_dump(dataclasses.asdict(config), sort_keys=False), encoding="utf-8"
    )


__all__ = [
    "BuildConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LoraConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
    "add_field_arguments",
    "build_parser",
    "from_mapping",
    "load_config",
    "overrides_from_args",
    "read_yaml",
    "save_config",
]
