"""Ship a trained model as a small delta over the base that ``make models`` builds.

A delta folder (``assets/models/<name>/``) holds:

- ``delta.safetensors``: the tensors training changed (matrices F16, vectors F32),
  at most 40 MB;
- ``reference.npy``: the vectors of a dozen fixed documents and queries, embedded by
  the app's runtime from the F16 GGUF of base + delta;
- ``delta.json``: model name, stage, prompts, held-out figures, the tensor list, and
  the base it applies to (recipe and a hash of the base tensors it keeps).

:func:`extract_delta` writes one from a base and a trained HF checkpoint;
:func:`apply_delta` rebuilds the F16 GGUF from the base, checks it against the
reference vectors and quantizes it (``training.testmodels`` calls it for the app's
default model)::

    python -m training.delta extract TRAINED_DIR --base build/models/smollm2-sr3 \\
        --out assets/models/smollm2-sr3-cpu [--eval-json EVAL.json]
    python -m training.delta apply assets/models/smollm2-sr3-cpu \\
        --base build/models/smollm2-sr3 --out build/models/smollm2-sr3-cpu
"""

from __future__ import annotations

from training.delta.apply import Applied, apply_delta
from training.delta.extract import extract_delta
from training.delta.manifest import MAX_BYTES, DeltaError, Manifest, digest, missing_files

__all__ = [
    "MAX_BYTES",
    "Applied",
    "DeltaError",
    "Manifest",
    "apply_delta",
    "digest",
    "extract_delta",
    "missing_files",
]
