"""The CPU recipe's config: it loads as shipped, and two steps of it train only the top
layers and the embed token's rows, with the teacher's distillation on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training import rl, sft
from training.config import Config, load_config

CPU_CONFIG = Path(__file__).resolve().parents[2] / "training" / "configs" / "smollm2-135m-cpu.yaml"


def test_cpu_config_loads_with_the_papers_losses_and_the_teacher() -> None:
    cfg = load_config(Config, ["--config", str(CPU_CONFIG)])
    loss = cfg.loss
    assert min(loss.lm, loss.kl, loss.infonce, loss.triplet, loss.distill) > 0
    assert cfg.model.train_layers > 0 and not cfg.lora.enabled
    build = cfg.data.build
    assert build.crossdomain in build.corpora and build.miner == "teacher"
    assert build.teacher_filter_k > 0 and build.teacher_vectors
    assert cfg.train.precision == "auto" and cfg.train.threads == 2


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("fpu sse2 avx2 avx512f amx_bf16 amx_tile", True),  # Sapphire Rapids
        ("fpu sse2 avx2 avx512f avx512_bf16", True),  # Cooper Lake, Zen 4
        ("fpu sse2 avx2 sha_ni", False),  # Zen 2: bf16 only emulated
    ],
)
def test_auto_precision_is_bf16_only_where_the_cpu_computes_it(
    flags: str, native: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training import prepare

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert prepare.cpu_has_bf16(cpuinfo) is native
    assert prepare.cpu_has_bf16(tmp_path / "absent") is False
    monkeypatch.setattr(prepare.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(prepare, "cpu_has_bf16", lambda: native)
    assert prepare.mixed_precision("auto") == ("bf16" if native else "no")
    assert prepare.mixed_precision("fp32") == "no"


def test_cpu_config_runs_two_steps_on_the_tiny_model(
    tiny_qwen2_dir: Path, tmp_path: Path, teacher_env: Path
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    with pairs.open("w") as fh:
        for i, (q, p) in enumerate(
            [
                ("list sort order", "list.sort() sorts a list in place, ascending."),
                ("open a file", "open() returns a file object for reading or writing."),
                ("hash table", "A hash table maps keys to values through a hash function."),
                ("tcp connection", "TCP gives a reliable ordered byte stream between hosts."),
                ("recursion", "A recursive function calls itself on a smaller input."),
                ("compiler", "A compiler turns source code into machine instructions."),
                ("mutex lock", "A mutex admits one thread at a time to a critical section."),
                ("shell prompt", "The shell reads a command line and runs the program."),
            ]
        ):
            fh.write(json.dumps({"query": q, "positive": p, "negative": f"filler {i}"}) + "\n")
    out = tmp_path / "run"
    args = [
        "--config",
        str(CPU_CONFIG),
        f"model.path={tiny_qwen2_dir}",
        "model.train_layers=1",
        "model.max_query_tokens=24",
        "model.max_document_tokens=32",
        f"data.train={pairs}",
        f"data.dir={tmp_path / 'nodata'}",
        f"train.out_dir={out}",
        "train.steps=2",
        "train.batch_size=4",
        "train.log_every=1",
        "train.save_every=0",
        "optim.lr=0.01",
        "optim.warmup_steps=0",
        "model.train_token_rows=true",  # the hook that keeps only the token's row
    ]
    assert sft.main(args) == 0
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and all(r["distill"] > 0 for r in log)
    before = load_file(str(tiny_qwen2_dir / "model.safetensors"))
    after = load_file(str(out / "final" / "model.safetensors"))
    top, low = "model.layers.3.mlp.up_proj.weight", "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(before[top], after[top])
    assert torch.equal(before[low], after[low])  # frozen below the top layer
    token_id = json.loads((out / "final" / "tokenizer.json").read_text())["added_tokens"][-1]["id"]
    rows = "model.embed_tokens.weight"
    changed = (before[rows] != after[rows]).any(dim=1).nonzero().flatten().tolist()
    assert changed == [token_id]  # the embed token's row and no other

    # RL from that model with the config's own rl section: the environment holds the
    # seeded sample of the corpus, and the SFT part distils the teacher as SFT did.
    rl_out = tmp_path / "rl"
    rl_args = [
        "--config",
        str(CPU_CONFIG),
        "--init",
        str(out / "final"),
        *args[2:8],  # model.*, data.* as above
        f"rl.out_dir={rl_out}",
        "rl.steps=2",
        "rl.queries=2",
        "rl.group_size=2",
        "rl.max_reason_tokens=4",
        "rl.candidates=4",
        "rl.save_every=0",
        "rl.env.graph_k=2",
        "rl.env.max_passages=10",
    ]
    assert rl.main(rl_args) == 0
    rl_log = [json.loads(x) for x in (rl_out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in rl_log if "reward" in r]
    assert [r["step"] for r in steps] == [1, 2] and all(r["sft"] > 0 for r in steps)
    assert steps[-1]["env"]["reencoded_full"] == 10  # the sample, encoded once
    sft_final = load_file(str(out / "final" / "model.safetensors"))
    rl_final = load_file(str(rl_out / "final" / "model.safetensors"))
    assert torch.equal(sft_final[low], rl_final[low])  # RL trains the same top layers only
