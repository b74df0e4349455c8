"""Embedding the passages still waiting for a vector, newest files first.

Vectors are committed every ``commit_interval_s`` (what a kill can lose), and
the store's maintenance runs between commits when it is due; compaction
renumbers rows, so the list of pending chunks is then fetched again.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from sr3desk.index.control import Control, checkpoint
from sr3desk.index.progress import Tracker
from sr3desk.index.types import PHASE_EMBED, IndexOptions, Summary

if TYPE_CHECKING:
    from sr3desk.index.store import Store
    from sr3desk.model.base import Embedder

WINDOW_CHUNKS = 512  # chunk texts fetched from the store at a time


class EmbeddingPhase:
    """Computes and commits the vectors of the store's pending chunks."""

    def __init__(self, store: Store, embedder: Embedder, options: IndexOptions) -> None:
        self.store = store
        self.embedder = embedder
        self.options = options
        self._ids: list[str] = []
        self._vecs: list[np.ndarray] = []
        self._last_commit = time.monotonic()

    def run(self, summary: Summary, tracker: Tracker, control: Control | None) -> None:
        """Embed every pending chunk (until ``control`` stops the run)."""
        if not self.store.pending_count():
            return
        pending = self.store.pending_chunks()
        if not pending.num_rows:
            return
        tokens = pending["n_tokens"].to_numpy(zero_copy_only=False).astype(np.int64)
        tracker.tokens_left = int(tokens.sum())
        tracker.embed_started = started = time.monotonic()
        tracker.phase(PHASE_EMBED, chunks_total=pending.num_rows, chunks_embedded=0)
        self._last_commit = time.monotonic()
        try:
            while pending.num_rows:
                outcome = self._pass(pending, summary, tracker, control)
                self.commit()
                if outcome != "reload":
                    summary.stopped = outcome == "stopped"
                    break
                pending = self.store.pending_chunks()
        finally:
            summary.embed_seconds += time.monotonic() - started
        if summary.stopped:
            return
        if tracker.rate() > 0:
            self.store.remember_speed(tracker.rate())
        tracker.emit()

    def _pass(
        self, pending: pa.Table, summary: Summary, tracker: Tracker, control: Control | None
    ) -> str:
        """Embed ``pending`` in order; returns "done", "stopped" or "reload" (rows
        were renumbered by maintenance: fetch the pending list again)."""
        ids = pending["chunk_id"].to_pylist()
        rowids = pending["_rowid"].to_pylist()
        ntok = pending["n_tokens"].to_pylist()
        paths = pending["path"].to_pylist()
        size = self.options.embed_batch
        for w0 in range(0, len(ids), WINDOW_CHUNKS):
            texts = self.store.chunk_texts(rowids[w0 : w0 + WINDOW_CHUNKS])
            for b0 in range(0, len(texts), size):
                if checkpoint(control, tracker, self.commit):
                    return "stopped"
                i0 = w0 + b0
                tracker.emit(current=paths[i0])
                vecs = self.embedder.embed_documents(texts[b0 : b0 + size])
                self._ids.extend(ids[i0 : i0 + size])
                self._vecs.append(np.asarray(vecs, dtype=np.float32))
                done_tokens = int(sum(ntok[i0 : i0 + size]))
                summary.chunks_embedded += len(vecs)
                summary.tokens_embedded += done_tokens
                tracker.embedded(done_tokens)
                tracker.emit(chunks_embedded=summary.chunks_embedded)
                if time.monotonic() - self._last_commit >= self.options.commit_interval_s:
                    self.commit()
                    if self.store.maintenance_due():
                        self.store.optimize()
                        return "reload"
        return "done"

    def commit(self) -> None:
        """Write the vectors computed since the last commit."""
        if self._ids:
            self.store.write_vectors(self._ids, np.concatenate(self._vecs))
        self._ids, self._vecs = [], []
        self._last_commit = time.monotonic()
