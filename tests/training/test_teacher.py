"""The teacher (all-MiniLM-L6-v2 from its PyPI package): offline, normalised, sensible."""

from __future__ import annotations

import os

import numpy as np

from training.teacher import Teacher


def test_teacher_ranks_a_paraphrase_above_an_unrelated_sentence(teacher: Teacher) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # nothing may come from the hub
    queries = ["How do I open a file for reading in Python?"]
    passages = [
        "Use the built-in open() function with mode 'r' to read a file.",
        "The red fox ran across the snowy field at dawn.",
        "Pandas are bears that live in the bamboo forests of China.",
    ]
    vecs = teacher.encode_passages(passages)
    assert vecs.shape == (3, teacher.dim) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    scores = teacher.scores(queries, passages)
    assert scores.shape == (1, 3)
    assert scores[0, 0] > 0.4 > scores[0, 1]
    assert scores[0, 0] > scores[0, 2]
    # Batching and the length sort do not change a text's vector.
    one = teacher.encode_queries(queries)
    mixed = teacher.encode_queries([passages[1], queries[0]])
    assert np.allclose(one[0], mixed[1], atol=1e-5)
