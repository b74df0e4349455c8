"""RL (training/rl.py) on the tiny Qwen2: the reward rises on a small task, weights
change, runs resume, and the acceptance chain SFT -> RL -> export works.

The small task: 16 query/passage pairs from the Python docs (a paragraph's first
sentence asks for the rest of it), every passage a candidate. The starting policy is
the tiny random model with its output row for <|embed_token|> raised so that the
token is sampled at about a third of first positions, as an SFT model would
sometimes write it: both reward parts can be learned, the format part by the policy
gradient alone (the SFT part, which would teach the format directly, is off).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from sr3desk.model.prompts import PromptSet
from training import rl
from training.checkpoints import FINAL, read_prompts
from training.config import ConfigError, RLRunConfig, load_config
from training.modeling import ensure_embed_token, load_model, render_prompts

# RL runs: a few CPU minutes alone, much longer on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = ROOT / "training" / "configs" / "tiny-cpu.yaml"
N_PAIRS = 16
STEPS = 14


def write_pairs(docs: Path, out: Path) -> list[str]:
    """First sentence -> rest of the paragraph, one pair per library page."""
    queries = []
    with out.open("w", encoding="utf-8") as fh:
        for path in sorted((docs / "library").glob("*.rst.txt")):
            for para in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
                text = " ".join(para.split())
                parts = re.split(r"(?<=[.!?])\s+(?=[A-Z])", text)
                if len(text) >= 160 and text[0].isupper() and len(parts) >= 2:
                    query, rest = parts[0][:120], " ".join(parts[1:])[:300]
                    fh.write(json.dumps({"query": query, "positive": rest}) + "\n")
                    queries.append(query)
                    break
            if len(queries) == N_PAIRS:
                return queries
    raise AssertionError(f"only {len(queries)} pairs in {docs}")


def biased_start(model_dir: Path, queries: list[str], out: Path, p_token: float = 0.3) -> None:
    """Save the model with the token's output row raised to p ~ ``p_token`` at the first step."""
    torch.manual_seed(0)
    model, tok = load_model(model_dir)
    token_id = ensure_embed_token(model, tok)
    enc = tok(
        render_prompts(tok, queries, "reason"),
        add_special_tokens=False,
        padding=True,
        padding_side="left",
        return_tensors="pt",
    )
    with torch.no_grad():
        out_ = model(**enc, output_hidden_states=True)
        logits = out_.logits[:, -1]  # (B, V) at the first generated position
        hidden = out_.hidden_states[-1][:, -1].mean(dim=0)  # (d,)
        others = torch.cat([logits[:, :token_id], logits[:, token_id + 1 :]], 1).logsumexp(-1)
        target = torch.log(torch.tensor(p_token / (1 - p_token))) + others
        lift = (target - logits[:, token_id]).mean()
        row = model.get_output_embeddings().weight[token_id]
        row += lift * hidden / hidden.dot(hidden)
    model.save_pretrained(out)
    tok.save_pretrained(out)


@pytest.fixture(scope="module")
def small_task(
    tmp_path_factory: pytest.TempPathFactory, tiny_qwen2_dir: Path, python_docs_sources: Path
) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("rl-small")
    pairs = base / "pairs.jsonl"
    queries = write_pairs(python_docs_sources, pairs)
    biased_start(tiny_qwen2_dir, queries, base / "start")
    return pairs, base / "start"


def small_args(pairs: Path, start: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--config",
        str(TINY_CONFIG),
        "--init",
        str(start),
        "data.dir=",
        f"data.train={pairs}",
        "eval.enabled=false",
        f"rl.out_dir={out}",
        f"rl.steps={STEPS}",
        "rl.queries=4",
        "rl.group_size=4",
        "rl.max_reason_tokens=6",
        "rl.candidates=16",
        "rl.negatives=1",
        "rl.reward=rr",
        "rl.lr=1e-3",
        "rl.kl_beta=0.05",
        "rl.format_weight=1.0",
        "rl.sft=0",
        "rl.log_every=1",
        "rl.env.graph_k=4",
        "rl.env.refresh_every=5",
        "train.threads=2",
        *extra,
    ]


def read_log(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [row for row in rows if "reward" in row]


def mean(rows: list[dict], key: str) -> float:
    return sum(row[key] for row in rows) / len(rows)


def test_reward_rises_weights_change_and_resume(
    small_task: tuple[Path, Path], tmp_path: Path
) -> None:
    pairs, start = small_task
    out = tmp_path / "rl"
    assert rl.main(small_args(pairs, start, out)) == 0

    steps = read_log(out)
    assert [row["step"] for row in steps] == list(range(1, STEPS + 1))
    first, last = steps[:4], steps[-4:]
    curve = " ".join(f"{row['reward']:.2f}" for row in steps)
    assert mean(last, "reward") > mean(first, "reward") + 0.4, curve
    assert mean(last, "format") > mean(first, "format") + 0.05, curve  # policy gradient
    assert mean(last, "forced") < mean(first, "forced"), curve
    assert mean(last, "rank") > mean(first, "rank"), curve
    assert all(row["kl"] >= 0 for row in steps)

    final = out / FINAL
    sidecar = json.loads((final / "sr3.json").read_text())
    assert sidecar["stage"] == "rl"
    state = json.loads((final / "train_state.json").read_text())
    assert state["step"] == STEPS
    assert state["env"]["full_refreshes"] == 1 + STEPS // 5
    assert state["env"]["reencoded_partial"] > 0
    trained, _ = load_model(final)
    init, _ = load_model(start)
    for name, p in init.named_parameters():
        assert not torch.equal(p, trained.get_parameter(name)), f"{name} did not change"

    # Resume: two more steps from the newest checkpoint, same stream.
    more = STEPS + 2
    assert rl.main(small_args(pairs, start, out, f"rl.steps={more}", "rl.resume=auto")) == 0
    steps = read_log(out)
    assert [row["step"] for row in steps][-2:] == [STEPS + 1, more]
    assert json.loads((final / "train_state.json").read_text())["step"] == more


def test_config_checks_and_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="group_size"):
        load_config(RLRunConfig, ["rl.group_size=1"])
    with pytest.raises(ConfigError, match=r"rl\.reward"):
        load_config(RLRunConfig, ["rl.reward=map"])
    cfg = load_config(RLRunConfig, ["--config", str(TINY_CONFIG), f"train.out_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"run `python -m training\.sft`"):
        rl.resolve_init(cfg)
    # The SFT stage reads the same YAML and skips the rl section.
    assert cfg.rl.init == ""
    assert read_prompts(tmp_path) == PromptSet()
