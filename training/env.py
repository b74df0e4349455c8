"""The RL environment: a corpus whose embeddings are cached and refreshed in part.

RL changes the model at every step, so every cached document embedding goes stale.
Re-encoding the whole corpus each step is what makes retrieval-based RL slow; this
environment re-encodes only where it matters:

* the corpus embeddings live in one ``(n, d)`` tensor, with a k-nearest-neighbour
  graph over them (``(n, graph_k)`` neighbour ids);
* each step the trainer retrieves candidates for its query vectors, and the
  environment re-encodes, with the current model, the positives, the candidates
  and their graph neighbourhoods (the documents that could move into the
  candidates' place), then updates the graph rows those vectors touch;
* every ``refresh_every`` steps it re-encodes everything and rebuilds the graph.

The environment knows nothing about models: it is given an ``encode`` function
from passage indices to L2-normalised vectors (see :func:`training.rl` for the one
built on the HF model). :class:`EnvStats` counts what was re-encoded, which is
what ``bench/rl_env.py`` compares with a full re-encode.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import torch

log = logging.getLogger(__name__)

# Passage indices -> (m, d) L2-normalised float vectors with the current model.
Encoder = Callable[[Sequence[int]], torch.Tensor]


@dataclass
class EnvStats:
    """What the environment has done so far."""

    steps: int = 0
    full_refreshes: int = 0
    reencoded_partial: int = 0  # passages re-encoded by per-step refreshes, in total
    reencoded_full: int = 0  # passages re-encoded by full refreshes, in total
    last_region: int = 0  # passages re-encoded by the latest step
    graph_rows_updated: int = 0  # neighbour lists that changed in per-step updates, in total
    encode_seconds: float = 0.0  # time spent encoding passages, in total
    graph_seconds: float = 0.0  # time spent building and updating the graph, in total

    @property
    def reencoded(self) -> int:
        """All passages encoded so far, partial and full refreshes together."""
        return self.reencoded_partial + self.reencoded_full

    def as_dict(self) -> dict[str, float]:
        """Return the counters as a plain dict (for logs and checkpoints)."""
        return {**asdict(self), "reencoded": self.reencoded}


@dataclass(frozen=True)
class Retrieved:
    """Top-k candidates for a batch of query vectors: ``(b, k)`` scores and passage ids."""

    scores: torch.Tensor
    ids: torch.Tensor


class CorpusEnv:
    """Cached corpus embeddings with a kNN graph, refreshed in part each step.

    Takes the ``encode`` function, the corpus size ``n``, the graph degree
    ``graph_k``, how many graph ``hops`` around each candidate a step refreshes,
    the full-refresh period ``refresh_every`` (0: never), an optional cap
    ``max_region`` on passages re-encoded per step (positives first, then
    candidates, then neighbours) and the ``batch_size`` of full re-encodes. The
    cache is empty until :meth:`full_refresh`.
    """

    def __init__(
        self,
        encode: Encoder,
        n: int,
        graph_k: int = 8,
        hops: int = 1,
        refresh_every: int = 50,
        max_region: int | None = None,
        batch_size: int = 64,
    ) -> None:
        if n < 2:
            raise ValueError(f"the corpus has {n} passages: the environment needs at least 2")
        if not 1 <= graph_k < n:
            raise ValueError(f"graph_k={graph_k}: use 1 <= graph_k < corpus size ({n})")
        if hops < 0 or refresh_every < 0 or batch_size < 1:
            raise ValueError("hops and refresh_every must be >= 0 and batch_size >= 1")
        if max_region is not None and max_region < 1:
            raise ValueError(f"max_region={max_region}: use None (no cap) or a positive count")
        self.encode = encode
        self.n = n
        self.graph_k = graph_k
        self.hops = hops
        self.refresh_every = refresh_every
        self.max_region = max_region
        self.batch_size = batch_size
        self.stats = EnvStats()
        self.embeddings = torch.empty(0)  # (n, d) once refreshed
        self.neighbours = torch.empty(0, dtype=torch.long)  # (n, graph_k)
        self.encoded_at = torch.full((n,), -1, dtype=torch.long)  # step of each row's encode

    @property
    def ready(self) -> bool:
        """Whether the cache holds a vector for every passage."""
        return self.embeddings.shape[0] == self.n

    # -- encoding ---------------------------------------------------------------------

    def _encode(self, ids: Sequence[int]) -> torch.Tensor:
        vecs = self.encode(ids)  # (m, d)
        if vecs.shape[0] != len(ids):
            raise ValueError(f"encode returned {vecs.shape[0]} vectors for {len(ids)} passages")
        return vecs.detach().float()

    def full_refresh(self) -> None:
        """Re-encode every passage and rebuild the kNN graph."""
        t0 = time.perf_counter()
        parts = [
            self._encode(list(range(start, min(start + self.batch_size, self.n))))
            for start in range(0, self.n, self.batch_size)
        ]
        self.embeddings = torch.cat(parts).to(parts[0].device)  # (n, d)
        t1 = time.perf_counter()
        self.neighbours = self._knn_all()
        self.stats.encode_seconds += t1 - t0
        self.stats.graph_seconds += time.perf_counter() - t1
        self.encoded_at.fill_(self.stats.steps)
        self.stats.full_refreshes += 1
        self.stats.reencoded_full += self.n
        log.debug("environment: full refresh of %d passages", self.n)

    def _knn_all(self, chunk: int = 1024) -> torch.Tensor:
        emb = self.embeddings
        rows = []
        for start in range(0, self.n, chunk):
            sims = emb[start : start + chunk] @ emb.T  # (c, n)
            own = torch.arange(start, min(start + chunk, self.n), device=emb.device)
            sims[torch.arange(len(own)), own] = float("-inf")  # a passage is not its neighbour
            rows.append(sims.topk(self.graph_k, dim=1).indices)
        return torch.cat(rows)  # (n, graph_k)

    # -- retrieval --------------------------------------------------------------------

    def retrieve(self, queries: torch.Tensor, k: int) -> Retrieved:
        """Return the ``k`` cached passages nearest to each of the ``(b, d)`` query vectors."""
        self._need_ready()
        k = min(k, self.n)
        sims = queries.detach().float().to(self.embeddings.device) @ self.embeddings.T  # (b, n)
        top = sims.topk(k, dim=1)
        return Retrieved(scores=top.values, ids=top.indices)

    def scores(self, queries: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Return cosine scores ``(b, m)`` of each query ``(b, d)`` with its passages ``ids``."""
        self._need_ready()
        q = queries.detach().float().to(self.embeddings.device)
        return torch.einsum("bd,bmd->bm", q, self.embeddings[ids])  # (b, m)

    # -- per-step refresh ---------------------------------------------------------------

    def region(self, positives: Iterable[int], candidates: torch.Tensor) -> list[int]:
        """Return the passages a step re-encodes, in priority order, capped at ``max_region``.

        Positives come first, then the candidates (any shape of passage ids), then
        their graph neighbourhoods out to ``hops``.
        """
        self._need_ready()
        order: dict[int, None] = dict.fromkeys(int(p) for p in positives)
        frontier = candidates.reshape(-1).to(self.neighbours.device).unique()
        order.update(dict.fromkeys(frontier.tolist()))
        for _ in range(self.hops):
            frontier = self.neighbours[frontier].reshape(-1).unique()
            order.update(dict.fromkeys(frontier.tolist()))
        ids = list(order)
        return ids if self.max_region is None else ids[: self.max_region]

    def refresh(self, ids: Sequence[int]) -> int:
        """Re-encode the passages ``ids`` with the current model and update the graph.

        Returns how many neighbour lists changed.
        """
        self._need_ready()
        ids = list(dict.fromkeys(int(i) for i in ids))  # unique, order kept
        if not ids:
            return 0
        rows = torch.tensor(ids, dtype=torch.long, device=self.embeddings.device)
        t0 = time.perf_counter()
        vecs = torch.cat(
            [
                self._encode(list(ids[s : s + self.batch_size]))
                for s in range(0, len(ids), self.batch_size)
            ]
        ).to(self.embeddings.device)
        self.embeddings[rows] = vecs
        self.encoded_at[rows.cpu()] = self.stats.steps
        t1 = time.perf_counter()
        moved = self._update_graph(rows)
        self.stats.encode_seconds += t1 - t0
        self.stats.graph_seconds += time.perf_counter() - t1
        return moved

    def _update_graph(self, rows: torch.Tensor) -> int:
        """Update neighbour lists after the vectors of ``rows`` changed.

        The changed rows get exact lists (one ``(m, n)`` product). Any other row
        keeps its unchanged neighbours and takes the changed rows in where they
        are now nearer; a neighbour that moved away may leave a slot that an
        unseen passage deserved until the next full refresh (cheap and close).
        """
        emb, nb, k = self.embeddings, self.neighbours, self.graph_k
        changed = torch.zeros(self.n, dtype=torch.bool, device=emb.device)
        changed[rows] = True
        to_changed = emb @ emb[rows].T  # (n, m): every passage against the changed ones
        to_changed[rows, torch.arange(len(rows), device=emb.device)] = float("-inf")  # self
        kept_sims = torch.einsum("nd,nkd->nk", emb, emb[nb])  # (n, k) to current neighbours
        kept_sims[changed[nb]] = float("-inf")  # changed neighbours come in via to_changed
        # The best k changed rows for each passage, then the best k of those and the kept.
        near = to_changed.topk(min(k, len(rows)), dim=1)  # (n, k') over the changed rows
        cand_ids = torch.cat([nb, rows[near.indices]], dim=1)  # (n, k + k')
        cand_sims = torch.cat([kept_sims, near.values], dim=1)
        new = cand_ids.gather(1, cand_sims.topk(k, dim=1).indices)  # (n, k)
        # The changed rows themselves: exact neighbours among all passages.
        exact = to_changed.T.clone()  # (m, n)
        new[rows] = exact.topk(k, dim=1).indices
        moved = (new.sort(dim=1).values != nb.sort(dim=1).values).any(dim=1)
        self.neighbours = new
        n_moved = int(moved.sum())
        self.stats.graph_rows_updated += n_moved
        return n_moved

    def step(self, positives: Iterable[int], candidates: torch.Tensor) -> list[int]:
        """Advance one training step: refresh the region around ``candidates``, or all.

        Every ``refresh_every`` steps the whole corpus is re-encoded instead.
        Returns the passages re-encoded by this step.
        """
        self._need_ready()
        self.stats.steps += 1
        if self.refresh_every and self.stats.steps % self.refresh_every == 0:
            self.full_refresh()
            self.stats.last_region = self.n
            return list(range(self.n))
        ids = self.region(positives, candidates)
        self.refresh(ids)
        self.stats.reencoded_partial += len(ids)
        self.stats.last_region = len(ids)
        return ids

    def _need_ready(self) -> None:
        if not self.ready:
            raise RuntimeError("the environment has no embeddings yet: call full_refresh() first")


__all__ = ["CorpusEnv", "Encoder", "EnvStats", "Retrieved"]
