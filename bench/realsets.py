"""Labelled search sets from real text, none of it trained on: one line per document
written by its authors says what the document is about; that line is the query.

Each builder copies a seeded sample of documents into a folder with the purpose
line taken out (so the query is a description in other words, never a line of the
indexed copy) and labels one query per document:

* :func:`emacs_lisp_set`: GNU Emacs's Lisp libraries (Debian ``emacs-el``). Every
  library opens with ``;;; name.el --- One-line description``; the document is the
  rest of the file without its licence boilerplate, which leaves the author's
  Commentary (prose) and the start of the code. Libraries with little commentary
  are left out.
* :func:`gnome_help_set`: the GNOME desktop's user help (Debian ``gnome-user-docs``,
  Mallard pages). Each topic page has a ``<desc>``, the one line the help browser
  shows under the page's title in lists and search results; the document is the
  page as Markdown (title, sections, steps) without it.
* :func:`gnuplot_set`: the CPU training recipe's cross-domain test set (the gnuplot
  manual, held out whole from training), built by the recipe's own code
  (:func:`build_crossdomain`): every corpus passage is a file, its heading and cloze
  queries point at them.

The Python docs set (:func:`bench.search_quality.python_docs_set`) is the fourth;
``bench/search_sets.py`` runs them all. None of these texts is in the training
corpora (training/data/corpora.py: R manuals, FOLDOC, Jargon File; gnuplot only as
this held-out set). The packages: ``make bench`` installs them (``BENCH_PKGS``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.search_quality import LabelledSet, _cut  # noqa: E402

EMACS_ROOT = Path("/usr/share/emacs")
GNOME_HELP = Path("/usr/share/help/C/gnome-help")
CPU_RECIPE = ROOT / "training" / "configs" / "smollm2-135m-cpu.yaml"

MIN_QUERY_WORDS = 3
EMACS_MIN_COMMENTARY = 600  # characters of commentary: prose, not a code listing
GNOME_MIN_BODY = 400  # characters of page text besides the title: not a list of links


class MissingSource(RuntimeError):
    """The Debian package a set is built from is not installed (the message names it)."""


def _words(text: str) -> str:
    """Lower case, whitespace collapsed: how a query is compared with a document."""
    return " ".join(text.lower().split())


def _purpose(line: str) -> str:
    """A purpose line as a query: whitespace collapsed, no final full stop."""
    return " ".join(line.split()).rstrip(".").strip()


def _sample(items: list[Any], n: int, seed: int) -> list[Any]:
    """A seeded sample of ``n`` items in their original order (all when fewer)."""
    if n >= len(items):
        return list(items)
    keep = set(random.Random(seed).sample(range(len(items)), n))
    return [item for i, item in enumerate(items) if i in keep]


def sync_folder(dest: Path, files: dict[str, str]) -> Path:
    """Make ``dest`` hold exactly ``files`` (relative path -> text); returns ``dest`` resolved.

    A file whose text is unchanged is not written again (its mtime stays, so a
    re-run finds the index up to date), and files of an earlier, other choice are
    removed (they would be distractors that the labels do not know about).
    """
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    for rel, text in files.items():
        target = root / rel
        data = text.encode("utf-8")
        if target.is_file() and target.read_bytes() == data:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    wanted = {root / rel for rel in files}
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file() and path not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return root


def _labelled(dest: Path, docs: list[tuple[str, str, str]]) -> LabelledSet:
    """Write (relative path, text, query) documents to ``dest``: one query each."""
    root = sync_folder(dest, {rel: text for rel, text, _q in docs})
    out = LabelledSet(root)
    for i, (rel, _text, query) in enumerate(docs):
        qid = f"q{i:03d}"
        out.queries[qid] = query
        out.qrels[qid] = {str(root / rel)}
    return out


def _keep(
    candidates: Iterable[tuple[str, str, str]], n_docs: int, max_chars: int | None, seed: int
) -> list[tuple[str, str, str]]:
    """Leave out short, repeated and copied queries; sample; cut.

    ``candidates``: (relative path, whole document, query), sorted by path. A query
    shared by two documents is dropped from both (it cannot tell them apart).
    """
    rows = [c for c in candidates if len(c[2].split()) >= MIN_QUERY_WORDS]
    rows = [c for c in rows if _words(c[2]) not in _words(c[1])]
    counts: dict[str, int] = {}
    for _rel, _text, query in rows:
        counts[query.lower()] = counts.get(query.lower(), 0) + 1
    rows = [c for c in rows if counts[c[2].lower()] == 1]
    return [(rel, _cut(text, max_chars), q) for rel, text, q in _sample(rows, n_docs, seed)]


# -- Emacs Lisp libraries -----------------------------------------------------------

_EL_HEADER = re.compile(r"^;;;\s*(?P<name>\S+?)\s+---\s+(?P<desc>.*?)\s*(?:-\*-.*-\*-)?\s*$")
_EL_SECTION = re.compile(r";;;\s*(?:Commentary|Code)\b")
_EL_COMMENTARY = re.compile(r"^;;;\s*Commentary:?[^\n]*\n(.*?)^;;;\s*Code:", re.M | re.S)
# Paragraphs of the licence and copyright notice: the same words in every library.
_EL_BOILERPLATE = re.compile(
    r"free software|WITHOUT ANY WARRANTY|General Public License|is part of GNU Emacs"
    r"|^;+\s*Copyright\b|gnu\.org/licenses",
    re.I | re.M,
)


def emacs_lisp_dir() -> Path:
    """The folder of Emacs's Lisp libraries (``/usr/share/emacs/VERSION/lisp``).

    Raises :class:`MissingSource` naming the package when there is none.
    """
    found = sorted(EMACS_ROOT.glob("[0-9]*/lisp"))
    if not found or not any(found[-1].rglob("*.el.gz")):
        raise MissingSource(f"no Emacs Lisp sources under {EMACS_ROOT}: install Debian's emacs-el")
    return found[-1]


def _comment_prose(text: str) -> str:
    """Comment lines as prose: the leading semicolons taken off."""
    return "\n".join(re.sub(r"^\s*;+ ?", "", line) for line in text.splitlines())


def emacs_library(text: str) -> tuple[str, str] | None:
    """(description, document) of one library's source, or None without a header line.

    The document is the source without its first line and without the licence and
    copyright paragraphs.

    >>> emacs_library(";;; a.el --- Do a thing  -*- lexical-binding:t -*-\\n\\n;; Hi.\\n")
    ('Do a thing', ';; Hi.\\n')
    """
    first, _, rest = text.partition("\n")
    m = _EL_HEADER.match(first)
    if not m or not m.group("desc").strip():
        return None
    kept: list[str] = []
    head = True  # the notices come before the Commentary (or the Code)
    for paragraph in re.split(r"\n[ \t]*\n", rest.strip("\n")):
        head = head and not _EL_SECTION.match(paragraph)
        if not (head and _EL_BOILERPLATE.search(paragraph)):
            kept.append(paragraph)
    return _purpose(m.group("desc")), "\n\n".join(kept).strip("\n") + "\n"


def _emacs_candidates(lisp: Path) -> Iterator[tuple[str, str, str]]:
    for path in sorted(lisp.rglob("*.el.gz")):
        with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        found = emacs_library(text)
        if found is None:
            continue
        desc, doc = found
        commentary = _EL_COMMENTARY.search(doc)
        if not commentary or len(_comment_prose(commentary.group(1)).strip()) < (
            EMACS_MIN_COMMENTARY
        ):
            continue
        yield str(path.relative_to(lisp))[: -len(".gz")], doc, desc


def emacs_lisp_set(
    dest: Path,
    n_docs: int = 150,
    max_chars: int | None = 2000,
    seed: int = 0,
    sources: Path | None = None,
) -> LabelledSet:
    """Emacs Lisp libraries: query = the library's one-line description.

    Takes the folder to fill, the number of libraries (a seeded choice among the
    ~460 with at least 600 characters of commentary and a description of 3 words
    or more, not found in the library itself), the length to cut each to (at a
    paragraph break) and the Lisp folder (default: the installed Emacs's). Returns
    the labelled set; raises :class:`MissingSource` when emacs-el is not installed.
    """
    lisp = sources or emacs_lisp_dir()
    # Compared with the whole library (not the cut copy) without the comment markers
    # between lines: a description found anywhere in it is left out.
    rows = [
        (rel, doc, desc)
        for rel, doc, desc in _emacs_candidates(lisp)
        if _words(desc) not in _words(_comment_prose(doc))
    ]
    return _labelled(dest, _keep(rows, n_docs, max_chars, seed))


# -- GNOME Help (Mallard) -----------------------------------------------------------

_MAL = "{http://projectmallard.org/1.0/}"
_IF = "{http://projectmallard.org/if/1.0/}"
# Not part of the reader's text: metadata, editors' comments, images, link lists.
_SKIP = {f"{_MAL}{t}" for t in ("info", "comment", "media", "links", "desc")}
_BLOCKS = {
    f"{_MAL}{t}"
    for t in ("p", "code", "screen", "example", "quote", "note", "figure", "synopsis", "tr")
}
_LISTS = {f"{_MAL}{t}" for t in ("list", "steps", "terms", "tree")}


def _inline(elem: ET.Element, titles: dict[str, str]) -> str:
    """The text of an element and its inline children, as a reader sees it."""
    if elem.tag == f"{_MAL}keyseq":
        keys = [_inline(k, titles).strip() for k in elem]
        text = "+".join(k for k in keys if k) or (elem.text or "")
    elif elem.tag == f"{_MAL}tr":
        cells = [" ".join(_inline(c, titles).split()) for c in elem]
        text = " | ".join(c for c in cells if c)
    else:
        parts = [elem.text or ""]
        for child in elem:
            if child.tag not in _SKIP:
                parts.append(_inline(child, titles))
            parts.append(child.tail or "")
        text = "".join(parts)
        if elem.tag == f"{_MAL}link" and not text.strip():
            # An empty link shows the title of the page it points to.
            text = titles.get(str(elem.get("xref", "")).split("#")[0], "")
    return text


def _render(elem: ET.Element, level: int, titles: dict[str, str], out: list[str]) -> None:
    """Append ``elem``'s block-level content to ``out`` as Markdown paragraphs."""
    for child in elem:
        tag = child.tag
        if tag in _SKIP or not isinstance(tag, str):
            continue
        if tag == f"{_IF}choose":
            # The first branch whose test holds is shown; render the default (an
            # untested branch) when there is one, else the first branch.
            branches = [c for c in child if c.tag != f"{_IF}when"]
            chosen = branches or list(child)[:1]
            for branch in chosen:
                _render(branch if branch.tag.startswith(_IF) else _wrap(branch), level, titles, out)
        elif tag.startswith(_IF):
            _render(child, level, titles, out)
        elif tag == f"{_MAL}title":
            out.append("#" * level + " " + " ".join(_inline(child, titles).split()))
        elif tag == f"{_MAL}section":
            _render(child, level + 1, titles, out)
        elif tag in _LISTS:
            _render_list(child, titles, out)
        elif tag in _BLOCKS:
            if any(c.tag in _BLOCKS or c.tag in _LISTS for c in child):
                _render(child, level, titles, out)
            else:
                text = " ".join(_inline(child, titles).split())
                if text:
                    out.append(text)
        else:
            _render(child, level, titles, out)


def _wrap(elem: ET.Element) -> ET.Element:
    holder = ET.Element("holder")
    holder.append(elem)
    return holder


def _render_list(elem: ET.Element, titles: dict[str, str], out: list[str]) -> None:
    steps = elem.tag == f"{_MAL}steps"
    items = [c for c in elem if c.tag == f"{_MAL}item"]
    for n, item in enumerate(items, 1):
        inner: list[str] = []
        for child in item:
            if child.tag == f"{_MAL}title":
                inner.append(" ".join(_inline(child, titles).split()) + ":")
            elif child.tag in _LISTS:
                sub: list[str] = []
                _render_list(child, titles, sub)
                inner.append("\n".join("  " + line for line in sub))
            else:
                block: list[str] = []
                _render(_wrap(child), 2, titles, block)
                inner.extend(block)
        if inner:
            mark = f"{n}." if steps else "-"
            out.append(f"{mark} " + " ".join(inner))


def mallard_page(path: Path, titles: dict[str, str] | None = None) -> tuple[str, str, str]:
    """(page id, desc, Markdown of the page without its desc) of one Mallard page."""
    root = ET.parse(path).getroot()
    titles = titles or {}
    info = root.find(f"{_MAL}info")
    desc_elem = info.find(f"{_MAL}desc") if info is not None else None
    desc = _inline(desc_elem, titles) if desc_elem is not None else ""
    out: list[str] = []
    _render(root, 1, titles, out)
    return str(root.get("id", path.stem)), _purpose(desc), "\n\n".join(out) + "\n"


def _page_titles(pages: list[Path]) -> dict[str, str]:
    titles = {}
    for path in pages:
        root = ET.parse(path).getroot()
        title = root.find(f"{_MAL}title")
        if title is not None:
            titles[str(root.get("id", path.stem))] = " ".join("".join(title.itertext()).split())
    return titles


def gnome_help_set(
    dest: Path,
    n_docs: int = 150,
    max_chars: int | None = 2000,
    seed: int = 0,
    sources: Path = GNOME_HELP,
) -> LabelledSet:
    """GNOME desktop help pages: query = the page's ``<desc>`` line.

    Takes the folder to fill, the number of pages (a seeded choice among the
    pages with at least 400 characters besides their title and a desc of 3 words
    or more, not found in the page), the length to cut each page to and the
    Mallard folder. Returns the labelled set (pages as ``ID.md``); raises
    :class:`MissingSource` when gnome-user-docs is not installed.
    """
    pages = sorted(sources.glob("*.page"))
    if not pages:
        raise MissingSource(f"no Mallard pages in {sources}: install Debian's gnome-user-docs")
    titles = _page_titles(pages)
    rows = []
    for path in pages:
        page_id, desc, text = mallard_page(path, titles)
        body = text.split("\n", 1)[1] if "\n" in text else ""
        if len(body.strip()) >= GNOME_MIN_BODY:
            rows.append((f"{page_id}.md", text, desc))
    return _labelled(dest, _keep(rows, n_docs, max_chars, seed))


# -- gnuplot: the training recipe's cross-domain set --------------------------------

# Two placeholder training documents: the recipe's build writes the cross-domain set
# beside a training split, and refuses to run with fewer than two training documents.
_STUBS = {
    "stub-a.txt": "Placeholder training document, not evaluated. " * 6,
    "stub-b.txt": "Another placeholder training document, thrown away with the split. " * 4,
}


@dataclass(frozen=True)
class CrossDomainBuild:
    """Where the cross-domain BEIR set is, its build's manifest, and the build's seconds
    (0.0 when an earlier build with the same settings was reused)."""

    folder: Path
    manifest: dict[str, Any]
    seconds: float


def crossdomain_config(out: Path, config: Path = CPU_RECIPE) -> Any:
    """The recipe's ``data.build`` restricted to its cross-domain corpus (a BuildConfig).

    Everything that shapes the cross-domain passages and queries is the recipe's
    (chunking, tokenizer, query kinds, seed); the training side is two placeholder
    documents under ``out/stubs`` with no teacher and no negatives, so nothing but
    the held-out corpus is read and no model is run.
    """
    from training.config import BuildConfig, ConfigError, from_mapping, read_yaml

    tree = dict(read_yaml(config).get("data", {}).get("build", {}) or {})
    name = str(tree.get("crossdomain", ""))
    if not name:
        raise ConfigError(f"{config} has no data.build.crossdomain: no cross-domain set to build")
    stubs = out / "stubs"
    sync_folder(stubs, _STUBS)
    tokenizer = str(tree.get("tokenizer", ""))
    if tokenizer and not Path(tokenizer).is_absolute():
        tokenizer = str(ROOT / tokenizer)
    tree.update(
        sources=[str(stubs.resolve())],
        corpora=[name],
        corpus_sample=[],
        miner="none",
        negatives=0,
        teacher_filter_k=0,
        teacher_vectors=False,
        tokenizer=tokenizer,
    )
    return from_mapping(BuildConfig, tree)


def build_crossdomain(out: Path, config: Path = CPU_RECIPE) -> CrossDomainBuild:
    """Build (or reuse) the recipe's cross-domain BEIR set under ``out``.

    Runs :func:`training.data.build.ensure_dataset` with :func:`crossdomain_config`:
    the same code and settings as ``make train``'s data stage, so the set is the one
    the recipe evaluates on (2,529 gnuplot passages for the CPU recipe). Returns
    where it is (``out/crossdomain``, qrels/test.tsv), the manifest and the seconds.
    Raises ValueError naming gnuplot-doc when it is not installed.
    """
    from training.data.build import CROSSDOMAIN, ensure_dataset, read_manifest

    cfg = crossdomain_config(out, config)
    before = read_manifest(out)
    t0 = time.perf_counter()
    manifest = ensure_dataset(cfg, out)
    seconds = time.perf_counter() - t0
    assert manifest is not None  # the config names a corpus
    reused = before is not None and before == manifest
    return CrossDomainBuild(out / CROSSDOMAIN, manifest, 0.0 if reused else seconds)


def gnuplot_set(
    dest: Path, beir: Path, n_queries: int = 150, seed: int = 0, split: str = "test"
) -> LabelledSet:
    """A BEIR set as files: every corpus passage becomes ``passage-NNNN.txt`` in ``dest``.

    Takes the folder to fill, the BEIR folder (from :func:`build_crossdomain`), the
    number of queries (a seeded sample of the judged ones, chosen as ``python -m
    training.eval --sample-queries`` chooses them; 0: all) and the seed. The corpus
    is always whole, as in the recipe's evaluation. Returns the labelled set.
    """
    from training.data.beir import load_beir
    from training.eval import select_queries

    data = load_beir(beir, split)
    names = {pid: f"passage-{i:04d}.txt" for i, pid in enumerate(data.corpus)}
    files = {names[pid]: entry.full_text + "\n" for pid, entry in data.corpus.items()}
    root = sync_folder(dest, files)
    out = LabelledSet(root)
    for qid in select_queries(data.judged_queries(), 0, n_queries, seed):
        out.queries[qid] = data.queries[qid]
        out.qrels[qid] = {
            str(root / names[pid])
            for pid, rel in data.qrels[qid].items()
            if rel > 0 and pid in names
        }
    return out


# -- what the sets are ---------------------------------------------------------------


def set_digest(labelled: LabelledSet) -> str:
    """A short hash of the set's files (names and sizes) and labels: an index built from
    the same digest holds the same documents."""
    h = hashlib.sha256()
    for path in sorted(p for p in labelled.root.rglob("*") if p.is_file()):
        h.update(f"{path.relative_to(labelled.root)}\0{path.stat().st_size}\n".encode())
    h.update(json.dumps(labelled.queries, sort_keys=True).encode())
    return h.hexdigest()[:16]


Builder = Callable[[Path, int, int | None, int], LabelledSet]
"""A set's builder: (folder to fill, documents, characters to cut each to, seed)."""

__all__ = [
    "CPU_RECIPE",
    "CrossDomainBuild",
    "LabelledSet",
    "MissingSource",
    "build_crossdomain",
    "crossdomain_config",
    "emacs_library",
    "emacs_lisp_dir",
    "emacs_lisp_set",
    "gnome_help_set",
    "gnuplot_set",
    "mallard_page",
    "set_digest",
    "sync_folder",
]
