"""The window's connection to the core: the index, the searcher and the model.

Nothing here indexes or searches by itself: it runs the core's ``Indexer``,
``Watcher`` and ``Searcher`` on threads and reports back through Qt signals,
which arrive in the GUI thread.

Threads and what each owns (native handles are closed by the thread that
opened them, so no handle is ever used from two threads):

- the *keyword* lane: a reader ``Store``; keyword searches, previews, status;
- the *model* lane: a reader ``Store`` and the query embedder; hybrid and
  reasoned searches (embedding a query takes up to a second or more on a CPU);
- the *deep* lane: the cross-encoder that re-ranks the results already shown
  (deep search, :mod:`sr3desk.search.deep`); it needs neither the index nor the
  model, so it works for keyword-only users too, and never delays the instant
  searches of the next keystroke;
- the *index* child process (:mod:`sr3desk.index.child`): the writer
  ``Store`` and a second embedder; it runs ``Indexer.run`` and then keeps a
  ``Watcher`` going until told to stop. A process, not a thread, so that its
  Python work never holds the window's interpreter lock.
- or, when ``sr3desk watch`` runs for the data directory (background indexing,
  :mod:`sr3desk.desktop.autostart`, or one started by hand), no child at all:
  :class:`~sr3desk.gui.follow.WatchFollower` shows that watcher's progress, so
  there is still one writer, and closing the window leaves it running.

Stopping never waits for a long embedding batch: :meth:`Engine.shutdown` asks
the indexer to stop (its ``Control``) and waits a bounded time, then ends the
child; the index is safe to abandon at any instant (it is built to survive a
kill).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QTimer, Signal

from sr3desk.gui import message
from sr3desk.gui.follow import WatchFollower
from sr3desk.gui.indexproc import IndexProcess, SessionConfig, options_dict
from sr3desk.gui.workers import Job, Lane
from sr3desk.index.types import IndexOptions, IndexStatus, Summary
from sr3desk.settings import Settings, data_dir, set_default_data_dir

if TYPE_CHECKING:
    from sr3desk.index.store import Store
    from sr3desk.index.types import ChunkHit
    from sr3desk.model.base import Embedder
    from sr3desk.model.ggufinfo import ModelInfo
    from sr3desk.search import Searcher, SearchRequest, SearchResponse
    from sr3desk.search.deep import DeepRanker
    from sr3desk.search.reasoning import ReasoningVerdict

log = logging.getLogger(__name__)

STATUS_INTERVAL_MS = 3000  # how often index counts refresh while indexing


@dataclass(frozen=True)
class Config:
    """What the lanes' resources depend on; a change reopens them."""

    home: Path
    model_path: str | None
    threads: int | None
    gpu_layers: int

    @classmethod
    def of(cls, home: Path, settings: Settings) -> Config:
        """Return the config of ``settings`` in data directory ``home``."""
        return cls(home, settings.model_path, settings.threads, settings.gpu_layers)


GUI_EMBED_BATCH = 8  # chunks per embedding call: Pause and Quit take effect within one


def index_options(settings: Settings) -> IndexOptions:
    """Return the indexer's options for the user's settings.

    Embedding batches are small so that Pause takes effect within seconds even
    with a large model on a CPU; one sequence per decode is as fast as ten
    there, and commits are paced by time, not by batch.
    """
    from sr3desk.index.session import options_for

    return options_for(settings, embed_batch=GUI_EMBED_BATCH)


def _with_ocr(response: SearchResponse, store: Store) -> SearchResponse:
    """``response`` with each result's OCR note (in the search's worker thread)."""
    from sr3desk.search.types import mark_ocr

    mark_ocr(response.results, store.ocr_notes([r.file_id for r in response.results]))
    return response


def _open_embedder(config: Config) -> Embedder:
    from sr3desk.model.runtime import open_embedder

    assert config.model_path is not None
    return open_embedder(
        Path(config.model_path), threads=config.threads, gpu_layers=config.gpu_layers
    )


class LaneResources:
    """A reader Store (and, for the model lane, an embedder and a searcher).

    Used only from its lane's thread; :meth:`ensure` reopens everything when the
    config changed since the last job.
    """

    def __init__(self, with_model: bool) -> None:
        self.with_model = with_model
        self.config: Config | None = None
        self.store: Store | None = None
        self.embedder: Embedder | None = None
        self.searcher: Searcher | None = None
        self.info: ModelInfo | None = None
        self.model_error: BaseException | None = None

    def ensure(self, config: Config) -> None:
        """Open (or reopen, after a change) the store, model and searcher for ``config``."""
        if config == self.config and self.store is not None:
            return
        self.close()
        from sr3desk.index.store import Store
        from sr3desk.search import Searcher

        self.model_error = None
        self.info = None
        # A reader serves the index's active generation whatever the model, so it
        # is opened without one; only the model lane loads (and so reads) the GGUF.
        self.store = Store.open(config.home, None)
        if self.with_model and config.model_path:
            try:
                self.embedder = _open_embedder(config)
                self.info = self.embedder.info
            except Exception as exc:  # a bad model file still leaves keyword search
                self.model_error = exc
        self.searcher = Searcher(self.store, self.embedder, home=config.home)
        self.config = config

    def close(self) -> None:
        """Release the embedder and the store; safe to call twice."""
        if self.embedder is not None:
            self.embedder.close()
        if self.store is not None:
            self.store.close()
        self.store = self.embedder = self.searcher = None
        self.config = None


class DeepResources:
    """The cross-encoder of the deep lane, opened on first use in that lane's thread.

    ``error``: why it could not be opened (kept, so the next deep search says it
    again at once instead of retrying the disk every time).
    """

    def __init__(self) -> None:
        self.threads: int | None = None
        self.ranker: DeepRanker | None = None
        self.error: BaseException | None = None
        self._scorer: Any = None

    def ensure(self, threads: int | None) -> DeepRanker:
        """Return the ranker (opening it with ``threads``); raises the open error."""
        if self.ranker is not None and threads == self.threads:
            return self.ranker
        if self.error is not None and threads == self.threads:
            raise self.error
        self.close()
        from sr3desk.search.deep import DeepRanker
        from sr3desk.search.rerank import open_reranker

        self.threads = threads
        try:
            self._scorer = open_reranker(threads=threads)
        except Exception as exc:
            self.error = exc
            raise
        self.ranker = DeepRanker(self._scorer)
        return self.ranker

    def close(self) -> None:
        """Release the cross-encoder; safe to call twice."""
        if self._scorer is not None:
            self._scorer.close()
        self._scorer = self.ranker = self.error = None


def index_session(engine: Engine, config: Config, settings: Settings) -> IndexProcess:
    """Return the (not yet started) indexing process for ``settings``, wired to ``engine``."""
    session = IndexProcess(
        SessionConfig(
            home=str(config.home),
            model_path=config.model_path,
            threads=config.threads,
            gpu_layers=config.gpu_layers,
            roots=[str(Path(f)) for f in settings.folders],
            options=options_dict(index_options(settings)),
            log_level=logging.getLogger("sr3desk").getEffectiveLevel(),
        ),
        engine,
    )
    session.started.connect(engine.indexing_started)
    session.progress.connect(engine.progress)
    session.finished.connect(engine.indexing_finished)
    session.watching.connect(engine.watching)
    session.updated.connect(engine.updated)
    session.failed.connect(engine.index_failed)
    session.ended.connect(engine.index_ended)
    return session


def follow_session(engine: Engine, follower: WatchFollower) -> WatchFollower:
    """Wire ``follower`` (a running ``sr3desk watch``) to ``engine`` as an index
    session; returns it (not yet started)."""
    follower.setParent(engine)
    follower.started.connect(engine.indexing_started)
    follower.progress.connect(engine.progress)
    follower.finished.connect(engine.indexing_finished)
    follower.watching.connect(engine.watching)
    follower.updated.connect(engine.updated)
    follower.failed.connect(engine.index_failed)
    follower.ended.connect(engine.index_ended)
    follower.waiting.connect(engine.waiting)
    return follower


class Engine(QObject):
    """Runs the core for the window; every slow call happens off the GUI thread."""

    store_ready = Signal(object)  # IndexStatus, once the index could be read
    model_ready = Signal(object)  # ModelInfo | None: the query model is loaded (or none set)
    model_failed = Signal(str)  # the configured model cannot be used: why
    progress = Signal(object)  # Progress
    indexing_started = Signal()
    indexing_finished = Signal(object)  # Summary
    index_failed = Signal(object)  # exception
    index_ended = Signal()  # the index thread has ended (after a stop or an error)
    watching = Signal(bool)
    updated = Signal(object)  # Summary of a change the watcher brought in
    status_changed = Signal(object)  # IndexStatus
    waiting = Signal(str)  # the background watcher waits for another writer: why

    def __init__(self, home: Path, settings: Settings, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.home = home
        self.settings = settings
        self.config = Config.of(home, settings)
        self._keyword_res = LaneResources(with_model=False)
        self._model_res = LaneResources(with_model=True)
        self.keyword_lane = Lane("keyword", self, on_exit=self._keyword_res.close)
        self.model_lane = Lane("model", self, on_exit=self._model_res.close)
        self._deep_res = DeepResources()
        self.deep_lane = Lane("deep", self, on_exit=self._deep_res.close)
        self.run: IndexProcess | WatchFollower | None = None
        self.indexing = False
        self.paused = False
        self.model_info: ModelInfo | None = None
        self.model_loaded = False
        self.last_status: IndexStatus | None = None
        self._closing = False
        self._restart_pending = False
        self._status_timer = QTimer(self)
        self._status_timer.setInterval(STATUS_INTERVAL_MS)
        self._status_timer.timeout.connect(self.refresh_status)
        self.indexing_started.connect(self._on_started)
        self.indexing_finished.connect(self._on_finished)
        self.index_failed.connect(self._on_failed)
        self.index_ended.connect(self._on_ended)
        self.updated.connect(lambda _summary: self.refresh_status())

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Open the index for reading, load the query model, start indexing (or
        follow the watcher that indexes this data directory)."""
        self.refresh_status(first=True)
        self.load_model()
        if self.settings.background_indexing:
            self._sync_autostart()  # e.g. after the installation moved
        self.start_indexing()

    @property
    def following(self) -> WatchFollower | None:
        """The ``sr3desk watch`` whose progress the window shows, if it follows one."""
        return self.run if isinstance(self.run, WatchFollower) and self.run.alive else None

    def load_model(self) -> None:
        """Open the configured model in the model lane; emits model_ready/model_failed."""
        config = self.config
        self.model_loaded = False

        def load() -> ModelInfo | None:
            self._model_res.ensure(config)
            if self._model_res.model_error is not None:
                raise self._model_res.model_error
            return self._model_res.info

        def done(info: ModelInfo | None) -> None:
            if config != self.config:
                return
            self.model_info = info
            self.model_loaded = info is not None
            self.model_ready.emit(info)

        def failed(exc: BaseException) -> None:
            if config != self.config:
                return
            self.model_info = None
            self.model_failed.emit(message.describe(exc, "loading the model"))

        self.model_lane.submit(load, done, failed, key="load", name="load-model")
        self.model_lane.submit(self._calibrate_now(config), name="calibrate")

    def _calibrate_now(self, config: Config) -> Callable[[], None]:
        """A model-lane job: measure the model's fusion weight on this index now (cached
        after the first time), so the first hybrid search does not wait for it."""
        res = self._model_res

        def calibrate() -> None:
            if config != self.config or res.searcher is None:
                return
            try:
                if res.searcher.vectors_usable():
                    log.info("Fusion on this index: %s", res.searcher.vector_weight().describe())
            except Exception as exc:  # searches will say it; the window must not care
                log.warning("Could not measure the model on this index: %s", exc)

        return calibrate

    def start_indexing(self) -> None:
        """Index the watched folders (then watch them); restarts a running session.

        One writer at a time: when ``sr3desk watch`` runs for this data directory
        the window follows it instead; with background indexing on and none
        running, the window starts the background watcher and follows that.
        """
        if self._closing:
            return
        old = self.run
        if isinstance(old, WatchFollower) and old.alive and not old.owned:
            message.info(
                f"sr3desk watch (pid {old.pid}) indexes {self.home}; the window shows its "
                "progress and takes over when it stops"
            )
            return
        if not self.settings.folders:
            if old is not None:
                old.stop()  # nothing left to watch
            return
        if old is not None and old.alive:
            # One writer at a time: the new session starts when the old one ended.
            self._restart_pending = True
            old.stop()
            return
        self._restart_pending = False
        self.paused = False
        from sr3desk.index.watchstatus import live_status

        running = live_status(self.home)
        if running is not None:
            log.info("sr3desk watch (pid %d) indexes %s: following it", running.pid, self.home)
            self.run = follow_session(self, WatchFollower(self.home, status=running))
        elif self.settings.background_indexing:
            from sr3desk.desktop.autostart import spawn_watcher

            try:
                proc = spawn_watcher(self.home)
            except OSError as exc:
                message.error(f"Cannot start background indexing: {exc.strerror}")
                return
            self.run = follow_session(self, WatchFollower(self.home, proc=proc))
        else:
            self.run = index_session(self, self.config, self.settings)
            self.indexing = True
        self.run.start()

    def update_now(self) -> None:
        """Look for changes now: the followed watcher rescans its folders; otherwise
        indexing starts again."""
        follower = self.following
        if follower is not None and follower.status is not None:
            follower.rescan()
            return
        self.start_indexing()

    def _sync_autostart(self) -> None:
        """Install or remove background indexing's autostart entry to match the settings."""
        from sr3desk.desktop.autostart import install_autostart, remove_autostart
        from sr3desk.errors import Sr3Error

        try:
            if self.settings.background_indexing:
                install_autostart(self.home)
            else:
                remove_autostart()
        except Sr3Error as exc:
            message.error(str(exc))

    def pause(self) -> None:
        """Pause indexing (takes effect between files or embedding batches)."""
        if self.run is not None:
            self.paused = True
            self.run.pause()

    def resume(self) -> None:
        """Resume indexing."""
        if self.run is not None:
            self.paused = False
            self.run.resume()

    def apply(self, settings: Settings, home: Path | None = None) -> None:
        """Persist new settings (and data directory) and reconfigure what they affect.

        A new data directory is created if needed, remembered as the default one
        (the command line finds it too), and starts its own index.
        """
        old_settings, old_config = self.settings, self.config
        if home is not None and home != self.home:
            home = data_dir(home)
            set_default_data_dir(home)
            log.info("Data directory is now %s", home)
        else:
            home = self.home
        settings.save(home)
        old_home = self.home
        self.settings, self.home = settings, home
        self.config = Config.of(home, settings)
        if settings.background_indexing != old_settings.background_indexing or (
            settings.background_indexing and home != old_home
        ):
            self._sync_autostart()
        if self.config != old_config:
            self.refresh_status()
            self.load_model()
        index_keys = (
            "folders",
            "exclude",
            "max_file_mb",
            "ocr",
            "ocr_languages",
            "background_indexing",
        )
        if self.config != old_config or any(
            getattr(settings, k) != getattr(old_settings, k) for k in index_keys
        ):
            self.start_indexing()

    def shutdown(self, timeout: float = 1.5) -> bool:
        """Stop indexing, watching and the lanes; wait at most ``timeout`` seconds.

        Returns True when every thread ended (their handles are then closed);
        False when one is still inside a native call, which the caller may
        abandon: everything committed is safe, the rest is redone next time.
        """
        self._closing = True
        self._status_timer.stop()
        deadline = time.monotonic() + timeout
        if isinstance(self.run, WatchFollower):
            self.run.detach()  # the watcher keeps the index current after the window
        elif self.run is not None:
            self.run.stop()
        self.keyword_lane.stop()
        self.model_lane.stop()
        self.deep_lane.stop()
        ended = True
        if self.run is not None:
            # The child commits and exits at its next check point, or is ended:
            # either way it is gone when this returns.
            self.run.wait(max(0.05, deadline - time.monotonic()))
            log.debug("Index process ended")
        for lane in (self.keyword_lane, self.model_lane, self.deep_lane):
            ended = lane.join(max(0.0, deadline - time.monotonic())) and ended
        if not ended:
            alive = [t.name for t in threading.enumerate() if t.name.startswith("sr3desk-")]
            log.info("Leaving %s behind at exit (inside a native call)", ", ".join(alive))
        return ended

    # -- reads -------------------------------------------------------------------

    def search(
        self,
        request: SearchRequest,
        done: Callable[[SearchResponse | None], None],
        failed: Callable[[BaseException], None],
    ) -> Job[Any]:
        """Run ``request`` in the lane its mode needs; the newest request of a mode wins.

        Keyword requests run in the keyword lane; hybrid and vector ones in the
        model lane, where ``done`` gets None when no model is loaded.
        """
        config = self.config
        if request.mode == "keyword":
            res = self._keyword_res

            def run_keyword() -> SearchResponse | None:
                res.ensure(config)
                assert res.searcher is not None
                return _with_ocr(res.searcher.search(request), res.searcher.store)

            return self.keyword_lane.submit(run_keyword, done, failed, key="search")
        mres = self._model_res

        def run_model() -> SearchResponse | None:
            mres.ensure(config)
            if mres.embedder is None or mres.searcher is None:
                return None
            return _with_ocr(mres.searcher.search(request), mres.searcher.store)

        return self.model_lane.submit(run_model, done, failed, key="search")

    def rerank(
        self,
        response: SearchResponse,
        cancel: threading.Event,
        done: Callable[[SearchResponse], None],
        failed: Callable[[BaseException], None],
    ) -> Job[Any]:
        """Re-rank an instant search's ``response`` in the deep lane (deep search).

        ``cancel`` stops it between batches (the query changed); ``failed`` then gets
        :class:`~sr3desk.search.rerank.Cancelled`, or the reason the cross-encoder
        cannot be used. The newest request wins.
        """
        res, threads = self._deep_res, self.settings.threads

        def run() -> SearchResponse:
            return res.ensure(threads).rerank_response(response, cancel.is_set)

        return self.deep_lane.submit(run, done, failed, key="deep", name="rerank")

    def deep_unavailable(self) -> str | None:
        """Why Enter cannot re-rank (turned off, not installed), or None when it can."""
        if not self.settings.deep_search:
            return "deep search is turned off in Settings"
        from sr3desk.search.rerank import INSTALL_HINT, default_reranker_dir

        folder = default_reranker_dir()
        if not folder.is_dir():
            return f"the cross-encoder is not installed in {folder} ({INSTALL_HINT})"
        return None

    def reasoning(self) -> ReasoningVerdict:
        """What the loaded model's figures say of its reasoning (unmeasured without a model)."""
        from sr3desk.search.reasoning import reasoning_verdict

        return reasoning_verdict(self.model_info.eval if self.model_info is not None else None)

    def file_chunks(
        self,
        file_id: str,
        done: Callable[[list[ChunkHit]], None],
        failed: Callable[[BaseException], None],
    ) -> Job[Any]:
        """Fetch a file's chunks for the preview (the newest request wins)."""
        config, res = self.config, self._keyword_res

        def fetch() -> list[ChunkHit]:
            res.ensure(config)
            assert res.store is not None
            return res.store.file_chunks(file_id)

        return self.keyword_lane.submit(fetch, done, failed, key="preview")

    def refresh_status(self, first: bool = False) -> None:
        """Read the index's counts and problems; emits status_changed."""
        config, res = self.config, self._keyword_res

        def read() -> IndexStatus:
            res.ensure(config)
            assert res.store is not None
            return res.store.status()

        def done(status: IndexStatus) -> None:
            if config != self.config:
                return
            self.last_status = status
            if first:
                self.store_ready.emit(status)
            self.status_changed.emit(status)

        def failed(exc: BaseException) -> None:
            message.from_exception(exc, f"opening the index in {config.home}")

        self.keyword_lane.submit(read, done, failed, key="status", name="status")

    # -- index thread events (GUI thread) -------------------------------------------

    def _on_started(self) -> None:
        self.indexing = True
        self._status_timer.start()

    def _on_finished(self, summary: Summary) -> None:
        # A finished scan leaves the session watching, and a pause holds there too:
        # ``paused`` is cleared when the session ends or a new one starts, not here.
        self._status_timer.stop()
        self.indexing = False
        if summary.skipped and not summary.stopped:
            n = len(summary.skipped)
            message.info(f"Indexed your folders; {n} file{'s' if n != 1 else ''} could not be read")
        self.refresh_status()

    def _on_failed(self, exc: BaseException) -> None:
        self.indexing = False
        message.from_exception(exc, "indexing")

    def _on_ended(self) -> None:
        self.indexing = False
        self.paused = False
        self._status_timer.stop()
        if self._closing:
            return
        run = self.run
        if self._restart_pending:
            self.start_indexing()
        elif isinstance(run, WatchFollower) and not run.stopping and run.failure is None:
            # The watcher stopped by itself (Ctrl-C in its terminal): index here again.
            log.info("sr3desk watch stopped; the window indexes %s again", self.home)
            self.start_indexing()


__all__ = [
    "Config",
    "Engine",
    "LaneResources",
    "follow_session",
    "index_options",
    "index_session",
]
