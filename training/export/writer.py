"""Write a GGUF from an HF checkpoint directory, one tensor in memory at a time."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gguf
import numpy as np

from sr3desk.model import prompts as sr3
from training.export.arch import (
    ArchSpec,
    ExportError,
    HParams,
    arch_spec,
    gguf_name,
    transform,
    write_hparams,
)
from training.export.vocab import Vocab, read_vocab, write_vocab

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

OUT_TYPES = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "bf16": gguf.LlamaFileType.MOSTLY_BF16,
}


@dataclass(frozen=True)
class Sr3Meta:
    """The ``sr3.`` keys: prompts, model name and stage, held-out metrics."""

    prompts: sr3.PromptSet
    name: str
    stage: str
    eval_metrics: Mapping[str, Any] | None


@dataclass(frozen=True)
class _Planned:
    hf_name: str
    gguf_name: str
    shard: Path
    shape: tuple[int, ...]
    out_type: gguf.GGMLQuantizationType


def load_config(hf_dir: Path) -> dict[str, Any]:
    """Read ``config.json``; ExportError when it is missing or not JSON."""
    path = hf_dir / "config.json"
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError as err:
        raise ExportError(
            f"Cannot export {hf_dir}: no config.json (not a Hugging Face checkpoint folder)"
        ) from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ExportError(f"Cannot export {hf_dir}: config.json is not valid JSON") from err


def _shards(hf_dir: Path) -> list[Path]:
    shards = sorted(hf_dir.glob("*.safetensors"))
    if not shards:
        found = sorted(p.name for p in hf_dir.glob("*.bin"))
        hint = " (only PyTorch .bin files: save with safe_serialization)" if found else ""
        raise ExportError(f"Cannot export {hf_dir}: no .safetensors weights{hint}")
    return shards


def _plan(hf_dir: Path, spec: ArchSpec, hp: HParams, out_type: str) -> tuple[list[_Planned], int]:
    """Map every stored tensor to its GGUF name and type without loading any weight.

    Returns the plan and the embedding row count (the GGUF's vocabulary size).
    """
    from safetensors import safe_open

    where = str(hf_dir)
    plan: list[_Planned] = []
    n_rows = -1
    for shard in _shards(hf_dir):
        with safe_open(str(shard), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                target = gguf_name(name, spec, hp, where)
                if target is None:
                    continue
                shape = tuple(f.get_slice(name).get_shape())
                if target == "token_embd.weight":
                    n_rows = shape[0]
                plan.append(_Planned(name, target, shard, shape, _tensor_type(shape, out_type)))
    names = {p.gguf_name for p in plan}
    required = {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{t}"
        for i in range(hp.n_layer)
        for t in ("attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight")
    }
    missing = sorted(required - names)
    if missing:
        raise ExportError(f"Cannot export {hf_dir}: weights missing: {', '.join(missing[:4])}")
    if not hp.tie_embeddings and "output.weight" not in names:
        raise ExportError(f"Cannot export {hf_dir}: untied model without lm_head.weight")
    plan.sort(key=_order)
    return plan, n_rows


def _order(p: _Planned) -> tuple[int, int, str]:
    # Conventional order: embeddings, blocks in layer order, then output tensors.
    if p.gguf_name.startswith("blk."):
        return (1, int(p.gguf_name.split(".")[1]), p.gguf_name)
    return (0 if p.gguf_name == "token_embd.weight" else 2, 0, p.gguf_name)


def _tensor_type(shape: tuple[int, ...], out_type: str) -> gguf.GGMLQuantizationType:
    # Norms and biases stay F32: they are tiny and llama.cpp computes them in F32.
    if len(shape) < 2 or out_type == "f32":
        return gguf.GGMLQuantizationType.F32
    if out_type == "bf16":
        return gguf.GGMLQuantizationType.BF16
    return gguf.GGMLQuantizationType.F16


def _nbytes(p: _Planned) -> int:
    size = int(np.prod(p.shape))
    return size * (4 if p.out_type == gguf.GGMLQuantizationType.F32 else 2)


def _tensors(plan: Sequence[_Planned], spec: ArchSpec, hp: HParams) -> Iterator[np.ndarray]:
    """Yield each planned tensor converted to its output type, in plan order."""
    import torch
    from safetensors import safe_open

    with ExitStack() as stack:
        handles: dict[Path, Any] = {}
        for p in plan:
            if p.shard not in handles:
                handles[p.shard] = stack.enter_context(safe_open(str(p.shard), framework="pt"))
            data = handles[p.shard].get_tensor(p.hf_name).to(torch.float32).numpy()
            data = transform(p.gguf_name, data, spec, hp)
            if p.out_type == gguf.GGMLQuantizationType.F32:
                yield np.ascontiguousarray(data, dtype=np.float32)
            elif p.out_type == gguf.GGMLQuantizationType.F16:
                yield np.ascontiguousarray(data, dtype=np.float16)
            else:
                # numpy has no bfloat16: write the raw 16-bit pattern torch rounds to.
                bf16 = torch.from_numpy(np.ascontiguousarray(data)).to(torch.bfloat16)
                yield bf16.view(torch.int16).numpy().view(np.uint8)


def write_gguf(
    hf_dir: Path,
    out_path: Path,
    out_type: str,
    meta: Sr3Meta,
    pre: str | None = None,
) -> tuple[Vocab, PreTrainedTokenizerBase]:
    """Write the HF checkpoint in ``hf_dir`` to ``out_path`` as an ``out_type`` GGUF.

    Streams tensors (one in memory at a time) into ``out_path`` and returns the vocabulary
    written and the HF tokenizer it came from. The caller renames a temporary
    ``out_path`` into place.
    """
    from transformers import AutoTokenizer

    where = str(hf_dir)
    config = load_config(hf_dir)
    spec = arch_spec(config, where)
    hp = HParams.from_config(config, where)
    if spec.gguf_arch == "qwen2" and hp.head_dim * hp.n_head != hp.n_embd:
        raise ExportError(f"Cannot export {where}: qwen2 needs head_dim * heads == hidden_size")
    plan, n_rows = _plan(hf_dir, spec, hp, out_type)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(hf_dir))
    except (OSError, ValueError) as err:
        raise ExportError(f"Cannot export {where}: cannot load its tokenizer ({err})") from err
    vocab = read_vocab(tokenizer, config, n_rows, where, pre=pre)

    writer = gguf.GGUFWriter(out_path, spec.gguf_arch)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(meta.name)
    writer.add_file_type(int(OUT_TYPES[out_type]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    write_hparams(writer, hp, n_rows)
    write_vocab(writer, vocab)
    writer.add_uint32(sr3.KEY_VERSION, sr3.METADATA_VERSION)
    for key, value in meta.prompts.to_metadata().items():
        writer.add_string(key, value)
    writer.add_string(sr3.KEY_MODEL_NAME, meta.name)
    writer.add_string(sr3.KEY_MODEL_STAGE, meta.stage)
    if meta.eval_metrics is not None:
        writer.add_string(sr3.KEY_EVAL, sr3.eval_metadata(meta.eval_metrics))
    for p in plan:
        dtype = np.float32 if p.out_type == gguf.GGMLQuantizationType.F32 else np.float16
        if p.out_type == gguf.GGMLQuantizationType.BF16:
            byte_shape = (*p.shape[:-1], p.shape[-1] * 2)
            writer.add_tensor_info(
                p.gguf_name, byte_shape, np.dtype(np.uint8), _nbytes(p), raw_dtype=p.out_type
            )
        else:
            writer.add_tensor_info(p.gguf_name, p.shape, np.dtype(dtype), _nbytes(p))

    log.info("writing %s: %s, %d tensors, %s", out_path.name, spec.gguf_arch, len(plan), out_type)
    writer.write_header_to_file(out_path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for data in _tensors(plan, spec, hp):
        writer.write_tensor_data(data)
    writer.close()
    return vocab, tokenizer
