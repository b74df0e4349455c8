"""The "Tune the model to my documents" dialog: ``sr3desk tune`` from the window.

It runs the same child as the command line (``python -m training.tune``, built by
:func:`sr3desk.tuning.tune_command`) with a QProcess, in a session of its own, so that
Pause and Resume (SIGSTOP, SIGCONT) and Cancel (SIGKILL) reach the stages it starts
(``training.sft``, ``training.export``, ``training.eval``) as well. Progress comes from
what the run measures, in the events it writes on its standard output
(:class:`sr3desk.tuning.TuneEvent`): each stage as it begins, the SFT steps planned, and
SFT's steps with their measured time (:class:`RunProgress`, :func:`estimate`); its log
(standard error) is only kept for a failure's message. The child writes only in
``<data dir>/tune-staging/`` until its end, so a cancelled run changes nothing (what it
wrote there is removed). At the end the dialog shows the held-out nDCG@10 of keyword
search, the current and the tuned model, and the verdict; a winning model becomes the
default at once, its vectors built by the window's indexer while the current ones serve,
with an Undo button (:func:`sr3desk.tuning.undo`).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QElapsedTimer, QProcess, QProcessEnvironment, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from sr3desk.errors import Sr3Error
from sr3desk.gui import message
from sr3desk.gui.workers import start_job
from sr3desk.index.background import start_background_index
from sr3desk.settings import Settings
from sr3desk.tuning import (
    EVENT_ERROR,
    EVENT_PLAN,
    EVENT_PROGRESS,
    EVENT_RESULT,
    EVENT_STAGE,
    STAGING,
    TRAIN_SHARE,
    TuneEvent,
    checkpoint_of,
    missing_train_extra,
    switch_default,
    tune_command,
    undo,
)

log = logging.getLogger(__name__)

DEFAULT_MINUTES = 30
# The bar stays short of full until the result is read.
MAX_FRACTION = 0.99
TICK_MS = 1000

STAGE_NAMES = {
    "data": "Making training data from your index",
    "probe": "Measuring the training speed",
    "sft": "Training",
    "export": "Writing the model file",
    "eval": "Comparing the models on held-out files",
}


@dataclass
class RunProgress:
    """What a run has shown so far: its stage and, for SFT, its steps and their time.

    ``minutes`` is the time asked; ``steps`` the SFT steps planned (the run's plan
    event); ``step`` the last step SFT logged; ``s_per_step`` the latest measured step
    time; ``sft_start``/``sft_end`` the seconds into the run when SFT began and ended
    (None: not yet).
    """

    minutes: float
    stage: str = "data"  # the first stage
    steps: int = 0
    step: int = 0
    s_per_step: float | None = None
    sft_start: float | None = None
    sft_end: float | None = None

    def read_event(self, event: TuneEvent, elapsed: float) -> bool:
        """Take one event of the run, ``elapsed`` seconds into it; returns True when a
        new stage began."""
        if event.event in (EVENT_PLAN, EVENT_PROGRESS):
            self.steps = event.steps or self.steps
            self.step = max(self.step, event.step)
            if event.s_per_step:
                self.s_per_step = float(event.s_per_step)
            return False
        if event.event != EVENT_STAGE or event.stage == self.stage:
            return False
        if self.stage == "sft" and self.sft_end is None:
            self.sft_end = elapsed
        if event.stage == "sft":
            self.sft_start = elapsed
        self.stage = event.stage
        return True


def estimate(progress: RunProgress, elapsed: float) -> tuple[float, float | None]:
    """The share of the run done, in [0, :data:`MAX_FRACTION`], and the seconds left
    (None: past the plan, the run is finishing), ``elapsed`` seconds into it.

    SFT's part is measured: its steps left times the measured seconds per step (the
    plan's :data:`TRAIN_SHARE` of the minutes before anything is measured). The other
    stages get the rest of the minutes asked, less the time they have taken so far.

    >>> estimate(RunProgress(minutes=10), 60.0)
    (0.1, 540.0)
    >>> p = RunProgress(10, "sft", steps=100, step=50, s_per_step=2.0, sft_start=120.0)
    >>> estimate(p, 220.0)  # 100 s of SFT left; 240 s planned besides SFT, 120 s spent
    (0.5, 220.0)
    """
    planned = progress.minutes * 60
    if progress.sft_end is not None:
        sft_spent = progress.sft_end - (progress.sft_start or progress.sft_end)
        sft_left = 0.0
    elif progress.sft_start is not None:
        sft_spent = elapsed - progress.sft_start
        if progress.steps and progress.s_per_step:
            sft_left = max(progress.steps - progress.step, 0) * progress.s_per_step
        else:
            sft_left = max(TRAIN_SHARE * planned - sft_spent, 0.0)
    else:
        sft_spent = 0.0
        if progress.steps and progress.s_per_step:
            sft_left = progress.steps * progress.s_per_step
        else:
            sft_left = TRAIN_SHARE * planned
    other_left = max((1 - TRAIN_SHARE) * planned - (elapsed - sft_spent), 0.0)
    left = sft_left + other_left
    if left <= 0:
        return MAX_FRACTION, None
    done = elapsed / (elapsed + left) if elapsed > 0 else 0.0
    return round(min(done, MAX_FRACTION), 4), round(left, 1)


def format_left(seconds: float | None) -> str:
    """``seconds`` left as the dialog says it ("about 12 min left"); None: past the plan.

    >>> format_left(42), format_left(780), format_left(None)
    ('about 42 s left', 'about 13 min left', 'finishing (longer than planned)')
    """
    if seconds is None:
        return "finishing (longer than planned)"
    if seconds < 60:
        return f"about {max(int(seconds), 1)} s left"
    return f"about {round(seconds / 60)} min left"


def blocker(model_path: str | None) -> str | None:
    """Why tuning cannot start with ``model_path`` as the default model, in one line (the
    ``train`` extra first); None when it can."""
    missing = missing_train_extra()
    if missing:
        return f"Cannot tune: {missing}"
    if not model_path:
        return "Cannot tune: no model is set (choose one in Settings)"
    model = Path(model_path)
    if not model.is_file():
        return f"Cannot tune {model.name}: the file is missing"
    if checkpoint_of(model) is None:
        return (
            f"Cannot tune {model.name}: its training checkpoint (config.json and "
            "*.safetensors) is not beside it"
        )
    return None


def _set_visible(visible: bool, *widgets: QWidget) -> None:
    for w in widgets:
        w.setVisible(visible)


class TuneDialog(QDialog):
    """Pick the minutes, run the tune with its stage, progress and time left, show the
    verdict. ``home`` is the data directory, ``model_path`` the default model's GGUF.
    ``apply_model`` is called with the new default model's path after a switch or an
    undo (the window applies it, which indexes); without it a switch starts
    :func:`sr3desk.index.background.start_background_index`. ``steps``, ``margin``, ``teacher``
    and ``overrides`` pass to :func:`sr3desk.tuning.tune_command` (tests, benchmarks)."""

    stage_changed = Signal(str)  # the stage that began (a key of STAGE_NAMES)
    progressed = Signal(object)  # RunProgress, once a second while running
    event_read = Signal(object)  # each TuneEvent the run sent
    run_ended = Signal(object)  # the result, or None: it failed or was cancelled
    model_switched = Signal(object)  # the default model's path (None: keyword search)

    def __init__(
        self,
        home: Path,
        model_path: str | None,
        parent: QWidget | None = None,
        *,
        apply_model: Callable[[str | None], None] | None = None,
        steps: int = 0,
        margin: float | None = None,
        teacher: bool = True,
        overrides: Sequence[str] = (),
    ) -> None:
        super().__init__(parent)
        self.home = home
        self.model_path = model_path
        self.apply_model = apply_model
        # Passed to tune_command (tests and benchmarks set them; the window does not).
        self.steps, self.margin, self.teacher = steps, margin, teacher
        self.overrides = list(overrides)
        self.proc: QProcess | None = None
        self.progress: RunProgress | None = None
        self.outcome: dict[str, Any] | None = None
        self.cancelled = False
        self.paused = False
        self._last_line = ""  # of the run's log: said when it fails without an error event
        self._log_tail = b""
        self._result: dict[str, Any] | None = None
        self._error_message = ""
        self._clock = QElapsedTimer()
        self._paused_ms = 0
        self._paused_at = 0
        self._tick = QTimer(self)
        self._tick.setInterval(TICK_MS)
        self._tick.timeout.connect(self._update)
        self.setWindowTitle("Tune the model to my documents")
        self.setAccessibleName("Tune the model")
        self._build()
        self.blocked = blocker(model_path)
        if self.blocked:
            self._show_blocked(self.blocked)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self._quit)

    def _build(self) -> None:
        name = Path(self.model_path).name if self.model_path else "the model"
        self.intro = QLabel(
            f"Trains {name} on passages from your index for about the time below, then "
            "measures it against the current model on files kept out of training. It "
            "becomes the default model only when it measures better."
        )
        self.intro.setWordWrap(True)
        self.minutes = QSpinBox()
        self.minutes.setAccessibleName("Minutes")
        self.minutes.setRange(1, 24 * 60)
        self.minutes.setValue(DEFAULT_MINUTES)
        self.minutes.setSuffix(" min")
        minutes_row = QHBoxLayout()
        self.minutes_label = QLabel("Time to spend:")
        minutes_row.addWidget(self.minutes_label)
        minutes_row.addWidget(self.minutes)
        minutes_row.addStretch(1)
        self.stage = QLabel()
        self.stage.setAccessibleName("Stage")
        self.bar = QProgressBar()
        self.bar.setAccessibleName("Tuning progress")
        self.bar.setRange(0, 1000)
        self.left = QLabel()
        self.left.setAccessibleName("Time left")
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        self.table = QTableWidget(0, 2)
        self.table.setAccessibleName("Held-out nDCG@10")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.verdict = QLabel()
        self.verdict.setAccessibleName("Verdict")
        self.verdict.setWordWrap(True)
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.start_button = QPushButton("&Start")
        self.pause_button = QPushButton("&Pause")
        self.cancel_button = QPushButton("&Cancel")
        self.undo_button = QPushButton("&Undo")
        self.close_button = QPushButton("Close")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.cancel_button.clicked.connect(self.cancel)
        self.undo_button.clicked.connect(self.undo)
        self.close_button.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (
            self.start_button,
            self.pause_button,
            self.cancel_button,
            self.undo_button,
            self.close_button,
        ):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addLayout(minutes_row)
        layout.addWidget(self.stage)
        layout.addWidget(self.bar)
        layout.addWidget(self.left)
        layout.addWidget(self.caption)
        layout.addWidget(self.table)
        layout.addWidget(self.verdict)
        layout.addStretch(1)
        layout.addLayout(buttons)
        _set_visible(False, self.stage, self.bar, self.left, self.caption, self.table, self.verdict)
        _set_visible(False, self.pause_button, self.cancel_button, self.undo_button)
        self.setMinimumWidth(560)
        self.resize(560, 200)

    def _show_blocked(self, text: str) -> None:
        _set_visible(False, self.intro, self.minutes_label, self.minutes, self.start_button)
        self.verdict.setText(text)
        self.verdict.show()
        log.info("%s", text)

    @property
    def running(self) -> bool:
        """True while the run's process is alive."""
        return self.proc is not None and self.proc.state() != QProcess.ProcessState.NotRunning

    @property
    def pid(self) -> int | None:
        """The run's process id (the leader of its process group); None when none runs."""
        if self.proc is None or not self.running:
            return None
        return int(self.proc.processId()) or None

    # -- the run ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the run for the minutes chosen (nothing when tuning cannot start)."""
        if self.blocked or self.running or self.model_path is None:
            return
        found = checkpoint_of(Path(self.model_path))
        assert found is not None  # blocker() said so
        base, delta = found
        minutes = float(self.minutes.value())
        command = tune_command(
            self.home,
            Path(self.model_path),
            base,
            minutes,
            steps=self.steps,
            margin=self.margin,
            teacher=self.teacher,
            overrides=self.overrides,
            delta=delta,
        )
        self.progress = RunProgress(minutes, steps=self.steps)
        self.outcome, self.cancelled, self.paused, self._last_line = None, False, False, ""
        self._log_tail, self._result, self._error_message = b"", None, ""
        proc = QProcess(self)
        params = QProcess.UnixProcessParameters()
        # Its own session: signals to its group reach the stages it starts.
        params.flags = QProcess.UnixProcessFlag.CreateNewSession
        proc.setUnixProcessParameters(params)
        proc.setProgram(command[0])
        proc.setArguments(command[1:])
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        proc.setProcessEnvironment(env)
        proc.setReadChannel(QProcess.ProcessChannel.StandardOutput)  # its events
        proc.readyReadStandardOutput.connect(self._read)
        proc.readyReadStandardError.connect(self._read_log)
        proc.finished.connect(self._exited)
        proc.errorOccurred.connect(self._error)
        self.proc = proc
        log.info("tune: %s", " ".join(command))
        self._paused_ms = 0
        self._clock.start()
        proc.start()
        _set_visible(False, self.intro, self.minutes_label, self.minutes, self.start_button)
        _set_visible(False, self.caption, self.table, self.undo_button, self.verdict)
        self.verdict.clear()
        _set_visible(True, self.stage, self.bar, self.left, self.pause_button, self.cancel_button)
        self.pause_button.setText("&Pause")
        self.cancel_button.setEnabled(True)
        self.pause_button.setEnabled(True)
        self._tick.start()
        self._update()

    def elapsed(self) -> float:
        """Seconds the run has been running, its pauses left out."""
        if not self._clock.isValid():
            return 0.0
        paused = self._paused_ms + (self._clock.elapsed() - self._paused_at if self.paused else 0)
        return max(self._clock.elapsed() - paused, 0) / 1000

    def _signal_group(self, sig: signal.Signals) -> None:
        pid = self.pid
        if pid is None:
            return
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
            else:  # not its own group (it cannot be, but never signal ours)
                os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def toggle_pause(self) -> None:
        """Pause the run (every process of it stops where it is) or resume it."""
        if not self.running or self.progress is None:
            return
        if self.paused:
            self._signal_group(signal.SIGCONT)
            self._paused_ms += self._clock.elapsed() - self._paused_at
            self.paused = False
            self.pause_button.setText("&Pause")
            log.info("tune resumed")
        else:
            self._signal_group(signal.SIGSTOP)
            self._paused_at = self._clock.elapsed()
            self.paused = True
            self.pause_button.setText("&Resume")
            log.info("tune paused")
        self._update()

    def cancel(self) -> None:
        """End the run and every process it started; nothing it did is kept."""
        if not self.running:
            return
        self.cancelled = True
        self.cancel_button.setEnabled(False)
        self.pause_button.setEnabled(False)
        self._signal_group(signal.SIGKILL)
        self.stage.setText("Cancelling…")

    @Slot()
    def _quit(self) -> None:
        # The app ends: so does the run (it would go on in its own session otherwise).
        proc = self.proc
        if proc is not None and self.running:
            self.cancel()
            proc.waitForFinished(3000)

    @Slot()
    def _read(self) -> None:
        if self.proc is None or self.progress is None:
            return
        while self.proc.canReadLine():
            line = bytes(self.proc.readLine().data()).decode("utf-8", "replace").strip()
            event = TuneEvent.from_line(line) if line else None
            if event is None:
                if line:
                    log.debug("tune (not an event): %s", line)
                continue
            self.event_read.emit(event)
            if event.event == EVENT_RESULT:
                self._result = event.result
            elif event.event == EVENT_ERROR:
                self._error_message = event.message
            elif self.progress.read_event(event, self.elapsed()):
                log.info("tune stage: %s", self.progress.stage)
                self.stage_changed.emit(self.progress.stage)
                self._update()

    @Slot()
    def _read_log(self) -> None:
        if self.proc is None:
            return
        lines = (self._log_tail + bytes(self.proc.readAllStandardError().data())).split(b"\n")
        self._log_tail = lines.pop()  # a line not yet ended
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._last_line = line
                log.debug("tune: %s", line)

    def _update(self) -> None:
        p = self.progress
        if p is None or self.cancelled:
            return
        done, left = estimate(p, self.elapsed())
        name = STAGE_NAMES.get(p.stage, p.stage)
        if p.stage == "sft" and p.steps:
            name += f": step {p.step} of {p.steps}"
        self.stage.setText(f"{name} (paused)" if self.paused else name)
        self.bar.setValue(int(done * 1000))
        self.left.setText("paused" if self.paused else format_left(left))
        self.progressed.emit(p)

    @Slot(int, QProcess.ExitStatus)
    def _exited(self, code: int, status: QProcess.ExitStatus) -> None:
        self._read()
        self._read_log()
        self._tick.stop()
        _set_visible(False, self.pause_button, self.cancel_button)
        if self.cancelled:
            self._discard()
            return
        if status == QProcess.ExitStatus.NormalExit and code == 0 and self._result is not None:
            self._show_result(self._result)
            return
        why = self._error_message or self._last_line or "no output"
        self._failed(f"Tuning failed (exit {code}): {why}")

    @Slot(QProcess.ProcessError)
    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and self.proc is not None:
            self._tick.stop()
            self._failed(f"Cannot start tuning: {self.proc.errorString()}")

    def _failed(self, text: str) -> None:
        _set_visible(False, self.bar, self.left, self.pause_button, self.cancel_button)
        self.stage.setText("Stopped")
        self.verdict.setText(message.error(text).text)
        self.verdict.show()
        self.run_ended.emit(None)

    def _discard(self) -> None:
        staging = self.home / STAGING
        self.stage.setText("Cancelled: the model and the index are as they were")
        _set_visible(False, self.bar, self.left)
        message.info("Tuning cancelled; nothing was changed")

        def remove() -> None:
            # What the run wrote so far: checkpoints of the model's size, thrice.
            shutil.rmtree(staging, ignore_errors=True)

        start_job(self, remove, lambda _none: self.run_ended.emit(None), name="tune-discard")

    # -- the verdict --------------------------------------------------------------------

    def _show_result(self, result: dict[str, Any]) -> None:
        self.outcome = result
        self.bar.setValue(1000)
        self.left.hide()
        self.stage.setText("Done")
        figures: dict[str, dict[str, float]] = result["figures"]
        queries = result.get("counts", {}).get("heldout_queries")
        tuned = Path(result["tuned"])
        labels = {
            "bm25": "Keyword search (BM25)",
            "current": f"Current model ({Path(result['current']).name})",
            "tuned": f"Tuned model ({tuned.name})",
        }
        rows = [k for k in ("bm25", "current", "tuned") if k in figures]
        self.table.setRowCount(len(rows))
        on = f"{queries} queries from" if queries else "the"
        self.caption.setText(f"Measured on {on} files kept out of training:")
        self.table.setHorizontalHeaderLabels(["Search", "nDCG@10"])
        for i, key in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(labels[key]))
            value = QTableWidgetItem(f"{figures[key]['ndcg@10']:.3f}")
            value.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(i, 1, value)
        self.table.resizeColumnToContents(1)
        self.table.setFixedHeight(
            self.table.horizontalHeader().sizeHint().height()
            + sum(self.table.rowHeight(i) for i in range(len(rows)))
            + 2 * self.table.frameWidth()
        )
        _set_visible(True, self.caption, self.table)
        if result["wins"]:
            switch_default(self.home, tuned)
            self._use(str(tuned), index=True)
            text = (
                f"{tuned.name} is now the default model: {result['reason']}. Its vectors "
                "are being built; the current ones serve your searches until then."
            )
            self.undo_button.show()
        else:
            text = (
                f"Kept the current model: {result['reason']}. "
                f"The tuned model is kept in {tuned.parent}."
            )
        self.verdict.setText(text)
        self.verdict.show()
        message.info(text)
        self.resize(self.width(), self.sizeHint().height())
        self.run_ended.emit(result)

    def _use(self, path: str | None, index: bool) -> None:
        if self.apply_model is not None:
            self.apply_model(path)
        elif index:
            start_background_index(self.home, Settings.load(self.home))
        self.model_switched.emit(path)

    def undo(self) -> None:
        """Go back to the model the tuned one replaced (its vectors are still there)."""
        try:
            previous = undo(self.home)
        except Sr3Error as exc:
            self.verdict.setText(message.from_exception(exc, "undoing the tune").text)
            return
        self._use(previous, index=False)
        self.undo_button.hide()
        name = Path(previous).name if previous else "keyword search only"
        self.verdict.setText(f"Back to {name}; the tuned model is kept in the models folder.")
        message.info(f"Default model back to {name}")

    def reject(self) -> None:
        """Close (Escape): a running tune goes on; the window's menu shows it again."""
        if self.running:
            message.info("Tuning goes on; Index ▸ Tune the model to my documents… shows it again")
        super().reject()
