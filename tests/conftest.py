"""Shared fixtures: the offline test models and real documents from Debian packages.

The models are built by ``make models`` (``python -m training.testmodels``) into
``build/models``; the documents come from packages that ``make test`` installs.
A missing one is an error that says how to get it, not a skip: a test that
silently does not run proves nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(os.environ.get("SR3DESK_TEST_MODELS", ROOT / "build" / "models"))
PY_DOC_SOURCES = Path("/usr/share/doc/python3.11/html/_sources")
R_PDFS = Path("/usr/share/R/doc/manual")
GNUPLOT_PDF = Path("/usr/share/doc/gnuplot/gnuplot.pdf")


def _need(path: Path, how: str) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: {how}", pytrace=False)
    return path


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Never touch the user's real data directory or configured model from a test."""
    monkeypatch.setenv("SR3DESK_HOME", str(tmp_path_factory.mktemp("sr3home")))
    monkeypatch.delenv("SR3DESK_MODEL", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_qwen2_dir() -> Path:
    """HF checkpoint of the tiny random Qwen2 model (config, safetensors, tokenizer)."""
    return _need(MODELS / "tiny-qwen2", "run `make models`")


@pytest.fixture(scope="session")
def tiny_gguf(tiny_qwen2_dir: Path) -> Path:
    """The tiny Qwen2 model as an F32 GGUF: fast enough for most runtime tests."""
    return _need(tiny_qwen2_dir / "tiny-qwen2.F32.gguf", "run `make models`")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """HF checkpoint of SmolLM2-135M-Instruct with <|embed_token|> added."""
    return _need(MODELS / "smollm2-sr3", "run `make models`")


@pytest.fixture(scope="session")
def smollm2_gguf(smollm2_dir: Path) -> Callable[[str], Path]:
    """Factory: ``smollm2_gguf("Q8_0")`` -> path of that quantization (F16, Q8_0, Q4_K_M)."""

    def get(quant: str = "Q8_0") -> Path:
        return _need(smollm2_dir / f"smollm2-sr3.{quant}.gguf", "run `make models`")

    return get


@pytest.fixture(scope="session")
def python_docs_sources() -> Path:
    """reST sources of the Python docs (Debian package python3.11-doc)."""
    return _need(PY_DOC_SOURCES, "install Debian's python3.11-doc (make test does)")


@pytest.fixture(scope="session")
def real_pdfs() -> list[Path]:
    """Real PDFs with a text layer (Debian packages r-doc-pdf and gnuplot-doc)."""
    _need(R_PDFS, "install Debian's r-doc-pdf (make test does)")
    _need(GNUPLOT_PDF, "install Debian's gnuplot-doc (make test does)")
    return [R_PDFS / "R-FAQ.pdf", R_PDFS / "R-intro.pdf", GNUPLOT_PDF]


@pytest.fixture(scope="session")
def tune_indexed(
    tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path, python_docs_sources: Path
) -> Path:
    """A folder holding ``docs/`` (8 Python tutorial pages) and ``home/``, a data directory
    whose index holds them embedded by the tiny model, which is the default model (its
    checkpoint lies beside it): what the tuning tests start from. Built once; copy it
    with :func:`corpora.copy_tune_home` before changing anything."""
    from corpora import TUNE_DOCS

    from sr3desk.cli import main
    from sr3desk.settings import Settings

    root = tmp_path_factory.mktemp("tune-index")
    docs = root / "docs"
    docs.mkdir()
    for name in TUNE_DOCS:
        src = python_docs_sources / "tutorial" / f"{name}.rst.txt"
        (docs / src.name).write_bytes(src.read_bytes())
    home = root / "home"
    home.mkdir()
    Settings(threads=1, model_path=str(tiny_gguf), first_run_done=True).save(home)
    assert main(["index", str(docs), "--db", str(home)]) == 0
    return root
