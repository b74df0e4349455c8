"""Training data, one module a job.

- :mod:`training.data.beir`: BEIR-format folders (corpus, queries, qrels), read and written;
- :mod:`training.data.batches`: training sets (BEIR or pair/triplet JSONL) and the
  seeded, resumable batch sampler;
- :mod:`training.data.build`: a dataset from folders of documents (passages,
  pseudo-queries, the split by document, the manifest);
- :mod:`training.data.mining`: hard negatives, by BM25 or by a model;
- ``python -m training.data`` (:mod:`training.data.__main__`): the command line.
"""
