"""``sr3desk search`` end to end: real documents indexed by ``sr3desk index`` with a GGUF model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pypdf
import pytest

from sr3desk.cli import main
from sr3desk.cli.search import BOLD, RESET, write_text
from sr3desk.search.types import FileResult, Passage, SearchResponse

PAGES = ("json", "csv", "base64", "gzip", "zlib", "hashlib", "uuid", "getpass", "shelve", "glob")
PDF_QUERY = "Emacs Speaks Statistics ESS"
OLD, NEW = 1_577_836_800.0, 1_704_067_200.0  # 2020-01-01, 2024-01-01 (UTC)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def indexed(
    tmp_path_factory: pytest.TempPathFactory,
    python_docs_sources: Path,
    real_pdfs: list[Path],
    tiny_gguf: Path,
) -> tuple[Path, Path]:
    """(docs folder, data dir): reST pages in docs/rst (dated 2020) and the R FAQ PDF
    in docs/pdf (dated 2024), indexed with ``sr3desk index`` and tiny-qwen2."""
    base = tmp_path_factory.mktemp("cli-search")
    docs, home = base / "docs", base / "home"
    (docs / "rst").mkdir(parents=True)
    (docs / "pdf").mkdir()
    for name in PAGES:
        target = docs / "rst" / f"{name}.rst.txt"
        shutil.copyfile(python_docs_sources / "library" / f"{name}.rst.txt", target)
        os.utime(target, (OLD, OLD))
    faq = docs / "pdf" / "R-FAQ.pdf"
    shutil.copyfile(real_pdfs[0], faq)
    os.utime(faq, (NEW, NEW))
    code = main(["index", str(docs), "--db", str(home), "--model", str(tiny_gguf)])
    assert code == 0
    return docs, home


@pytest.fixture
def search(
    indexed: tuple[Path, Path], tiny_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """Run ``sr3desk search`` on the index: search(query, *options, model=True)."""
    _, home = indexed

    def call(query: str, *options: str, model: bool = True) -> tuple[int, str, str]:
        args = ["search", query, "--db", str(home), *options]
        if model:
            args += ["--model", str(tiny_gguf)]
        return run(args, capsys)

    return call


def pages_with(pdf: Path, phrase: str) -> set[int]:
    """1-based pages of ``pdf`` whose text contains ``phrase`` (read with pypdf alone)."""
    reader = pypdf.PdfReader(pdf)
    return {
        i
        for i, page in enumerate(reader.pages, start=1)
        if phrase in " ".join((page.extract_text() or "").split())
    }


def test_json_shape_and_expected_pdf_page_first(
    indexed: tuple[Path, Path], search: Callable[..., tuple[int, str, str]]
) -> None:
    docs, _ = indexed
    code, out, _ = search(PDF_QUERY, "--json")
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"query", "mode", "took_ms", "results"}
    assert data["query"] == PDF_QUERY and data["mode"] == "hybrid"
    assert isinstance(data["took_ms"], float) and data["took_ms"] > 0
    results = data["results"]
    keys = {"path", "score", "page", "snippet", "chunk", "ocr"}
    assert results and all(set(r) == keys for r in results)
    assert all(os.path.isabs(r["path"]) for r in results)
    assert len({r["path"] for r in results}) == len(results)
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    first = results[0]
    faq = docs / "pdf" / "R-FAQ.pdf"
    assert first["path"] == str(faq)
    expected = pages_with(faq, "Emacs Speaks Statistics")
    assert expected and first["page"] in expected
    assert "Emacs" in first["snippet"] and first["snippet"].strip("…") in " ".join(
        first["chunk"].split()
    )


@pytest.mark.parametrize(
    ("query", "page"),
    [
        ("JSON encoder and decoder", "json"),
        ("universally unique identifiers RFC 4122", "uuid"),
        ("Unix style pathname pattern expansion", "glob"),
        ("compression compatible with gzip", "zlib"),
    ],
)
def test_expected_file_first(
    indexed: tuple[Path, Path], search: Callable[..., tuple[int, str, str]], query: str, page: str
) -> None:
    docs, _ = indexed
    code, out, _ = search(query, "--json", "-k", "3")
    assert code == 0
    results = json.loads(out)["results"]
    assert len(results) == 3
    assert results[0]["path"] == str(docs / "rst" / f"{page}.rst.txt")
    assert results[0]["page"] is None


def test_every_mode_with_model(
    indexed: tuple[Path, Path], search: Callable[..., tuple[int, str, str]]
) -> None:
    for mode in ("hybrid", "vector", "keyword"):
        code, out, _ = search("gzip file compression", "--json", "--mode", mode)
        assert code == 0
        data = json.loads(out)
        assert data["mode"] == mode and data["results"]


def test_reason_adds_the_reasoning(search: Callable[..., tuple[int, str, str]]) -> None:
    code, out, err = search("hash functions", "--json", "--reason", "-k", "2")
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"query", "mode", "took_ms", "results", "reasoning"}
    assert isinstance(data["reasoning"], str)
    # tiny-qwen2 carries no reasoned figures: it runs, and says so.
    assert "its reasoning has not been measured" in err


def test_deep_reranks_with_or_without_a_model(
    indexed: tuple[Path, Path], search: Callable[..., tuple[int, str, str]]
) -> None:
    docs, _ = indexed
    query = "turn binary data into printable text and back"
    for model in (True, False):
        code, out, _ = search(query, "--json", "--deep", "-k", "3", model=model)
        assert code == 0
        data = json.loads(out)
        assert data["deep"] is True and set(data["stages"]) == {"search", "rerank"}
        assert data["took_ms"] >= data["stages"]["rerank"] > 0
        assert data["results"][0]["path"] == str(docs / "rst" / "base64.rst.txt")
    code, out, _ = search(query, "-k", "3", "--deep", model=False)
    assert code == 0 and "re-ranked" in out


def test_deep_without_the_cross_encoder_says_why(
    search: Callable[..., tuple[int, str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SR3DESK_RERANKER", str(tmp_path / "nowhere"))
    code, out, err = search("gzip file compression", "--json", "--deep", model=False)
    assert code == 0
    data = json.loads(out)
    assert data["deep"] is False and data["results"]
    assert "sr3desk reranker install" in err


def test_keyword_search_without_model(
    indexed: tuple[Path, Path], search: Callable[..., tuple[int, str, str]]
) -> None:
    docs, _ = indexed
    code, out, err = search("JSON encoder and decoder", "--json", model=False)
    assert code == 0
    data = json.loads(out)
    assert data["mode"] == "keyword"
    assert data["results"][0]["path"] == str(docs / "rst" / "json.rst.txt")
    assert "no embedding model set" in err


@pytest.mark.parametrize("mode", ["hybrid", "vector"])
def test_model_modes_without_model_fail_clearly(
    search: Callable[..., tuple[int, str, str]], mode: str
) -> None:
    code, out, err = search("json", "--mode", mode, model=False)
    assert code == 2 and out == ""
    assert err.startswith("sr3desk: error: ") and "needs an embedding model" in err
    assert "--model" in err and err.count("\n") == 1


def test_filters(indexed: tuple[Path, Path], search: Callable[..., tuple[int, str, str]]) -> None:
    docs, _ = indexed

    def paths(*options: str) -> list[str]:
        code, out, _ = search("data file format", "--json", "-k", "20", *options)
        assert code == 0
        return [r["path"] for r in json.loads(out)["results"]]

    assert {Path(p).suffix for p in paths()} == {".txt", ".pdf"}
    assert paths("--type", "pdf") == [str(docs / "pdf" / "R-FAQ.pdf")]
    assert all(p.endswith(".rst.txt") for p in paths("--type", "txt,md"))
    rst = paths("--folder", str(docs / "rst"))
    assert rst and all(p.startswith(str(docs / "rst") + os.sep) for p in rst)
    assert paths("--after", "2023-06-01") == [str(docs / "pdf" / "R-FAQ.pdf")]
    before = paths("--before", "2021-01-01")
    assert before and all(p.endswith(".rst.txt") for p in before)
    assert paths("--after", "2030-01-01") == []


def test_bad_dates(search: Callable[..., tuple[int, str, str]]) -> None:
    with pytest.raises(SystemExit) as exc:
        search("x", "--after", "yesterday")
    assert exc.value.code == 2
    code, _, err = search("x", "--after", "2024-01-02", "--before", "2024-01-01")
    assert code == 2 and "earlier" in err


def test_text_output(
    indexed: tuple[Path, Path], search: Callable[..., tuple[int, str, str]]
) -> None:
    docs, _ = indexed
    code, out, _ = search(PDF_QUERY, "-k", "3")
    assert code == 0
    first = out.splitlines()[0]
    assert first.startswith(f" 1. {docs / 'pdf' / 'R-FAQ.pdf'}  page ")
    assert "(score " in first
    assert "\x1b[" not in out  # not a terminal: no escape codes
    assert "Emacs" in out and out.rstrip().endswith("(hybrid search)")
    code, out, _ = search("zzqqxxyy", "--mode", "keyword", model=False)
    assert code == 0 and out.startswith("No results for 'zzqqxxyy'")


def test_bold_highlights_on_a_terminal() -> None:
    passage = Passage("c", "Parsing JSON", "Parsing JSON", [(8, 12)], 3, 0, 12, "Intro", 0.5)
    result = FileResult("/d/a.pdf", "f", "pdf", "/d", 0.0, 1, 0.5, [passage])
    response = SearchResponse("json", "keyword", 1.0, [result])

    class Out:
        text = ""

        def write(self, s: str) -> None:
            self.text += s

    out = Out()
    write_text(response, out, bold=True)  # type: ignore[arg-type]
    assert f"Parsing {BOLD}JSON{RESET}" in out.text and "page 3" in out.text
    assert "    Intro\n" in out.text


def test_index_served_by_another_model(
    indexed: tuple[Path, Path],
    smollm2_gguf: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The index holds tiny-qwen2 vectors; asked to search with another model, the CLI
    # embeds the query with the model the index is served by and says so.
    docs, home = indexed
    other = smollm2_gguf("Q4_K_M")
    args = ["search", "JSON encoder", "--db", str(home), "--model", str(other), "--json"]
    code, out, err = run(args, capsys)
    assert code == 0
    assert "still served by" in err
    assert json.loads(out)["results"][0]["path"] == str(docs / "rst" / "json.rst.txt")


def test_entry_point(indexed: tuple[Path, Path], tiny_gguf: Path) -> None:
    docs, home = indexed
    proc = subprocess.run(
        [sys.executable, "-m", "sr3desk", "search", "JSON encoder and decoder", "--json"],
        env={**os.environ, "SR3DESK_HOME": str(home), "SR3DESK_MODEL": str(tiny_gguf)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["path"] == str(docs / "rst" / "json.rst.txt")
