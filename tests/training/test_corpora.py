"""Corpora from Debian packages: real samples, the cross-domain hold-out, and the manual
pages and info manuals that no build may read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.config import BuildConfig, ConfigError
from training.data.beir import load_beir
from training.data.build import CROSSDOMAIN, build_dataset
from training.data.corpora import (
    ReservedPathError,
    check_not_reserved,
    iter_corpus,
    reserved_copies,
)
from training.sources import iter_documents


@pytest.mark.parametrize(
    "path",
    [
        "/usr/share/man",
        "/usr/share/man/man1/ls.1.gz",
        "/usr/share/info",
        "/usr/share/info/gnuplot.info.gz",
        "/usr/local/share/man/man3/foo.3p",
        "/usr/share/doc/foo/examples/man8/bar.8",  # a manual-page folder anywhere
        "/tmp/copied.info-2.gz",
    ],
)
def test_reserved_paths_are_refused(path: str) -> None:
    with pytest.raises(ReservedPathError, match="reserved for evaluation"):
        check_not_reserved(path)


def test_no_build_reads_the_manual_pages(tmp_path: Path) -> None:
    for source in ("/usr/share/man", "/usr/share/info/"):
        with pytest.raises(ReservedPathError):
            list(iter_documents(source))
        with pytest.raises(ReservedPathError):
            build_dataset(BuildConfig(sources=[source]), tmp_path / "out")
    # A link in an ordinary folder that leads there is refused before anything is read.
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("An ordinary note about sorting lists in Python.\n")
    (folder / "grep.txt").symlink_to("/usr/share/man/man1/grep.1.gz")
    with pytest.raises(ReservedPathError, match=r"grep\.txt"):
        list(iter_documents(folder))
    assert check_not_reserved("/usr/share/doc/python3.11/html/_sources/library/os.rst.txt")


def test_package_corpora_read_real_samples() -> None:
    docs = dict(iter_corpus("python-docs", max_files=2))
    assert all(k.startswith("python-docs/") and k.endswith(".rst.txt") for k in docs)
    assert all(len(d.text) > 200 and d.headings for d in docs.values())
    [(key, manual)] = list(iter_corpus("r-manuals", max_files=1))
    assert key == "r-manuals/R-FAQ.pdf" and "R" in manual.text and len(manual.headings) > 10
    # Dictionaries: the headword is the heading, the text is the definition alone.
    for name in ("foldoc", "jargon"):
        entries = list(iter_corpus(name, max_files=20))
        assert len(entries) == 20
        for key, doc in entries:
            assert key.startswith(f"{name}/") and doc.headings[0].title == doc.title
            assert doc.title and not doc.text.startswith(doc.title)
    # Packages that ship the same text as an info manual say so (by dpkg, unread).
    assert "/usr/share/info/python3.11.info.gz" in reserved_copies("python-docs")
    assert reserved_copies("foldoc") == []


def test_build_holds_out_a_whole_corpus_and_gives_term_definition_pairs(tmp_path: Path) -> None:
    cfg = BuildConfig(
        corpora=["foldoc", "jargon"],
        crossdomain="jargon",
        max_files=40,
        chunk_tokens=96,
        miner="none",
        negatives=0,
        queries=["heading"],
    )
    manifest = build_dataset(cfg, tmp_path)
    docs = manifest["documents"]
    assert 30 <= len(docs[CROSSDOMAIN]) <= 40  # entries shorter than min_chars drop out
    assert all(k.startswith("jargon/") for k in docs[CROSSDOMAIN])
    assert all(k.startswith("foldoc/") for k in docs["train"] + docs["heldout"])
    assert not set(docs["train"]) & set(docs["heldout"])  # held out by document
    cross = load_beir(tmp_path / CROSSDOMAIN, "test")
    assert cross.queries and all(p.doc.startswith("jargon/") for p in cross.corpus.values())
    train = load_beir(tmp_path / "train", "train")
    # term -> definition: the query is the headword; the headword line is not in the passage.
    for qid, text in train.queries.items():
        for pid in train.qrels[qid]:
            assert train.corpus[pid].doc == f"foldoc/{text}"
            assert not train.corpus[pid].text.startswith(f"{text}\n")
    assert json.loads((tmp_path / "manifest.json").read_text())["reserved_copies"] == {}
    with pytest.raises(ConfigError, match=r"python3\.11\.info"):
        build_dataset(
            BuildConfig(corpora=["python-docs"], reserved_copies="refuse"), tmp_path / "no"
        )
    with pytest.raises(ConfigError, match="crossdomain"):
        BuildConfig(corpora=["foldoc"], crossdomain="gnuplot")
