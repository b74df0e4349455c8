"""Opening an indexing session: the writer store, the model and the indexer.

One function opens what ``sr3desk index``, ``sr3desk watch`` and the window's
index child process all need, from explicit options: the index layer never
reads the user's settings. :func:`options_for` is the one mapping from settings
to :class:`~sr3desk.index.types.IndexOptions`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sr3desk.errors import Sr3Error
from sr3desk.index.indexer import Indexer
from sr3desk.index.store import Store
from sr3desk.index.types import IndexOptions

if TYPE_CHECKING:
    from sr3desk.model.base import Embedder
    from sr3desk.model.ggufinfo import ModelInfo

log = logging.getLogger(__name__)

MIB = 1024 * 1024


class IndexSettings(Protocol):
    """The settings that shape indexing (``sr3desk.settings.Settings`` has them)."""

    @property
    def exclude(self) -> list[str]: ...

    @property
    def max_file_mb(self) -> float: ...

    @property
    def ocr(self) -> bool: ...

    @property
    def ocr_languages(self) -> str: ...


def options_for(
    settings: IndexSettings, *, max_mb: float | None = None, embed_batch: int | None = None
) -> IndexOptions:
    """Return the indexer's options for ``settings``.

    ``max_mb`` (``--max-mb``) overrides the settings' file size limit;
    ``embed_batch``: chunks per embedding call (default: IndexOptions').
    Raises Sr3Error for a size limit that is not positive.
    """
    limit = settings.max_file_mb if max_mb is None else max_mb
    if limit <= 0:
        raise Sr3Error(f"The file size limit must be positive, not {limit:g} MB")
    options = IndexOptions(
        exclude=tuple(settings.exclude),
        max_file_bytes=max(1, int(limit * MIB)),
        ocr=settings.ocr,
        ocr_languages=settings.ocr_languages or "eng",
    )
    if embed_batch is not None:
        options = replace(options, embed_batch=embed_batch)
    return options


@dataclass(frozen=True)
class ModelChoice:
    """The model to index with: its GGUF (None: keyword only) and how to run it."""

    path: Path | None
    threads: int | None = None
    gpu_layers: int = 0


@dataclass(frozen=True)
class IndexSession:
    """A writer store, the embedder (None: keyword only) and an indexer over them."""

    store: Store
    embedder: Embedder | None
    indexer: Indexer

    @property
    def keyword_only(self) -> bool:
        """True when no model is loaded: chunks wait for one."""
        return self.embedder is None


@contextmanager
def open_session(
    home: Path,
    model: ModelChoice,
    options: IndexOptions,
    *,
    rebuild_roots: Sequence[str] = (),
    keyword_fallback: bool = False,
) -> Iterator[IndexSession]:
    """Open the index in ``home`` for writing with ``model``; yields the session
    and closes it (indexer, model, then the store's lock) on leaving.

    ``rebuild_roots``: the folders to read as well when a model change builds a
    new generation. ``keyword_fallback``: a model that cannot be loaded is
    logged and the session indexes keyword-only (the window reports the model's
    problem itself); otherwise its error is raised.
    """
    info = _inspect(model, keyword_fallback)
    with ExitStack() as stack:
        # The store first: a second indexer fails at once, before a model loads.
        store = stack.enter_context(Store.open(home, info, write=True))
        embedder = _load(model, keyword_fallback) if info is not None else None
        if info is not None and embedder is None:
            stack.close()  # the model cannot run: index keyword-only instead
            store = stack.enter_context(Store.open(home, None, write=True))
        if embedder is not None:
            stack.callback(embedder.close)
        indexer = stack.enter_context(
            Indexer(store, embedder, options, rebuild_roots=rebuild_roots)
        )
        yield IndexSession(store, embedder, indexer)


def _inspect(model: ModelChoice, keyword_fallback: bool) -> ModelInfo | None:
    from sr3desk.model.ggufinfo import inspect_gguf

    if model.path is None:
        return None
    try:
        return inspect_gguf(model.path)
    except Exception as exc:
        if not keyword_fallback:
            raise
        log.info("Indexing without a model: %s", exc)
        return None


def _load(model: ModelChoice, keyword_fallback: bool) -> Embedder | None:
    from sr3desk.model.runtime import open_embedder

    assert model.path is not None
    try:
        return open_embedder(model.path, threads=model.threads, gpu_layers=model.gpu_layers)
    except Exception as exc:
        if not keyword_fallback:
            raise
        log.info("Indexing without a model: %s", exc)
        return None
