"""``sr3desk search`` end to end with the default model, smollm2-sr3 (Q4_K_M).

Real Python docs pages (reST, cut at a paragraph break to keep the 135M model's
indexing under a minute) indexed by ``sr3desk index`` and searched by
``sr3desk search``: the default hybrid search puts the expected page first. The
model is untrained, so the searcher measures it on this index before it lets
its vectors vote; the test checks that measurement was made and is on record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from sr3desk.cli import main

PAGES = ("json", "csv", "base64", "gzip", "zlib", "hashlib", "uuid", "getpass", "shelve", "glob")
MAX_CHARS = 3000


def _cut(text: str) -> str:
    cut = text.rfind("\n\n", 0, MAX_CHARS)
    return text[: cut if cut > MAX_CHARS // 2 else MAX_CHARS]


@pytest.fixture(scope="module")
def indexed(
    tmp_path_factory: pytest.TempPathFactory,
    python_docs_sources: Path,
    smollm2_gguf: Callable[[str], Path],
) -> tuple[Path, Path, Path]:
    """(docs folder, data dir, model): the pages indexed with ``sr3desk index``."""
    base = tmp_path_factory.mktemp("cli-search-smollm2")
    docs, home = base / "docs", base / "home"
    docs.mkdir()
    for name in PAGES:
        text = (python_docs_sources / "library" / f"{name}.rst.txt").read_text(encoding="utf-8")
        (docs / f"{name}.rst.txt").write_text(_cut(text), encoding="utf-8")
    model = smollm2_gguf("Q4_K_M")
    assert main(["index", str(docs), "--db", str(home), "--model", str(model)]) == 0
    return docs, home, model


def search(
    indexed: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[dict[str, object], str]:
    """Run ``sr3desk search ARGS --json`` on the index; returns (JSON, stderr)."""
    _, home, model = indexed
    capsys.readouterr()
    code = main(["search", *args, "--db", str(home), "--model", str(model), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out), err


@pytest.mark.parametrize(
    ("query", "page"),
    [
        ("JSON encoder and decoder", "json"),
        ("universally unique identifiers RFC 4122", "uuid"),
        ("Unix style pathname pattern expansion", "glob"),
        ("read and write comma separated values", "csv"),
        ("secure hashes and message digests", "hashlib"),
    ],
)
def test_expected_file_first(
    indexed: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str], query: str, page: str
) -> None:
    docs, _, _ = indexed
    data, _ = search(indexed, capsys, query, "-k", "5")
    assert data["mode"] == "hybrid"
    results = data["results"]
    assert isinstance(results, list) and results
    assert results[0]["path"] == str(docs / f"{page}.rst.txt")
    assert all(os.path.isabs(r["path"]) for r in results)
    assert len({r["path"] for r in results}) == len(results)


def test_model_measured_on_this_index(
    indexed: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, home, _ = indexed
    search(indexed, capsys, "compressed file formats")
    cache = json.loads((home / "search-calibration.json").read_text(encoding="utf-8"))
    (entry,) = cache["models"].values()
    assert entry["source"] in ("calibration", "unmeasured")
    assert 0.0 <= entry["weight"] <= 1.0


def test_vector_mode(indexed: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    docs, _, _ = indexed
    data, _ = search(indexed, capsys, "JSON encoder and decoder", "--mode", "vector")
    assert data["mode"] == "vector"
    paths = [r["path"] for r in data["results"]]  # type: ignore[attr-defined]
    assert paths and set(paths) <= {str(docs / f"{name}.rst.txt") for name in PAGES}
