"""Architectures the exporter writes: hyperparameters and tensor names for llama.cpp.

Two decoder families are supported, the two Search-R3 is built on: Qwen2 (the official
model, from Qwen2.5: q/k/v biases, NEOX-style rope that llama.cpp applies to HF's
layout as is) and Llama (SmolLM2: llama.cpp's Llama graph rotates adjacent pairs, so
the q and k rows are reordered from HF's half-split layout).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gguf
import numpy as np

from sr3desk.errors import ModelError


class ExportError(ModelError):
    """The checkpoint cannot be exported; the message names the file and the reason."""


@dataclass(frozen=True)
class ArchSpec:
    """What the exporter needs to know about one HF architecture."""

    hf_name: str  # config.json "architectures"[0]
    gguf_arch: str  # general.architecture in the GGUF
    permute_qk: bool  # reorder q/k rows for llama.cpp's pairwise rope
    bias_allowed: frozenset[str]  # which projections may carry a bias


ARCHS: dict[str, ArchSpec] = {
    "Qwen2ForCausalLM": ArchSpec(
        "Qwen2ForCausalLM", "qwen2", permute_qk=False, bias_allowed=frozenset({"q", "k", "v"})
    ),
    "LlamaForCausalLM": ArchSpec(
        "LlamaForCausalLM",
        "llama",
        permute_qk=True,
        bias_allowed=frozenset({"q", "k", "v", "o"}),
    ),
}

# HF parameter name (inside one decoder layer) -> GGUF tensor name (inside blk.N).
_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.o_proj.bias": "attn_output.bias",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
# Buffers some checkpoints save that llama.cpp recomputes.
_IGNORED = re.compile(r"(^|\.)rotary_emb\.inv_freq$")


def arch_spec(config: Mapping[str, Any], where: str) -> ArchSpec:
    """Return the spec for a config.json, or raise ExportError naming what is supported."""
    names = config.get("architectures") or []
    name = names[0] if names else str(config.get("model_type", "?"))
    spec = ARCHS.get(name) or next(
        (s for s in ARCHS.values() if not names and s.gguf_arch == name), None
    )
    if spec is None:
        supported = ", ".join(sorted(ARCHS))
        raise ExportError(
            f"Cannot export {where}: architecture {name!r} is not supported "
            f"(supported: {supported})"
        )
    return spec


@dataclass(frozen=True)
class HParams:
    """The hyperparameters llama.cpp needs, read from config.json."""

    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ctx_train: int
    rope_theta: float
    rms_eps: float
    tie_embeddings: bool
    vocab_size: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any], where: str) -> HParams:
        """Read and check config.json; unsupported options raise ExportError."""
        try:
            n_embd = int(config["hidden_size"])
            n_head = int(config["num_attention_heads"])
            hp = cls(
                n_layer=int(config["num_hidden_layers"]),
                n_embd=n_embd,
                n_ff=int(config["intermediate_size"]),
                n_head=n_head,
                n_head_kv=int(config.get("num_key_value_heads") or n_head),
                head_dim=int(config.get("head_dim") or n_embd // n_head),
                n_ctx_train=int(config.get("max_position_embeddings", 4096)),
                rope_theta=_rope_theta(config, where),
                rms_eps=float(config.get("rms_norm_eps", 1e-6)),
                tie_embeddings=bool(config.get("tie_word_embeddings", False)),
                vocab_size=int(config["vocab_size"]),
            )
        except KeyError as err:
            raise ExportError(f"Cannot export {where}: config.json lacks {err.args[0]!r}") from err
        if config.get("use_sliding_window"):
            raise ExportError(f"Cannot export {where}: sliding-window attention is not supported")
        act = config.get("hidden_act", "silu")
        if act != "silu":
            raise ExportError(f"Cannot export {where}: activation {act!r} is not supported")
        if config.get("mlp_bias"):
            raise ExportError(f"Cannot export {where}: MLP biases are not supported")
        return hp


def _rope_theta(config: Mapping[str, Any], where: str) -> float:
    # transformers 5 nests rope settings in "rope_parameters"; older files keep
    # "rope_theta" and "rope_scaling" at the top level.
    params = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind != "default":
        raise ExportError(f"Cannot export {where}: rope scaling {kind!r} is not supported")
    return float(params.get("rope_theta") or config.get("rope_theta") or 10000.0)


def write_hparams(writer: gguf.GGUFWriter, hp: HParams, n_vocab: int) -> None:
    """Write the model's hyperparameters under the architecture's key prefix."""
    writer.add_context_length(hp.n_ctx_train)
    writer.add_embedding_length(hp.n_embd)
    writer.add_block_count(hp.n_layer)
    writer.add_feed_forward_length(hp.n_ff)
    writer.add_head_count(hp.n_head)
    writer.add_head_count_kv(hp.n_head_kv)
    writer.add_rope_freq_base(hp.rope_theta)
    writer.add_rope_dimension_count(hp.head_dim)
    writer.add_layer_norm_rms_eps(hp.rms_eps)
    writer.add_vocab_size(n_vocab)
    if hp.head_dim * hp.n_head != hp.n_embd:
        writer.add_key_length(hp.head_dim)
        writer.add_value_length(hp.head_dim)


def gguf_name(hf_name: str, spec: ArchSpec, hp: HParams, where: str) -> str | None:
    """Map an HF tensor name to its GGUF name; None for tensors llama.cpp does not use.

    Raises ExportError for anything unknown, so no weight is silently dropped.
    """
    if _IGNORED.search(hf_name):
        return None
    if hf_name == "lm_head.weight" and hp.tie_embeddings:
        return None  # llama.cpp reuses token_embd when output.weight is absent
    if hf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[hf_name]
    match = _LAYER_RE.match(hf_name)
    if match:
        layer, rest = int(match.group(1)), match.group(2)
        target = _LAYER_NAMES.get(rest)
        if target is not None and layer < hp.n_layer:
            proj = rest.split(".")[1][0] if rest.endswith(".bias") else None
            if proj is None or proj in spec.bias_allowed:
                return f"blk.{layer}.{target}"
    raise ExportError(
        f"Cannot export {where}: tensor {hf_name!r} has no place in a {spec.gguf_arch} GGUF"
    )


def transform(gguf_tensor: str, data: np.ndarray, spec: ArchSpec, hp: HParams) -> np.ndarray:
    """Apply the layout change llama.cpp expects to one tensor (a no-op for most)."""
    if not spec.permute_qk:
        return data
    if gguf_tensor.endswith(("attn_q.weight", "attn_q.bias")):
        return _pairwise_rope_order(data, hp.n_head)
    if gguf_tensor.endswith(("attn_k.weight", "attn_k.bias")):
        return _pairwise_rope_order(data, hp.n_head_kv)
    return data


def _pairwise_rope_order(w: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder each head's rows from (first half, second half) to interleaved pairs.

    HF's Llama rotates dimension i with i + head_dim/2; llama.cpp's Llama graph rotates
    2i with 2i+1. Row j of the first half and row j of the second half become rows 2j
    and 2j+1, which makes both compute the same attention.
    """
    rows = w.shape[0]
    half = rows // n_head // 2
    return w.reshape(n_head, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
