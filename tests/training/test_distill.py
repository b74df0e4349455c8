"""Listwise distillation from the teacher: the loss, the cached teacher vectors, and an
SFT run in which distillation alone moves the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from training import sft
from training.data.batches import load_train_set
from training.data.teacher_vectors import read_teacher_vectors, vectors_path
from training.losses import ListwiseDistillationLoss

TINY_CONFIG = Path(__file__).resolve().parents[2] / "training" / "configs" / "tiny-cpu.yaml"


def test_distillation_is_zero_when_the_distributions_agree() -> None:
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(4, 16, generator=gen)  # (B, D)
    d = torch.randn(12, 16, generator=gen)  # (N, D): 4 positives, 2 negatives each
    cos = F.normalize(q, dim=-1) @ F.normalize(d, dim=-1).T  # (B, N)
    loss = ListwiseDistillationLoss(student_temperature=0.05, teacher_temperature=0.05)
    assert float(loss(q, d, cos)) == pytest.approx(0.0, abs=1e-5)
    # Same ranking, other scale: the teacher's temperature absorbs it.
    scaled = ListwiseDistillationLoss(student_temperature=0.05, teacher_temperature=0.1)
    assert float(scaled(q, d, 2 * cos)) == pytest.approx(0.0, abs=1e-5)
    # A teacher that disagrees gives a positive loss.
    assert float(loss(q, d, cos.flip(-1))) > 0.1
    # Masked candidates drop out of both sides without nan.
    ignore = torch.zeros(4, 12, dtype=torch.bool)
    ignore[0, 1] = ignore[2, 3] = True
    other = cos.clone()
    other[0, 1] = other[2, 3] = 5.0  # only where masked: still agreement
    assert float(loss(q, d, other, ignore)) == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError):
        ListwiseDistillationLoss(student_temperature=0.0)


def _pairs(path: Path) -> Path:
    # Twelve question/answer pairs: enough for a batch of 4 with distinct topics.
    facts = [
        ("How do I read a file line by line?", "Iterate over the file object: for line in f."),
        ("What does a hash table store?", "A hash table maps keys to values by hashing keys."),
        ("How to sort a list in place?", "Call list.sort(); sorted() returns a new list."),
        ("What is a compiler?", "A compiler translates source code into machine code."),
        ("Why use virtual memory?", "Virtual memory gives each process its own address space."),
        ("What is TCP?", "TCP is a reliable, ordered byte stream protocol over IP."),
        ("How do regular expressions match?", "A regex engine matches patterns against text."),
        ("What does garbage collection do?", "It frees memory that no reference reaches."),
        ("What is a mutex for?", "A mutex lets one thread at a time enter a critical section."),
        ("How are floats stored?", "IEEE 754 stores a sign, an exponent and a mantissa."),
        ("What is a shell?", "A shell reads commands and runs programs for the user."),
        ("What is recursion?", "A function that calls itself on a smaller problem."),
    ]
    with path.open("w") as fh:
        for query, passage in facts:
            fh.write(json.dumps({"query": query, "positive": passage}) + "\n")
    return path


def test_sft_steps_with_distillation_alone_move_the_model(
    tiny_qwen2_dir: Path, tmp_path: Path, teacher_env: Path
) -> None:
    pairs = _pairs(tmp_path / "pairs.jsonl")
    out = tmp_path / "run"
    args = [
        "--config",
        str(TINY_CONFIG),
        f"model.path={tiny_qwen2_dir}",
        f"data.train={pairs}",
        f"data.dir={tmp_path / 'nodata'}",
        "data.build.sources=[]",
        f"train.out_dir={out}",
        "model.max_document_tokens=32",
        "model.max_query_tokens=24",
        "train.batch_size=4",
        "train.negatives=1",
        "train.steps=2",
        "train.log_every=1",
        "eval.enabled=false",
        # Only the distillation trains: if its gradient did not reach the model,
        # nothing would change.
        "loss.lm=0",
        "loss.kl=0",
        "loss.infonce=0",
        "loss.triplet=0",
        "loss.distill=1",
        "optim.lr=0.01",
    ]
    assert sft.main(args) == 0
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "distill" in r]
    assert len(steps) == 2 and all(r["distill"] > 0 for r in steps)
    assert all(r["loss"] == pytest.approx(r["distill"]) for r in steps)
    before = load_file(str(out / "base" / "model.safetensors"))
    after = load_file(str(out / "final" / "model.safetensors"))
    layer = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(before[layer], after[layer])
    # The teacher ran once, before the loop, and its vectors are cached by id.
    cached = read_teacher_vectors(vectors_path(pairs))
    assert cached is not None
    data = load_train_set(pairs)
    assert cached.covers([e.query_id for e in data.examples], list(data.corpus))
    scores = cached.scores([data.examples[0].query_id], list(data.corpus))
    assert int(np.argmax(scores[0])) == list(data.corpus).index(data.examples[0].positive_ids[0])
