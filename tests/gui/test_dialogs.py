"""The settings and welcome dialogs: folders by dialog and drop, the model checked in place."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialogButtonBox, QWidget
from pytestqt.qtbot import QtBot

from sr3desk.gui.settings_dialog import SettingsDialog
from sr3desk.settings import Settings


@pytest.fixture
def dialog(qtbot: QtBot, tmp_path: Path) -> SettingsDialog:
    d = SettingsDialog(Settings(folders=[str(tmp_path)]), tmp_path, None)
    qtbot.addWidget(d)
    d.show()
    return d


def test_model_file_is_described_or_rejected(
    qtbot: QtBot, dialog: SettingsDialog, tiny_gguf: Path, tmp_path: Path
) -> None:
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert ok.isEnabled()  # no model: keyword search only is a valid choice
    with qtbot.waitSignal(dialog.model.validity_changed, timeout=10000) as sig:
        dialog.model.set_path(str(tiny_gguf))
        # The first signal says "checking" (invalid for now); wait for the verdict.
        qtbot.waitUntil(lambda: dialog.model.info is not None, timeout=10000)
    assert sig.signal_triggered
    details = dialog.model.details.text()
    assert "tiny-qwen2" in details and "64-d vectors" in details and "F32" in details
    assert "MB" in details
    assert ok.isEnabled()

    bad = tmp_path / "notes.gguf"
    bad.write_text("these are my notes, not a model\n")
    dialog.model.set_path(str(bad))
    qtbot.waitUntil(lambda: "not a GGUF" in dialog.model.details.text(), timeout=10000)
    assert not ok.isEnabled()
    assert dialog.model.info is None

    dialog.model.set_path(str(tmp_path / "missing.gguf"))
    qtbot.waitUntil(lambda: "missing.gguf" in dialog.model.details.text(), timeout=10000)
    assert not ok.isEnabled()


def test_folders_dropped_and_removed_and_settings_returned(
    qtbot: QtBot,
    dialog: SettingsDialog,
    tmp_path: Path,
    drop_folders: Callable[[QWidget, list[Path]], None],
) -> None:
    a, b = tmp_path / "alpha", tmp_path / "beta"
    a.mkdir()
    b.mkdir()
    (b / "note.txt").write_text("x")
    # Dropping a file adds its folder; dropping a folder twice adds it once.
    drop_folders(dialog.folders.list.viewport(), [a, b / "note.txt", a])
    assert dialog.folders.list.folders() == [str(tmp_path), str(a), str(b)]
    dialog.folders.list.setCurrentRow(0)
    dialog.folders.remove.click()
    dialog.exclude.setPlainText("*.log\n\n drafts/** \n")
    dialog.threads.setValue(2)
    dialog.gpu_layers.setValue(-1)
    dialog.reason.setChecked(True)
    result = dialog.result_settings()
    assert result.folders == [str(a), str(b)]
    assert result.exclude == ["*.log", "drafts/**"]
    assert (result.threads, result.gpu_layers, result.reason_default) == (2, -1, True)
    assert dialog.result_home() == tmp_path.resolve()
