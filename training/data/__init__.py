"""Training data, one module a job.

- :mod:`training.data.beir`: BEIR-format folders (corpus, queries, qrels), read and written;
- :mod:`training.data.batches`: training sets (BEIR or pair/triplet JSONL) and the
  seeded, resumable batch sampler;
- :mod:`training.data.build`: a dataset from folders of documents (passages,
  pseudo-queries, the split by document, the manifest);
- :mod:`training.data.corpora`: corpora from Debian packages;
- :mod:`training.data.reserved`: the paths kept for evaluation that no build reads;
- :mod:`training.data.mining`: hard negatives, by BM25, a model or the teacher;
- :mod:`training.data.negatives`: the hard negatives' file (``negatives.jsonl``);
- :mod:`training.data.filtering`: dropping pseudo-queries the teacher cannot answer;
- :mod:`training.data.teacher_vectors`: the teacher's vectors of a training set, cached;
- ``python -m training.data`` (:mod:`training.data.__main__`): the command line.
"""
