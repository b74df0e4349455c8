"""Benchmark of the RL environment (training/env.py) on a real model and real passages.

    python bench/rl_env.py [--model build/models/tiny-qwen2] [--passages 3000] [--steps 20]

One training trajectory (InfoNCE updates on Python-docs queries, so the model drifts
as it does under RL) drives several environments over the same corpus, each
refreshing a different region per step:

* stale: never refreshed after the first full encode;
* hops 0: only the step's positives and retrieved candidates;
* hops 1 / hops 2: those plus their kNN-graph neighbourhoods (the environment's design).

It prints (1) the per-step cost of each environment against a full re-encode of the
same corpus with the same model, measured in this run, and (2) the quality gap after
the last step: retrieval of held queries with each cache against a fresh full
re-encode, and how well each cache reproduces the reward of the step's own batch
(the thing RL reads). Exits 1 when a hops-1 step is not cheaper than a full re-encode.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sr3desk.search.metrics import ndcg_at_k, reciprocal_rank  # noqa: E402
from training.config import BuildConfig  # noqa: E402
from training.data.batches import load_train_set  # noqa: E402
from training.data.build import ensure_dataset  # noqa: E402
from training.env import CorpusEnv  # noqa: E402
from training.losses import InfoNCELoss  # noqa: E402
from training.modeling import (  # noqa: E402
    embed_at_token,
    embed_texts,
    encode_prompts,
    ensure_embed_token,
    load_model,
)
from training.rewards import reciprocal_rank as rr_reward  # noqa: E402

PY_DOCS = Path("/usr/share/doc/python3.11/html/_sources")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(ROOT / "build/models/tiny-qwen2"), help="HF checkpoint")
    p.add_argument("--passages", type=int, default=3000, help="corpus size")
    p.add_argument("--steps", type=int, default=20, help="training steps")
    p.add_argument("--queries", type=int, default=8, help="queries per step")
    p.add_argument("--candidates", type=int, default=10, help="candidates retrieved per query")
    p.add_argument("--graph-k", type=int, default=4, help="neighbours per passage in the graph")
    p.add_argument("--lr", type=float, default=3e-4, help="learning rate of the drift updates")
    p.add_argument("--max-tokens", type=int, default=128, help="passage length cap in tokens")
    p.add_argument("--batch", type=int, default=32, help="passages per forward pass")
    p.add_argument("--eval-queries", type=int, default=300, help="held queries for the gap")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data", default=str(ROOT / "build/bench/rl_env/data"), help="dataset cache")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def main() -> int:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)

    # ---- data: Python docs library pages through the app's extraction and chunking
    build = BuildConfig(
        sources=[str(PY_DOCS)],
        include=["library/*.rst.txt"],
        chunk_tokens=args.max_tokens,
        heldout_fraction=0.02,
        negatives=0,
        miner="none",
    )
    ensure_dataset(build, args.data)
    train = load_train_set(Path(args.data) / "train")
    ids = list(train.corpus)[: args.passages]
    row_of = {pid: i for i, pid in enumerate(ids)}
    texts = [train.corpus[pid] for pid in ids]
    examples = [ex for ex in train.examples if all(p in row_of for p in ex.positive_ids)]
    rng.shuffle(examples)
    held = examples[: args.eval_queries]  # never trained on: the retrieval gap
    pool = examples[args.eval_queries :]
    if len(pool) < args.queries * (args.steps + 1):
        pool = pool * (1 + args.queries * (args.steps + 1) // max(len(pool), 1))

    # ---- model and the environments
    model, tok = load_model(args.model, device=args.device)
    token_id = ensure_embed_token(model, tok)

    def encode(rows: Sequence[int]) -> torch.Tensor:
        model.eval()
        sub = [texts[i] for i in rows]
        return embed_texts(model, tok, sub, "document", None, args.batch, args.max_tokens)

    names = ["stale", "hops 0", "hops 1", "hops 2"]
    envs = {
        name: CorpusEnv(
            encode, len(texts), graph_k=args.graph_k, hops=h, refresh_every=0, batch_size=64
        )
        for name, h in zip(names, [0, 0, 1, 2], strict=True)
    }
    t0 = time.perf_counter()
    first = envs["hops 1"]
    first.full_refresh()
    t_full_first = time.perf_counter() - t0
    for env in envs.values():
        if env is not first:  # same start for all: copy, don't re-encode
            env.embeddings = first.embeddings.clone()
            env.neighbours = first.neighbours.clone()
    step_time: dict[str, list[float]] = {n: [] for n in names[1:]}
    step_rows: dict[str, list[int]] = {n: [] for n in names[1:]}

    def env_step(batch: list) -> torch.Tensor:
        """Refresh every environment (but the stale one) around this batch; (B, d) queries."""
        model.eval()
        with torch.no_grad():
            q = embed_texts(model, tok, [ex.query for ex in batch], "query", None, args.batch, 64)
        positives = [row_of[p] for ex in batch for p in ex.positive_ids]
        for name in names[1:]:
            env = envs[name]
            t = time.perf_counter()
            cand = env.retrieve(q, args.candidates)
            region = env.step(positives, cand.ids)
            step_time[name].append(time.perf_counter() - t)
            step_rows[name].append(len(region))
        return q

    # ---- the trajectory: refresh around the batch, then one InfoNCE update
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    loss_fn = InfoNCELoss(0.05)
    for step in range(args.steps):
        batch = pool[step * args.queries : (step + 1) * args.queries]
        env_step(batch)
        model.train()
        q = encode_prompts(tok, [ex.query for ex in batch], "query", None, 64)
        d = encode_prompts(tok, [train.corpus[ex.positive_ids[0]] for ex in batch], "document")
        qv = embed_at_token(model, q["input_ids"], q["attention_mask"], token_id)
        dv = embed_at_token(model, d["input_ids"], d["attention_mask"], token_id)
        loss = loss_fn(qv, dv)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        print(f"step {step + 1}/{args.steps} loss {loss.item():.3f}", file=sys.stderr)

    # ---- after the last update: one more step, then a fresh full re-encode to compare
    last = pool[args.steps * args.queries : (args.steps + 1) * args.queries]
    q_last = env_step(last)
    t0 = time.perf_counter()
    fresh = encode(range(len(texts)))
    t_full = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        q_held = embed_texts(model, tok, [ex.query for ex in held], "query", None, args.batch, 64)

    caches = {"fresh re-encode": fresh, **{n: e.embeddings for n, e in envs.items()}}

    def retrieval(emb: torch.Tensor) -> tuple[float, float, float, float]:
        scores = q_held @ emb.T  # (Q, n)
        mrr = ndcg = rank_sum = overlap = 0.0
        fresh_top = (q_held @ fresh.T).topk(10, dim=1).indices
        for i, ex in enumerate(held):
            order = scores[i].argsort(descending=True)
            ranked = [ids[j] for j in order[:10].tolist()]
            rel = set(ex.positive_ids)
            mrr += reciprocal_rank(ranked, rel, 10)
            ndcg += ndcg_at_k(ranked, rel, 10)
            pos = torch.tensor([row_of[p] for p in rel])
            rank_sum += float((scores[i] > scores[i, pos].max()).sum()) + 1
            overlap += len(set(order[:10].tolist()) & set(fresh_top[i].tolist())) / 10
        n = len(held)
        return mrr / n, ndcg / n, rank_sum / n, overlap / n

    def batch_reward_gap(emb: torch.Tensor) -> float:
        """Mean |RR(cache) - RR(fresh)| of the last batch's positives among the top candidates."""
        gap = 0.0
        for i, ex in enumerate(last):
            rel = {row_of[p] for p in ex.positive_ids}
            rewards = []
            for cache in (emb, fresh):
                top = (q_last[i] @ cache.T).topk(args.candidates).indices.tolist()
                cands = list(dict.fromkeys(top + sorted(rel)))
                scores = (cache[cands] @ q_last[i]).tolist()
                rewards.append(rr_reward(scores, [c in rel for c in cands]))
            gap += abs(rewards[0] - rewards[1])
        return gap / len(last)

    # ---- tables
    n = len(texts)
    print(
        f"\nRL environment: {Path(args.model).name}, {n} passages (<= {args.max_tokens} tokens), "
        f"{args.queries} queries/step, {args.candidates} candidates, graph k={args.graph_k}, "
        f"{args.steps} steps, {torch.get_num_threads()} threads"
    )
    print(f"\n{'per step':<22}{'passages':>10}{'share':>8}{'seconds':>10}{'x full':>9}")
    print(f"{'full re-encode':<22}{n:>10}{1.0:>8.2f}{t_full:>10.2f}{1.0:>9.2f}")
    print(f"{'  (first, cold)':<22}{n:>10}{1.0:>8.2f}{t_full_first:>10.2f}{'':>9}")
    for name in names[1:]:
        rows = sum(step_rows[name]) / len(step_rows[name])
        secs = sum(step_time[name]) / len(step_time[name])
        print(f"{name:<22}{rows:>10.0f}{rows / n:>8.2f}{secs:>10.2f}{secs / t_full:>9.2f}")
    graph_s = first.stats.graph_seconds / max(first.stats.steps, 1)
    print(f"{'  graph update (hops 1)':<22}{'':>10}{'':>8}{graph_s:>10.3f}")

    print(
        f"\n{'after last step':<18}{'MRR@10':>8}{'nDCG@10':>9}{'mean rank':>11}"
        f"{'top10 = fresh':>15}{'|dRR| batch':>13}{'cos to fresh':>14}"
    )
    for name, emb in caches.items():
        mrr, ndcg, rank, overlap = retrieval(emb)
        gap = batch_reward_gap(emb)
        cos = float((emb * fresh).sum(dim=1).mean())
        print(
            f"{name:<18}{mrr:>8.3f}{ndcg:>9.3f}{rank:>11.1f}{overlap:>15.2f}{gap:>13.3f}{cos:>14.4f}"
        )
    print(
        f"({len(held)} held queries never trained on; |dRR| over the last batch's "
        f"{len(last)} queries, the reward RL reads)"
    )

    hops1 = sum(step_time["hops 1"]) / len(step_time["hops 1"])
    ok = hops1 < t_full
    print(
        f"\n{'PASS' if ok else 'FAIL'}: a hops-1 step costs {hops1:.2f}s against "
        f"{t_full:.2f}s for a full re-encode ({hops1 / t_full:.2f}x)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
