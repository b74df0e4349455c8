"""Small widgets of the main window: the search field, the message banner and the
panel that shows the model's reasoning after a deep search."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QGuiApplication, QKeyEvent, QPalette
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from sr3desk.gui import theme
from sr3desk.gui.message import Level, Message


class SearchField(QLineEdit):
    """The search box: Down moves into the results, Escape clears, Enter thinks."""

    down = Signal()
    think = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Search")
        self.setAccessibleDescription(
            "Type to search your documents; press Enter for a deep search"
        )
        self.setPlaceholderText("Search your documents…   (Enter: deep search)")
        self.setClearButtonEnabled(True)
        font = self.font()
        font.setPointSizeF(font.pointSizeF() * 1.25)
        self.setFont(font)
        self.setMinimumHeight(self.fontMetrics().height() + 16)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """Down/PageDown go to the results; Escape clears; Enter runs a deep search."""
        key = event.key()
        if key in (Qt.Key.Key_Down, Qt.Key.Key_PageDown):
            self.down.emit()
            return
        if key == Qt.Key.Key_Escape and self.text():
            self.clear()
            return
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.think.emit()
            return
        super().keyPressEvent(event)


class Banner(QFrame):
    """A dismissible line at the top of the window for warnings and errors."""

    action_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Message")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setAccessibleName("Message text")
        self.label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.action = QPushButton()
        self.action.setAccessibleName("Message action")
        self.action.hide()
        self.action.clicked.connect(self.action_clicked)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setAccessibleName("Dismiss message")
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.action)
        layout.addWidget(close)
        self.current: Message | None = None
        self.hide()

    def show_message(self, msg: Message, action: str | None = None) -> None:
        """Show ``msg`` (warning or error), optionally with an action button."""
        self.current = msg
        self.label.setText(msg.text)
        self._colour()
        self.action.setVisible(action is not None)
        if action is not None:
            self.action.setText(action)
        self.show()

    def _colour(self) -> None:
        if self.current is None:
            return
        app_palette = QGuiApplication.palette()
        dark = theme.is_dark(app_palette)
        if self.current.level >= Level.ERROR:
            back = "#5c1f1f" if dark else "#fde8e8"
        else:
            back = "#5a4a12" if dark else "#fff4d6"
        pal = QPalette(app_palette)
        pal.setColor(QPalette.ColorRole.Window, QColor(back))
        self.setPalette(pal)

    def event(self, event: QEvent) -> bool:
        """Follow the system's light/dark switch."""
        if event.type() == QEvent.Type.ApplicationPaletteChange:
            self._colour()
        return super().event(event)


class ReasoningPanel(QFrame):
    """Shows what the model thought before embedding a deep-search query."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("The model's reasoning")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel("Thinking…")
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.text = QLabel()
        self.text.setAccessibleName("Reasoning text")
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.PlainText)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setAccessibleName("Hide reasoning")
        close.clicked.connect(self.hide)
        head = QHBoxLayout()
        head.addWidget(self.title, 1)
        head.addWidget(close)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 4, 4, 8)
        layout.addLayout(head)
        layout.addWidget(self.text)
        self._dots = 0
        self._timer = QTimer(self)
        self._timer.setInterval(400)
        self._timer.timeout.connect(self._tick)
        self.hide()

    def show_thinking(self, query: str) -> None:
        """Show that a deep search for ``query`` is running."""
        self.title.setText("Thinking")
        self.text.setText(f"The model is reading “{query}” before searching…")
        self._dots = 0
        self._timer.start()
        self.show()

    def show_reasoning(self, reasoning: str | None, forced: bool) -> None:
        """Show the model's reasoning (or that there was none)."""
        self._timer.stop()
        self.title.setText("The model's reasoning")
        text = (reasoning or "").strip() or "The model went straight to its answer."
        if forced:
            text += "\n(The model did not finish on its own; its answer was completed for it.)"
        self.text.setText(text)
        self.show()

    def stop(self) -> None:
        """Stop the thinking animation and hide."""
        self._timer.stop()
        self.hide()

    def _tick(self) -> None:
        self._dots = (self._dots + 1) % 4
        self.title.setText("Thinking" + "." * self._dots)
