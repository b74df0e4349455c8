"""``make run``'s ``sr3desk model install GGUF --default --if-unset``: which default it may
replace.

It replaces a default nobody chose (none yet, a file that is gone, one an earlier
``--if-unset`` set, the untrained stand-in older ``make run``s installed) and never one
the user chose: in the app, with plain ``--default``, or "no model".
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from sr3desk.cli import main
from sr3desk.settings import SETTINGS_FILE, Settings


def home() -> Path:
    return Path(os.environ["SR3DESK_HOME"])


def make_run(model: Path) -> str:
    """What ``make run`` does before starting the app; returns the default model after."""
    assert main(["model", "install", str(model), "--default", "--if-unset"]) == 0
    return str(Settings.load(home()).model_path)


def installed(model: Path) -> str:
    return str(home() / "models" / model.name)


def choose_in_app(model: str | None) -> None:
    """What the app's settings dialog saves when the user picks a model (or none)."""
    settings = Settings.load(home())
    dataclasses.replace(settings, model_path=model).save(home())


@pytest.fixture
def models(tiny_gguf: Path, tmp_path: Path) -> dict[str, Path]:
    """Three distinct model files: an old default, a new default and the user's own."""
    out = {}
    for name in ("old", "new", "mine"):
        out[name] = tmp_path / f"{name}.F32.gguf"
        shutil.copyfile(tiny_gguf, out[name])
    return out


def test_make_run_moves_its_own_default_forward(models: dict[str, Path]) -> None:
    assert make_run(models["old"]) == installed(models["old"])
    assert make_run(models["new"]) == installed(models["new"])
    # The file it set is gone: set again.
    Path(installed(models["new"])).unlink()
    assert make_run(models["old"]) == installed(models["old"])


def test_make_run_keeps_the_users_choice(
    models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    make_run(models["old"])
    choose_in_app(str(models["mine"]))
    assert make_run(models["new"]) == str(models["mine"])
    assert "as the user chose" in capsys.readouterr().err
    # Even when the user picks the very file make run had installed.
    choose_in_app(installed(models["new"]))
    assert make_run(models["old"]) == installed(models["new"])


def test_make_run_keeps_a_default_set_by_hand(models: dict[str, Path]) -> None:
    assert main(["model", "install", str(models["mine"]), "--default"]) == 0
    assert make_run(models["new"]) == installed(models["mine"])


def test_make_run_keeps_no_model_when_the_user_turned_it_off(models: dict[str, Path]) -> None:
    make_run(models["old"])
    choose_in_app(None)
    assert main(["model", "install", str(models["new"]), "--default", "--if-unset"]) == 0
    assert Settings.load(home()).model_path is None


def _older_make_run(model: Path) -> None:
    """Settings as a ``make run`` from before ``model_auto`` left them."""
    assert main(["model", "install", str(model), "--default"]) == 0
    path = home() / SETTINGS_FILE
    data = json.loads(path.read_text())
    del data["model_auto"]
    path.write_text(json.dumps(data))


def test_the_untrained_stand_in_of_an_older_make_run_is_replaced(
    smollm2_gguf: Callable[[str], Path], models: dict[str, Path]
) -> None:
    _older_make_run(smollm2_gguf("Q8_0"))
    assert make_run(models["new"]) == installed(models["new"])


def test_another_model_of_an_older_setup_is_kept(
    smollm2_gguf: Callable[[str], Path], models: dict[str, Path]
) -> None:
    _older_make_run(models["mine"])
    assert make_run(models["new"]) == installed(models["mine"])
    # The stand-in chosen from elsewhere than the models folder is a user's choice.
    choose_in_app(str(smollm2_gguf("Q8_0")))
    assert make_run(models["new"]) == str(smollm2_gguf("Q8_0"))
