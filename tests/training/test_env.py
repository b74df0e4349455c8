"""The RL environment (training/env.py): partial refreshes touch exactly the expected rows.

Real model (tiny Qwen2) on real passages (the Python docs) for the refresh tests; a
plain table of vectors for the graph bookkeeping, where exact answers are cheap.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from training.env import CorpusEnv
from training.modeling import embed_texts, ensure_embed_token, load_model

N_PASSAGES = 96


def python_doc_passages(root: Path, n: int) -> list[str]:
    """The first ``n`` paragraphs of 100+ characters from the Python docs' library pages."""
    out: list[str] = []
    for path in sorted((root / "library").glob("*.rst.txt")):
        for para in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
            text = " ".join(para.split())
            if len(text) >= 100 and not text.startswith(".."):
                out.append(text[:400])
                if len(out) == n:
                    return out
    raise AssertionError(f"only {len(out)} passages under {root}")


@pytest.fixture(scope="module")
def setup(tiny_qwen2_dir: Path, python_docs_sources: Path) -> tuple[object, object, list[str]]:
    torch.manual_seed(0)
    model, tok = load_model(tiny_qwen2_dir)
    ensure_embed_token(model, tok)
    return model, tok, python_doc_passages(python_docs_sources, N_PASSAGES)


def make_encoder(model: object, tok: object, texts: list[str]) -> tuple[object, list[int]]:
    calls: list[int] = []

    def encode(ids: Sequence[int]) -> torch.Tensor:
        calls.extend(ids)
        return embed_texts(model, tok, [texts[i] for i in ids], max_length=96)  # type: ignore[arg-type]

    return encode, calls


def nudge(model: torch.nn.Module, seed: int) -> None:
    """Change every weight a little, as an optimizer step would."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05 * (p.std() + 1e-3))


def exact_knn(emb: torch.Tensor, k: int) -> torch.Tensor:
    sims = emb @ emb.T
    sims.fill_diagonal_(float("-inf"))
    return sims.topk(k, dim=1).indices


def same_sets(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a.sort(dim=1).values == b.sort(dim=1).values).all())


def test_refresh_touches_only_the_region_and_full_refresh_matches(setup: tuple) -> None:
    model, tok, texts = setup
    state = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        encode, calls = make_encoder(model, tok, texts)
        env = CorpusEnv(encode, len(texts), graph_k=4, hops=1, refresh_every=3, batch_size=32)
        env.full_refresh()
        fresh = embed_texts(model, tok, texts, max_length=96)
        assert torch.allclose(env.embeddings, fresh, atol=1e-5)
        assert same_sets(env.neighbours, exact_knn(fresh, 4))
        assert env.stats.reencoded_full == len(texts)

        nudge(model, seed=1)
        before = env.embeddings.clone()
        queries = embed_texts(model, tok, texts[:2], kind="query")
        got = env.retrieve(queries, k=3)
        positives = [0, 1]
        expected = set(positives) | set(got.ids.flatten().tolist())
        expected |= set(env.neighbours[got.ids.flatten()].flatten().tolist())
        calls.clear()
        region = env.step(positives, got.ids)

        assert set(region) == expected
        assert sorted(calls) == sorted(expected)  # each region row encoded once, no other
        assert region[:2] == positives  # positives first
        new = embed_texts(model, tok, texts, max_length=96)
        inside = torch.tensor(sorted(expected))
        outside = torch.tensor(sorted(set(range(len(texts))) - expected))
        assert torch.allclose(env.embeddings[inside], new[inside], atol=1e-5)
        assert torch.equal(env.embeddings[outside], before[outside])  # stale, untouched
        assert not torch.allclose(before[inside], new[inside], atol=1e-3)  # it did change
        assert env.stats.last_region == len(expected)
        assert env.stats.reencoded_partial == len(expected)
        assert (env.encoded_at[inside] == 1).all() and (env.encoded_at[outside] == 0).all()
        # The changed rows' neighbour lists are exact over the whole cache.
        exact = exact_knn(env.embeddings, 4)
        assert same_sets(env.neighbours[inside], exact[inside])

        env.step([2], got.ids[:1])
        nudge(model, seed=2)
        calls.clear()
        region = env.step([3], got.ids[:1])  # step 3: refresh_every=3 -> full refresh
        assert region == list(range(len(texts)))
        assert sorted(calls) == list(range(len(texts)))
        new = embed_texts(model, tok, texts, max_length=96)
        assert torch.allclose(env.embeddings, new, atol=1e-5)
        assert same_sets(env.neighbours, exact_knn(new, 4))
        assert env.stats.full_refreshes == 2 and env.stats.steps == 3
        assert env.stats.as_dict()["reencoded"] == env.stats.reencoded
    finally:
        model.load_state_dict(state)


def test_graph_update_is_exact_for_changed_rows_and_keeps_the_rest_consistent() -> None:
    gen = torch.Generator().manual_seed(0)
    table = torch.nn.functional.normalize(torch.randn(200, 16, generator=gen), dim=1)

    def encode(ids: Sequence[int]) -> torch.Tensor:
        return table[list(ids)].clone()

    env = CorpusEnv(encode, 200, graph_k=6, hops=0, refresh_every=0)
    env.full_refresh()
    old = env.neighbours.clone()
    rows = [5, 17, 42, 99, 150]
    table[rows] = torch.nn.functional.normalize(torch.randn(5, 16, generator=gen), dim=1)
    # Move one row right next to passage 0 so 0's list must take it in.
    table[17] = torch.nn.functional.normalize(table[0] + 0.01 * table[17], dim=0)
    env.refresh(rows)
    exact = exact_knn(table, 6)
    assert same_sets(env.neighbours[rows], exact[rows])
    assert 17 in env.neighbours[0].tolist()
    # Every other row holds the best 6 of (its old unchanged neighbours + changed rows).
    changed = set(rows)
    for i in set(range(200)) - changed:
        pool = [j for j in old[i].tolist() if j not in changed] + rows
        sims = table[pool] @ table[i]
        best = {pool[j] for j in sims.topk(6).indices.tolist()}
        assert set(env.neighbours[i].tolist()) == best
    assert env.stats.graph_rows_updated > 0


def test_region_cap_hops_and_errors() -> None:
    table = torch.nn.functional.normalize(torch.randn(50, 8, generator=torch.Generator()), dim=1)
    env = CorpusEnv(lambda ids: table[list(ids)], 50, graph_k=3, hops=2, max_region=7)
    with pytest.raises(RuntimeError, match="full_refresh"):
        env.retrieve(table[:1], 3)
    env.full_refresh()
    cands = torch.tensor([[10, 11]])
    region = env.region([1, 2], cands)
    assert len(region) == 7 and region[:4] == [1, 2, 10, 11]
    env.max_region = None
    one_hop = set(env.neighbours[cands.flatten()].flatten().tolist())
    two_hop = set(env.neighbours[torch.tensor(sorted(one_hop))].flatten().tolist())
    assert set(env.region([1, 2], cands)) == {1, 2, 10, 11} | one_hop | two_hop
    got = env.retrieve(table[:3], 5)
    assert got.ids.shape == (3, 5) and got.ids[0, 0] == 0
    assert torch.allclose(env.scores(table[:3], got.ids), got.scores)
    with pytest.raises(ValueError, match="graph_k"):
        CorpusEnv(lambda ids: table[list(ids)], 50, graph_k=50)
    with pytest.raises(ValueError, match="encode returned"):
        CorpusEnv(lambda ids: table[:1], 50, graph_k=3).full_refresh()
