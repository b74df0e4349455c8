"""What a training script sets up around its loop, for SFT and RL alike.

Mixed precision, LoRA adapters, the frozen reference model, AdamW and its
learning-rate schedule, the command-line entry: one definition each, so the two
stages cannot drift apart.
"""

from __future__ import annotations

import copy
import logging
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from sr3desk.errors import Sr3Error
from training.config import LoraConfig, ModelConfig, OptimConfig, load_config

log = logging.getLogger(__name__)

C = TypeVar("C")


def run_from_command_line(
    stage: str,
    config_cls: type[C],
    argv: Sequence[str] | None,
    train: Callable[[C], Path],
    description: str,
) -> int:
    """``python -m training.<stage>``: parse the config, train, print the final folder.

    Returns the exit status; a user-facing error is one ``training.<stage>: error:``
    line on stderr.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        cfg = load_config(
            config_cls, argv, prog=f"python -m training.{stage}", description=description
        )
        final = train(cfg)
    except Sr3Error as exc:
        sys.stderr.write(f"training.{stage}: error: {exc}\n")
        return exc.exit_code
    sys.stdout.write(f"{final}\n")
    return 0


# CPU flags (Linux /proc/cpuinfo) of native bf16 arithmetic: AMX tiles or AVX512-BF16.
# Without them torch emulates bf16, which measured 11x slower than fp32 on a Zen 2.
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bf16 natively: one of :data:`CPU_BF16_FLAGS` in the
    ``flags`` line of ``cpuinfo``; False where that file cannot be read."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return any(flag in line.split() for flag in CPU_BF16_FLAGS)
    return False


def mixed_precision(precision: str) -> str:
    """accelerate's mixed_precision for ``train.precision`` on this machine: "auto" is
    bf16 autocast on a GPU that has bf16, or on a CPU-only machine whose CPU computes
    bf16 natively (:func:`cpu_has_bf16`), else "no" (fp32)."""
    if precision == "auto":
        if torch.cuda.is_available():
            return "bf16" if torch.cuda.is_bf16_supported() else "no"
        return "bf16" if cpu_has_bf16() else "no"
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]


def add_lora(model: nn.Module, lora: LoraConfig, token_id: int) -> Any:
    """Wrap ``model`` in new LoRA adapters (peft) as ``lora.*`` asks; returns the peft model.

    With ``lora.train_embed_token`` the ``<|embed_token|>`` rows of the input and
    (when not tied) output embeddings are trained too: the token is new, so its
    rows carry no meaning yet.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    hf: Any = model
    trainable_tokens = None
    if lora.train_embed_token:
        inputs = hf.get_input_embeddings()
        trainable_tokens = {_module_name(model, inputs): [token_id]}
        outputs = hf.get_output_embeddings()
        if outputs is not None and outputs.weight is not inputs.weight:
            trainable_tokens[_module_name(model, outputs)] = [token_id]
    return get_peft_model(
        hf,
        PeftLoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules),
            trainable_token_indices=trainable_tokens,
            task_type="CAUSAL_LM",
        ),
    )


def frozen_copy(model: nn.Module, bf16: bool) -> nn.Module:
    """A frozen copy of ``model`` in eval mode: the reference for KL (bf16: half the memory)."""
    ref = copy.deepcopy(model).requires_grad_(False).eval()
    if bf16:
        ref.to(torch.bfloat16)  # only read, never trained
    return ref


def train_top_layers(model: nn.Module, n_top: int, token_id: int, token_rows: bool) -> None:
    """Freeze ``model`` but its top ``n_top`` decoder layers and its final norm, in place.

    With ``token_rows`` the embedding matrix stays trainable but a gradient hook keeps
    only the ``<|embed_token|>`` row (the token is new; its row carries no meaning yet);
    tied input and output embeddings share that one matrix. The frozen layers get no
    backward pass at all, which is most of the saving on a CPU.
    """
    decoder: Any = model.get_decoder()  # type: ignore[operator]
    layers = decoder.layers
    if not 0 < n_top <= len(layers):
        raise ValueError(f"model.train_layers={n_top}: the model has {len(layers)} layers")
    model.requires_grad_(False)
    for layer in layers[len(layers) - n_top :]:
        layer.requires_grad_(True)
    decoder.norm.requires_grad_(True)
    if token_rows:
        weights = {model.get_input_embeddings().weight}  # type: ignore[operator]
        out = model.get_output_embeddings()  # type: ignore[operator]
        if out is not None:
            weights.add(out.weight)
        for weight in weights:
            mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype)
            mask[token_id] = 1.0
            weight.requires_grad_(True)
            weight.register_hook(lambda grad, mask=mask: grad * mask.to(grad.device))
    log.info(
        "training the top %d of %d layers%s",
        n_top,
        len(layers),
        " and the embed token's rows" if token_rows else "",
    )


def gradient_checkpointing(hf_model: Any, model_cfg: ModelConfig, generates: bool) -> None:
    """Turn on activation recomputation when ``model.gradient_checkpointing`` asks for it.

    A model that ``generates`` (RL) keeps its KV cache for ``generate()``.
    """
    if model_cfg.gradient_checkpointing:
        hf_model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
        if not generates:
            hf_model.config.use_cache = False


def make_optimizer(
    trainable: list[nn.Parameter], optim: OptimConfig, lr: float, fused: bool = True
) -> torch.optim.AdamW:
    """AdamW over ``trainable`` with ``optim.*``'s betas; decay only matrices (not norms, biases).

    The fused kernel is several times faster; sharded (FSDP) parameters need
    ``fused=False``.
    """
    return torch.optim.AdamW(
        [
            {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": optim.weight_decay},
            {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=lr,
        betas=(optim.beta1, optim.beta2),
        fused=fused,
    )


def lr_factor(
    step: int, warmup: int, total: int, schedule: str = "constant", min_ratio: float = 0.0
) -> float:
    """Multiplier of the peak lr at ``step``: linear warm-up, then the chosen decay.

    >>> [lr_factor(s, 2, 10) for s in (0, 1, 5)]
    [0.5, 1.0, 1.0]
    >>> lr_factor(10, 0, 10, "linear", 0.1)
    0.1
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    span = max(total - warmup, 1)
    done = min((step - warmup) / span, 1.0)
    shape = 1.0 - done if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * done))
    return min_ratio + (1.0 - min_ratio) * shape


def log_parameters(net: nn.Module, trainable: list[nn.Parameter], lora: bool, what: str) -> None:
    """Log the model's size and how much of it trains."""
    log.info(
        "model: %s, %.1fM parameters, %.2fM trained (%s)",
        what,
        sum(p.numel() for p in net.parameters()) / 1e6,
        sum(p.numel() for p in trainable) / 1e6,
        "LoRA" if lora else "full",
    )


def _module_name(model: nn.Module, module: nn.Module) -> str:
    """The attribute name of ``module`` inside ``model`` (e.g. embed_tokens, lm_head)."""
    for name, mod in model.named_modules():
        if mod is module:
            return name.rsplit(".", 1)[-1]
    raise ValueError("module not found in the model")
