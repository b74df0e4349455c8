"""Reference vectors: fixed texts embedded by the app's runtime, then checked after apply.

A delta stores the vectors its base + delta model gives for a dozen fixed documents and
queries (the reasoning-free paths), computed from the F16 GGUF with
:func:`sr3desk.model.runtime.open_embedder`. Applying the delta rebuilds that GGUF and
must reproduce every vector: a tampered delta, a different base or a runtime that reads
the model differently shows up as a low cosine, named with its text.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.delta.manifest import DeltaError, Reference

MIN_COSINE = 0.999

# Short and varied: prose, definitions, code, a formula, numbers; the queries are
# what someone would type into the search box.
TEXTS: tuple[Reference, ...] = (
    Reference("document", "The heron stood motionless in the shallow water, waiting for a fish."),
    Reference(
        "document",
        "A hash table maps keys to values by computing an index into an array of buckets.",
    ),
    Reference("document", "def area(r):\n    return 3.14159 * r ** 2\n"),
    Reference(
        "document",
        "set logscale y\nplot 'data.dat' using 1:2 with linespoints title 'measured'",
    ),
    Reference(
        "document",
        "lm() fits linear models; summary() of the fit reports coefficients and R-squared.",
    ),
    Reference(
        "document",
        "Invoices are due within 30 days. Late payments incur a 2% monthly charge.",
    ),
    Reference("document", "Kernel panic: the system halted after an unrecoverable fault."),
    Reference("query", "how do I draw a plot with a logarithmic axis"),
    Reference("query", "fit a linear regression model in R"),
    Reference("query", "what is a hash table"),
    Reference("query", "bird that stands in water"),
    Reference("query", "late payment fee"),
)


def embed(gguf: Path, references: Sequence[Reference], threads: int | None = None) -> np.ndarray:
    """Vectors of ``references`` from the GGUF through the app's runtime.

    Returns float32 (len(references), dim), unit rows, in the given order.
    """
    from sr3desk.model.runtime import open_embedder

    out: list[np.ndarray] = []
    with open_embedder(gguf, threads=threads) as emb:
        for ref in references:
            if ref.kind == "document":
                out.append(emb.embed_documents([ref.text])[0])
            elif ref.kind == "query":
                out.append(emb.embed_query(ref.text, reason=False).vector)
            else:
                raise DeltaError(f"Unknown reference kind {ref.kind!r}; use document or query")
    return np.stack(out).astype(np.float32)


def cosines(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (n, dim) arrays."""
    dots = np.sum(got * want, axis=1)
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
    return np.asarray(dots / np.maximum(norms, 1e-12), dtype=np.float64)


def check(
    got: np.ndarray, want: np.ndarray, references: Sequence[Reference], what: str
) -> np.ndarray:
    """Fail unless every row of ``got`` has cosine >= MIN_COSINE with ``want``'s.

    ``what`` names the model in the message. Returns the cosines; raises DeltaError
    naming the worst text and its cosine (and how many fall short).
    """
    if got.shape != want.shape:
        raise DeltaError(
            f"{what} gives vectors of shape {got.shape}, the reference vectors are "
            f"{want.shape}: the delta was made for another model"
        )
    cos = cosines(got, want)
    bad = np.flatnonzero(cos < MIN_COSINE)
    if bad.size:
        worst = int(bad[np.argmin(cos[bad])])
        ref = references[worst]
        text = ref.text if len(ref.text) <= 50 else ref.text[:47] + "..."
        raise DeltaError(
            f"{what} does not reproduce the delta's reference vectors: {bad.size} of "
            f"{len(cos)} texts below cosine {MIN_COSINE}, worst the {ref.kind} {text!r} "
            f"at {cos[worst]:.4f}; the delta or the base is not the one it was made from"
        )
    return cos
