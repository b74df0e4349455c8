"""The labelled sets of bench/realsets.py: the query line is gone from the indexed copy,
queries are unique, labels point at the written files, and a seed gives the same set.

The Debian packages of the sets (emacs-el, gnome-user-docs) are installed by
``make bench``, not ``make test``: their tests skip, naming the package, without them.
The parsers and the gnuplot loader run on small made-up inputs.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_realsets", ROOT / "bench" / "realsets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


realsets = _bench()


def _words(text: str) -> str:
    return " ".join(text.lower().split())


def check_labelled(labelled: object, n: int, marker: str) -> None:
    """The common contract: ``n`` unique queries of 3+ words, each labelling one
    written file that contains neither it nor ``marker`` (of the purpose line)."""
    queries: dict[str, str] = labelled.queries  # type: ignore[attr-defined]
    qrels: dict[str, set[str]] = labelled.qrels  # type: ignore[attr-defined]
    root: Path = labelled.root  # type: ignore[attr-defined]
    assert len(queries) == n
    assert len({_words(q) for q in queries.values()}) == n
    assert set(qrels) == set(queries)
    written = {str(p) for p in root.rglob("*") if p.is_file()}
    assert len(written) == n
    for qid, query in queries.items():
        assert len(query.split()) >= 3
        (path,) = qrels[qid]
        assert path in written
        text = Path(path).read_text(encoding="utf-8")
        assert _words(query) not in _words(text)
        assert marker not in text


def _emacs_lisp() -> Path:
    try:
        return Path(realsets.emacs_lisp_dir())
    except realsets.MissingSource as exc:
        pytest.skip(f"{exc} (make bench does)")


def _gnome_help() -> Path:
    if not any(realsets.GNOME_HELP.glob("*.page")):
        pytest.skip(f"{realsets.GNOME_HELP} is missing: install Debian's gnome-user-docs")
    return Path(realsets.GNOME_HELP)


def test_emacs_lisp_set(tmp_path: Path) -> None:
    lisp = _emacs_lisp() / "progmodes"  # one folder: a few seconds for the whole package
    labelled = realsets.emacs_lisp_set(tmp_path / "a", n_docs=6, max_chars=2000, sources=lisp)
    check_labelled(labelled, 6, "-*- lexical-binding")
    for path in labelled.root.rglob("*.el"):
        text = path.read_text(encoding="utf-8")
        assert len(text) <= 2000
        assert realsets.emacs_library(text) is None  # no ";;; name.el --- ..." line
        assert "General Public License" not in text and ";;; Commentary" in text
    again = realsets.emacs_lisp_set(tmp_path / "b", n_docs=6, max_chars=2000, sources=lisp)
    assert again.queries == labelled.queries
    other = realsets.emacs_lisp_set(tmp_path / "c", 6, 2000, seed=1, sources=lisp)
    assert other.queries != labelled.queries


def test_gnome_help_set(tmp_path: Path) -> None:
    labelled = realsets.gnome_help_set(
        tmp_path / "a", n_docs=8, max_chars=2000, sources=_gnome_help()
    )
    check_labelled(labelled, 8, "<desc>")
    for path in labelled.root.glob("*.md"):
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# ") and "<" not in text.split("\n", 1)[0]
    again = realsets.gnome_help_set(tmp_path / "b", n_docs=8, max_chars=2000)
    assert again.queries == labelled.queries


def test_sync_folder_keeps_unchanged_files_and_drops_others(tmp_path: Path) -> None:
    realsets.sync_folder(tmp_path, {"a.txt": "one", "sub/b.txt": "two"})
    before = (tmp_path / "a.txt").stat().st_mtime_ns
    realsets.sync_folder(tmp_path, {"a.txt": "one", "c.txt": "three"})
    assert (tmp_path / "a.txt").stat().st_mtime_ns == before
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.txt", "c.txt"]


def test_emacs_library_drops_header_and_licence() -> None:
    source = (
        ";;; demo.el --- Show a demo of things  -*- lexical-binding:t -*-\n\n"
        ";; Copyright (C) 2020 Free Software Foundation, Inc.\n\n"
        ";; Author: A. Person\n;; Keywords: demo\n\n"
        ";; This file is part of GNU Emacs.\n\n"
        ";; GNU Emacs is free software: you can redistribute it\n\n"
        ";;; Commentary:\n\n;; Demonstrates. This file is free software, it says.\n\n"
        ";;; Code:\n\n(provide 'demo)\n"
    )
    desc, doc = realsets.emacs_library(source)
    assert desc == "Show a demo of things"
    assert doc.startswith(";; Author: A. Person")
    assert "Copyright" not in doc and "part of GNU Emacs" not in doc
    assert "free software, it says" in doc  # only the notices before the Commentary go
    assert realsets.emacs_library(";; no header\n") is None


MALLARD = """<page xmlns="http://projectmallard.org/1.0/"
      xmlns:if="http://projectmallard.org/if/1.0/" type="topic" id="demo">
  <info>
    <desc>Print <gui>several</gui> pages on one sheet.</desc>
    <link type="guide" xref="printing"/>
  </info>
  <title>Print pages</title>
  <p>See <link xref="other"/> first. Press <keyseq><key>Ctrl</key><key>P</key></keyseq>.</p>
  <comment><p>Editors' note, not shown.</p></comment>
  <if:choose>
    <if:when test="platform:classic"><p>Classic text.</p></if:when>
    <p>Default text.</p>
  </if:choose>
  <steps>
    <item><p>Open the dialog.</p></item>
    <item><p>Choose a layout.</p></item>
  </steps>
  <section id="s"><title>Notes</title><p>A note.</p></section>
</page>
"""


def test_mallard_page_as_markdown(tmp_path: Path) -> None:
    page = tmp_path / "demo.page"
    page.write_text(MALLARD, encoding="utf-8")
    page_id, desc, text = realsets.mallard_page(page, {"other": "Other page"})
    assert (page_id, desc) == ("demo", "Print several pages on one sheet")
    assert text.splitlines()[0] == "# Print pages"
    assert "See Other page first. Press Ctrl+P." in text
    assert "Default text." in text and "Classic text." not in text
    assert "1. Open the dialog." in text and "2. Choose a layout." in text
    assert "## Notes" in text and "A note." in text
    assert "several pages" not in text and "Editors' note" not in text


def _beir(folder: Path, passages: int, queries: int) -> None:
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(passages):
            row = {"_id": f"gnuplot/gnuplot.pdf#{i}", "title": "", "text": f"passage {i} text"}
            fh.write(json.dumps(row) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(queries):
            fh.write(json.dumps({"_id": f"x{i}", "text": f"query number {i}"}) + "\n")
    lines = ["query-id\tcorpus-id\tscore"]
    for i in range(queries):
        lines += [f"x{i}\tgnuplot/gnuplot.pdf#{i}\t1", f"x{i}\tgnuplot/gnuplot.pdf#{i + 1}\t1"]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_gnuplot_set_from_beir(tmp_path: Path) -> None:
    _beir(tmp_path / "beir", passages=12, queries=8)
    labelled = realsets.gnuplot_set(tmp_path / "docs", tmp_path / "beir", n_queries=5, seed=0)
    files = sorted(p.name for p in labelled.root.iterdir())
    assert len(files) == 12 and files[0] == "passage-0000.txt"  # the corpus is whole
    assert len(labelled.queries) == 5 == len(set(labelled.queries.values()))
    for qid, paths in labelled.qrels.items():
        n = int(qid[1:])
        assert {Path(p).name for p in paths} == {f"passage-{n:04d}.txt", f"passage-{n + 1:04d}.txt"}
        assert all(Path(p).is_file() for p in paths)
    again = realsets.gnuplot_set(tmp_path / "docs2", tmp_path / "beir", n_queries=5, seed=0)
    assert again.queries == labelled.queries


def test_crossdomain_config_is_the_recipes(tmp_path: Path) -> None:
    from training.config import read_yaml

    recipe = read_yaml(realsets.CPU_RECIPE)["data"]["build"]
    cfg = realsets.crossdomain_config(tmp_path)
    assert cfg.corpora == [recipe["crossdomain"]] and cfg.crossdomain == recipe["crossdomain"]
    for key in ("chunk_tokens", "overlap_tokens", "min_chars", "queries", "cloze_keep", "seed"):
        assert getattr(cfg, key) == recipe[key]
    assert cfg.max_queries_per_document == recipe["max_queries_per_document"]
    assert Path(cfg.tokenizer) == ROOT / recipe["tokenizer"]
    assert not cfg.uses_teacher and cfg.negatives == 0
    assert len(list((tmp_path / "stubs").iterdir())) == 2
