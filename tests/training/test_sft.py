"""SFT on the tiny model: it learns, it resumes exactly, LoRA merges, and the model
reads the embedding where the app reads it. The whole chain is in test_chain.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from sr3desk.model.prompts import PromptSet
from training import modeling, sft
from training.checkpoints import BASE, checkpoints
from training.objective import EmbedLM

# The tiny_sft fixture (tests/training/conftest.py) gives a TinyRun: config, data_dir,
# out_dir, final, log.
TinyRun = Any
# The tiny SFT run (session fixture): a few CPU minutes alone, much longer on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

TINY_CONFIG = Path(__file__).resolve().parents[2] / "training" / "configs" / "tiny-cpu.yaml"


def _small_args(tiny_qwen2_dir: Path, data_dir: Path, out: Path, *extra: str) -> list[str]:
    """The tiny config shrunk to a few cheap steps on the already built data."""
    return [
        "--config",
        str(TINY_CONFIG),
        f"model.path={tiny_qwen2_dir}",
        f"data.dir={data_dir}",
        f"train.out_dir={out}",
        "model.max_document_tokens=48",
        "model.max_query_tokens=32",
        "train.batch_size=4",
        "train.log_every=1",
        "eval.enabled=false",
        *extra,
    ]


def test_tiny_run_learns_and_writes_a_final_checkpoint(
    tiny_sft: TinyRun, tiny_qwen2_dir: Path
) -> None:
    steps = [r for r in tiny_sft.log if "loss" in r]
    assert steps[-1]["step"] == tiny_sft.config.train.steps
    first, last = steps[0], steps[-1]
    assert last["loss"] < first["loss"] and last["infonce"] < first["infonce"]
    evals = [r for r in tiny_sft.log if "eval" in r]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == tiny_sft.config.train.steps
    assert evals[-1]["eval"]["ndcg@10"] > evals[0]["eval"]["ndcg@10"]

    final = tiny_sft.final
    for name in ("config.json", "model.safetensors", "tokenizer.json", "config.yaml"):
        assert (final / name).is_file(), name
    sidecar = json.loads((final / "sr3.json").read_text())
    assert sidecar["stage"] == "sft" and sidecar["prompts"]["embed_token"] == "<|embed_token|>"
    assert sft.read_checkpoint_config(final) == tiny_sft.config  # the config travels along
    # The run re-draws its start (model.init_std) and keeps it as its untrained base.
    base = tiny_sft.out_dir / BASE
    assert json.loads((base / "sr3.json").read_text())["stage"] == "base"
    drawn = load_file(str(base / "model.safetensors"))
    given = load_file(str(tiny_qwen2_dir / "model.safetensors"))
    assert not torch.equal(drawn["lm_head.weight"], given["lm_head.weight"])
    after = load_file(str(final / "model.safetensors"))
    changed = [k for k in drawn if not torch.equal(drawn[k], after[k])]
    assert len(changed) > len(drawn) // 2  # full fine-tuning moved most tensors


def test_resume_continues_exactly(tiny_sft: TinyRun, tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    args = _small_args(tiny_qwen2_dir, tiny_sft.data_dir, straight, "train.steps=4")
    assert sft.main([*args, "train.save_every=2", "train.keep_checkpoints=3"]) == 0
    assert [p.name for p in checkpoints(straight)] == ["checkpoint-000002", "checkpoint-000004"]

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(straight / "checkpoint-000002", resumed / "checkpoint-000002")
    args = _small_args(tiny_qwen2_dir, tiny_sft.data_dir, resumed, "train.steps=4")
    assert sft.main([*args, "train.resume=auto"]) == 0
    a = load_file(str(straight / "final" / "model.safetensors"))
    b = load_file(str(resumed / "final" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    logged = [json.loads(x)["step"] for x in (resumed / "log.jsonl").read_text().splitlines()]
    assert logged == [3, 4]  # steps 1-2 came from the checkpoint

    other = _small_args(tiny_qwen2_dir, tiny_sft.data_dir, resumed, "model.max_query_tokens=40")
    assert sft.main([*other, "train.resume=auto", "train.steps=6"]) == 2


def test_lora_with_kl_merges_into_a_plain_checkpoint(
    tiny_sft: TinyRun, tiny_qwen2_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "lora"
    args = _small_args(
        tiny_qwen2_dir,
        tiny_sft.data_dir,
        out,
        "train.steps=2",
        "lora.enabled=true",
        "lora.r=4",
        "model.init_std=0",  # keep the given weights: the test compares with them
        "loss.kl=1.0",
        "optim.lr=0.05",
        "model.gradient_checkpointing=true",
    )
    assert sft.main(args) == 0
    final = out / "final"
    assert not (final / "adapter_config.json").exists()
    before = load_file(str(tiny_qwen2_dir / "model.safetensors"))
    after = load_file(str(final / "model.safetensors"))
    assert set(after) == set(before)
    attn = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(before[attn], after[attn])  # LoRA merged into the weight
    token_id = json.loads((final / "tokenizer.json").read_text())["added_tokens"][-1]["id"]
    rows = "model.embed_tokens.weight"
    assert not torch.equal(before[rows][token_id], after[rows][token_id])  # token row trained
    other = [i for i in range(before[rows].shape[0]) if i != token_id][:1000]
    assert torch.equal(before[rows][other], after[rows][other])  # the rest left alone


def test_embedlm_reads_what_the_app_reads(tiny_qwen2_dir: Path) -> None:
    model, tok = modeling.load_model(tiny_qwen2_dir)
    token_id = modeling.ensure_embed_token(model, tok)
    prompts = PromptSet()
    n_resp = len(tok.encode(prompts.answer_prefix, add_special_tokens=False)) + 1
    texts = ["short", "a somewhat longer text about the os module and its functions"]
    enc = modeling.encode_prompts(tok, texts, "document", prompts, 64)
    with torch.no_grad():
        out = EmbedLM(model, token_id, n_resp)(enc["input_ids"], enc["attention_mask"])
        ref = modeling.embed_at_token(model, enc["input_ids"], enc["attention_mask"], token_id)
    assert torch.allclose(torch.nn.functional.normalize(out.embeddings, dim=-1), ref, atol=1e-6)
    assert out.logits is not None and out.logits.shape[:2] == (2, n_resp)
    for row in out.targets:
        assert tok.decode(row.tolist()) == prompts.answer_prefix + prompts.embed_token


def test_bad_config_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert sft.main(["--config", str(TINY_CONFIG), "optim.schedule=step"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "training.sft: error: optim.schedule='step': use one of constant, linear, cosine"
