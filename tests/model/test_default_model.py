"""The shipped default model: a small delta in the repository, rebuilt by `make models`
into the GGUF the app runs, carrying its held-out figures, and trained for search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sr3desk.model.ggufinfo import inspect_gguf
from sr3desk.search.calibration import from_eval
from sr3desk.search.reasoning import reasoning_verdict
from training.delta import reference
from training.delta.manifest import FILES, MAX_BYTES, Manifest

NAME = "smollm2-sr3-cpu"
ASSET = Path(__file__).resolve().parents[2] / "assets" / "models" / NAME


@pytest.fixture(scope="module")
def default_gguf(smollm2_dir: Path) -> Path:
    path = smollm2_dir.parent / NAME / f"{NAME}.Q8_0.gguf"  # beside its base
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make models`")
    return path


def test_the_committed_delta_is_small() -> None:
    sizes = {name: (ASSET / name).stat().st_size for name in FILES}
    assert sum(sizes.values()) <= MAX_BYTES, sizes


def test_the_default_model_carries_its_name_and_held_out_figures(default_gguf: Path) -> None:
    info = inspect_gguf(default_gguf)
    manifest = Manifest.read(ASSET)
    assert info.name == NAME and info.stage == manifest.stage
    assert info.eval is not None and info.eval == manifest.eval
    weight = from_eval(info.eval)
    assert weight is not None and weight.weight > 0  # in its own domain its vectors help
    # Figures from its training domain are not evidence about a user's index.
    assert from_eval(info.eval, index="/home/someone/.local/share/sr3desk") is None
    # Its reasoning was measured with the plain queries, and it does not help.
    verdict = reasoning_verdict(info.eval)
    assert verdict.measured and not verdict.helps and verdict.budget == 40


def test_the_quantized_model_stays_close_to_the_reference_vectors(default_gguf: Path) -> None:
    manifest = Manifest.read(ASSET)
    want = np.load(ASSET / "reference.npy")
    got = reference.embed(default_gguf, manifest.references, threads=2)
    assert reference.cosines(got, want).min() >= 0.99  # Q8_0; F16 is checked at 0.999


def test_each_reference_query_finds_its_document_first_by_a_clear_margin(
    default_gguf: Path,
) -> None:
    """The five queries against the seven documents. The untrained base ranks them
    right too, but its vectors all point one way (cosines 0.88-0.98, margins under
    0.04); the trained model's own document leads the next one by 0.16 or more."""
    manifest = Manifest.read(ASSET)
    vectors = reference.embed(default_gguf, manifest.references, threads=2)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    kinds = [r.kind for r in manifest.references]
    docs = vectors[[k == "document" for k in kinds]]
    queries = vectors[[k == "query" for k in kinds]]
    scores = queries @ docs.T
    # plot -> gnuplot lines, regression -> lm(), hash table, bird -> heron, fee -> invoices
    want = [3, 4, 1, 0, 5]
    assert list(np.argmax(scores, axis=1)) == want
    for row, doc in zip(scores, want, strict=True):
        assert row[doc] - np.delete(row, doc).max() >= 0.1, row
