"""Chunking invariants on real documents and on random ones built from real text."""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from sr3desk.extract import Document, Limits, extract
from sr3desk.extract.base import TextBuilder
from sr3desk.index.chunking import ApproxCounter, Chunk, chunk_document


class Counts(Protocol):
    """Anything with ``count_tokens``: the real tokenizer, ApproxCounter, Metered."""

    def count_tokens(self, text: str) -> int: ...


class Metered:
    """Wraps a counter and records what it was asked to count."""

    def __init__(self, inner: Counts) -> None:
        self.inner = inner
        self.calls = 0
        self.chars = 0

    def count_tokens(self, text: str) -> int:
        self.calls += 1
        self.chars += len(text)
        return int(self.inner.count_tokens(text))


@pytest.fixture(scope="module")
def qwen(tiny_gguf: Path) -> Iterator[Counts]:
    """The real Qwen2 BPE tokenizer of the tiny test model (vocab only)."""
    from sr3desk.model.tokenizer import open_tokenizer

    tokenizer = open_tokenizer(tiny_gguf)
    yield tokenizer
    close = getattr(tokenizer, "close", None)
    if close is not None:
        close()


@pytest.fixture(scope="module")
def real_docs(python_docs_sources: Path, real_pdfs: list[Path]) -> list[Document]:
    files = sorted(python_docs_sources.rglob("*.rst.txt"))
    picked = random.Random(11).sample(files, 6)
    picked.append(python_docs_sources / "library" / "functions.rst.txt")
    picked.append(python_docs_sources.parent / "library" / "os.path.html")
    picked.append(next(p for p in real_pdfs if p.name == "R-FAQ.pdf"))
    return [extract(path) for path in picked]


@pytest.fixture(scope="module")
def paragraphs(python_docs_sources: Path) -> list[str]:
    """Real paragraphs (prose, code, tables) to build random documents from."""
    found: list[str] = []
    for name in ("tutorial/introduction.rst.txt", "library/re.rst.txt", "faq/design.rst.txt"):
        text = extract(python_docs_sources / name).text
        found.extend(p for p in text.split("\n\n") if p.strip())
    return found


def tokens(counter: Counts, text: str) -> int:
    return int(counter.count_tokens(text))


def check(
    doc: Document, chunks: list[Chunk], counter: Counts, max_tokens: int, overlap: int
) -> None:
    """Every promise chunk_document makes, checked against ``doc``."""
    text = doc.text
    minimum = max(4, max_tokens // 8)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    covered = 0
    page_starts = [p.start for p in doc.pages]
    heading_offsets = [h.offset for h in doc.headings]
    cuts = sorted({*heading_offsets, *page_starts, len(text)})
    paths: list[str] = []
    stack: list[tuple[int, str]] = []
    for h in doc.headings:
        while stack and stack[-1][0] >= h.level:
            stack.pop()
        stack.append((h.level, h.title))
        paths.append(" › ".join(t for _, t in stack))
    for i, chunk in enumerate(chunks):
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text and chunk.text == chunk.text.strip()
        real = tokens(counter, chunk.text)
        assert real <= max_tokens, (real, chunk.text[:80])
        assert chunk.tokens >= real  # the summed count never undercounts
        # Nothing but whitespace falls between chunks.
        assert not text[covered : chunk.start].strip(), text[covered : chunk.start][:80]
        covered = max(covered, chunk.end)
        if i:
            before = chunks[i - 1]
            assert before.start < chunk.start and before.end < chunk.end
            if chunk.start < before.end:  # overlap (hard breaks are checked below)
                assert tokens(counter, text[chunk.start : before.end]) <= overlap
        # The page is the one the chunk starts on.
        if doc.pages:
            k = max(bisect.bisect_right(page_starts, chunk.start) - 1, 0)
            assert chunk.page == doc.pages[k].number
        else:
            assert chunk.page is None
        # Hard breaks (headings, page starts) inside a chunk only next to a tiny section,
        # which was merged with its neighbour.
        for c in cuts:
            if chunk.start < c < chunk.end:
                at = cuts.index(c)
                head = tokens(counter, text[cuts[at - 1] : c]) if at else 0
                tail = tokens(counter, text[c : cuts[at + 1]])
                assert min(head, tail) <= minimum + 1, (chunk.ordinal, c, head, tail)
        # The heading path is the one in force where the chunk starts or at a heading
        # inside it (of the section holding most of the chunk).
        k = bisect.bisect_right(heading_offsets, chunk.start) - 1
        allowed = {paths[k] if k >= 0 else ""}
        allowed.update(
            paths[j] for j, h in enumerate(doc.headings) if chunk.start < h.offset < chunk.end
        )
        assert chunk.heading in allowed, (chunk.heading, allowed)
    assert not text[covered:].strip()


def random_document(rng: random.Random, paragraphs: list[str], paged: bool) -> Document:
    out = TextBuilder(Limits())
    page = 0
    for _ in range(rng.randint(1, 12)):
        if paged and (page == 0 or rng.random() < 0.5):
            page += 1
            out.start_page(page)
        if rng.random() < 0.7:
            out.heading(rng.choice(paragraphs)[:60], rng.randint(1, 3))
        for _ in range(rng.choice((0, 0, 1, 2, 4, 8))):
            roll = rng.random()
            if roll < 0.05:  # a run without a single space
                out.block("x" * rng.randint(500, 5000))
            elif roll < 0.1:  # one very long line of words
                out.block(" ".join(rng.choice(paragraphs) for _ in range(20)).replace("\n", " "))
            else:
                out.block(rng.choice(paragraphs))
    return out.build(Path("random.txt"), "text")


def test_random_documents_approx(paragraphs: list[str]) -> None:
    rng = random.Random(2024)
    counter = ApproxCounter()
    for case in range(120):
        doc = random_document(rng, paragraphs, paged=case % 2 == 1)
        max_tokens = rng.choice((16, 40, 64, 128, 256, 512))
        overlap = rng.randint(0, max_tokens // 2)
        check(doc, chunk_document(doc, counter, max_tokens, overlap), counter, max_tokens, overlap)


def test_random_documents_real_tokenizer(paragraphs: list[str], qwen: Counts) -> None:
    rng = random.Random(7)
    for case in range(25):
        doc = random_document(rng, paragraphs, paged=case % 2 == 0)
        max_tokens = rng.choice((32, 128, 256))
        overlap = rng.randint(0, max_tokens // 4)
        check(doc, chunk_document(doc, qwen, max_tokens, overlap), qwen, max_tokens, overlap)


def test_real_documents_real_tokenizer(real_docs: list[Document], qwen: Counts) -> None:
    total = 0
    for doc in real_docs:
        metered = Metered(qwen)
        chunks = chunk_document(doc, metered, 256, 32)
        total += len(chunks)
        check(doc, chunks, qwen, 256, 32)
        # Cost: the text is tokenized about once (plus overlaps), not per candidate cut.
        assert metered.chars <= 1.6 * len(doc.text), (doc.path, metered.chars / len(doc.text))
        # Consecutive chunks of one long section do overlap.
        shared = sum(1 for a, b in itertools.pairwise(chunks) if b.start < a.end)
        assert shared > 0 or len(chunks) < 10, doc.path
    assert total > 300


def test_structure_of_a_real_pdf(real_docs: list[Document], qwen: Counts) -> None:
    faq = next(d for d in real_docs if d.kind == "pdf")
    chunks = chunk_document(faq, qwen, 256, 32)
    what = next(c for c in chunks if "R is a system for statistical computation" in c.text)
    assert what.page == 7 and what.heading.endswith("What is R?")
    assert {c.page for c in chunks} >= set(range(5, 50))


def test_headings_and_pages_are_hard_breaks() -> None:
    out = TextBuilder(Limits())
    out.start_page(1)
    out.heading("Alpha", 1)
    out.block("alpha words " * 30)
    out.heading("Beta", 2)
    out.block("beta words " * 30)
    out.start_page(2)
    out.block("gamma words " * 30)
    doc = out.build(Path("x"), "pdf")
    chunks = chunk_document(doc, ApproxCounter(), 256, 32)
    assert [(c.page, c.heading, c.text.split()[0]) for c in chunks] == [
        (1, "Alpha", "Alpha"),
        (1, "Alpha › Beta", "Beta"),
        (2, "Alpha › Beta", "gamma"),
    ]


def test_bare_headings_and_tiny_pages_merge_forward() -> None:
    out = TextBuilder(Limits())
    out.heading("Library", 1)
    out.heading("Strings", 2)
    out.block("Strings are immutable sequences of Unicode code points. " * 3)
    doc = out.build(Path("x"), "rst")
    (chunk,) = chunk_document(doc, ApproxCounter(), 256, 32)
    assert chunk.text.startswith("Library\n\nStrings") and chunk.heading == "Library › Strings"

    out = TextBuilder(Limits())
    for number, body in ((1, "iii"), (2, "Real content of the second page. " * 12), (3, "17")):
        out.start_page(number)
        out.block(body)
    doc = out.build(Path("x"), "pdf")
    chunks = chunk_document(doc, ApproxCounter(), 256, 32)
    assert len(chunks) == 1 and chunks[0].page == 1 and chunks[0].text.endswith("17")


def test_monsters_without_breaks(qwen: Counts) -> None:
    out = TextBuilder(Limits())
    out.block("y" * 60_000)
    out.block("Ünïcödé " * 8_000)
    doc = out.build(Path("x"), "text")
    metered = Metered(qwen)
    chunks = chunk_document(doc, metered, 128, 16)
    check(doc, chunks, qwen, 128, 16)
    assert metered.chars <= 2.5 * len(doc.text)


def test_empty_documents_and_bad_arguments() -> None:
    blank = Document(path=Path("x"), kind="text", text=" \n\n \t")
    assert chunk_document(blank, ApproxCounter()) == []
    doc = Document(path=Path("x"), kind="text", text="some words")
    with pytest.raises(ValueError, match="max_tokens"):
        chunk_document(doc, ApproxCounter(), max_tokens=8)
    with pytest.raises(ValueError, match="overlap_tokens"):
        chunk_document(doc, ApproxCounter(), max_tokens=64, overlap_tokens=40)


def test_approx_counter_is_additive_and_close(real_docs: list[Document], qwen: Counts) -> None:
    approx = ApproxCounter()
    text = real_docs[0].text
    words = text.split(" ")
    assert approx.count_tokens(text) == sum(approx.count_tokens(" " + w) for w in words)
    ratio = approx.count_tokens(text) / tokens(qwen, text)
    assert 0.8 < ratio < 1.6, ratio
