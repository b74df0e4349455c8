"""Download the official Search-R3 checkpoint and turn it into a GGUF the app can run.

No GGUF of Search-R3 is published, so :func:`fetch_model` downloads the Hugging
Face checkpoint with ``huggingface_hub`` (resumable: a broken download goes on
where it stopped), converts it with the training pipeline's exporter in a child
process (:mod:`sr3desk.model.convert`; it needs the ``train`` extra: torch and
transformers) and quantizes it, Q4_K_M by default. The result is
``<dest_dir>/<repo name>.<QUANT>.gguf``; the downloaded checkpoint is deleted once
the GGUF is in place.

Offline it fails at once: ``HF_HUB_OFFLINE`` set, or the hub's host not reachable
within a few seconds, raises :class:`OfflineError` before anything is written.
The hub address honours ``HF_ENDPOINT`` (or the ``endpoint`` argument), which is
also how the tests point it at a local stand-in.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sr3desk.errors import MissingExtraError, ModelError, OfflineError, Sr3Error
from sr3desk.model.convert import (
    FEATURE,
    ConversionCancelled,
    convert_checkpoint,
    require_train_extra,
    train_extra_installed,
)
from sr3desk.model.ggufinfo import inspect_gguf

log = logging.getLogger(__name__)

DEFAULT_REPO = "ytgui/Search-R3.0-Small"
DEFAULT_QUANT = "Q4_K_M"
DEFAULT_ENDPOINT = "https://huggingface.co"
FLOAT_TYPES = ("F32", "F16", "BF16")  # "quantizations" that mean: keep the float GGUF
# What a checkpoint needs for conversion; anything else in the repo is skipped.
CHECKPOINT_FILES = (
    "*.json",
    "*.safetensors",
    "*.jinja",
    "*.txt",
    "*.model",
    "tokenizer*",
)
PROBE_TIMEOUT_S = 4.0
DOWNLOAD_DIR = ".download"


@dataclass(frozen=True)
class FetchProgress:
    """One progress report: ``stage`` is "check", "download", "convert", "done";
    ``done``/``total`` count bytes while downloading (total None when unknown)."""

    stage: str
    done: int | None = None
    total: int | None = None
    message: str = ""


ProgressFn = Callable[[FetchProgress], None]


class FetchCancelled(Sr3Error):
    """The user cancelled a fetch; what was downloaded is kept for the next try."""


def fetch_model(
    repo: str = DEFAULT_REPO,
    dest_dir: str | os.PathLike[str] = ".",
    quant: str = DEFAULT_QUANT,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
) -> Path:
    """Download ``repo`` from the hub, convert and quantize it into ``dest_dir``.

    ``quant`` is a llama.cpp quantization ("Q4_K_M", "Q8_0", ...) or a float type
    ("F16"); ``progress`` receives :class:`FetchProgress` reports; setting
    ``cancel`` stops at the next chunk with :class:`FetchCancelled`. Returns the
    path of the GGUF (at once when it is already there). Raises OfflineError when
    the hub cannot be reached, MissingExtraError without the ``train`` extra.
    """
    report = progress or (lambda _p: None)
    stop = cancel or threading.Event()
    quant = quant.upper()
    dest = Path(dest_dir).expanduser()
    name = repo.rstrip("/").rsplit("/", 1)[-1]
    out = dest / f"{name}.{quant}.gguf"
    if out.is_file():
        try:
            inspect_gguf(out)
        except ModelError as exc:
            log.warning("Replacing the unusable %s: %s", out, exc)
        else:
            report(FetchProgress("done", message=f"{out.name} is already there"))
            return out

    # Cheap checks first: no extra, or no network, fails before anything is written.
    if not train_extra_installed():
        raise MissingExtraError(FEATURE, "train")
    report(FetchProgress("check", message=f"Looking up {repo}"))
    base = (endpoint or _endpoint()).rstrip("/")
    _check_online(base)
    work = dest / DOWNLOAD_DIR / name
    with _hub_errors(repo, work):
        files, commit = _list_files(repo, base, revision)
        # Import torch & co. now (in a child): a broken install must not cost a download first.
        require_train_extra()
        _check_space(dest, sum(size for _, size in files))
        ckpt = _download(repo, files, commit, work / "hf", base, report, stop)
    if stop.is_set():
        raise FetchCancelled(f"Fetching {repo} was cancelled")

    report(FetchProgress("convert", message=f"Converting {name} to GGUF ({quant})"))
    float_type = quant if quant in FLOAT_TYPES else "F16"
    quants = [] if quant in FLOAT_TYPES else [quant]
    try:
        written = convert_checkpoint(
            ckpt,
            work / f"{name}.{float_type}.gguf",
            out_type=float_type.lower(),
            quants=quants,
            name=name,
            keep_base=False,
            progress=lambda line: report(FetchProgress("convert", message=f"Converting: {line}")),
            cancel=stop,
        )
    except ConversionCancelled as exc:
        raise FetchCancelled(f"Fetching {repo} was cancelled") from exc
    except OSError as exc:
        raise Sr3Error(f"Cannot convert {repo} in {work}: {exc.strerror or exc}") from exc
    os.replace(written[-1], out)
    shutil.rmtree(work, ignore_errors=True)
    inspect_gguf(out)
    report(FetchProgress("done", message=f"{out.name} is ready"))
    log.info("Fetched %s into %s", repo, out)
    return out


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT


def _check_online(endpoint: str) -> None:
    """Fail fast when the hub cannot be reached, before any download starts."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise OfflineError(
            "Cannot download the model: HF_HUB_OFFLINE is set; unset it, or copy a GGUF "
            "here and run `sr3desk model install FILE.gguf --default`"
        )
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OfflineError(
            f"Cannot reach {host} ({reason}): the model download needs the internet; "
            "connect and retry, or copy a GGUF here and run "
            "`sr3desk model install FILE.gguf --default`"
        ) from None


@contextmanager
def _hub_errors(repo: str, folder: Path) -> Iterator[None]:
    """Turn huggingface_hub's and the network's exceptions into one-line errors."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        raise Sr3Error(f"Cannot download {repo}: no such public model on the hub") from exc
    except (RevisionNotFoundError, EntryNotFoundError) as exc:
        raise Sr3Error(f"Cannot download {repo}: {_first_line(exc)}") from exc
    except HfHubHTTPError as exc:
        raise OfflineError(f"Cannot download {repo}: {_first_line(exc)}") from exc
    except OSError as exc:
        if isinstance(exc, ConnectionError | TimeoutError) or _is_network_error(exc):
            raise OfflineError(f"Cannot download {repo}: the connection failed ({exc})") from exc
        raise Sr3Error(f"Cannot download {repo} into {folder}: {exc}") from exc
    except Exception as exc:
        if _is_network_error(exc):
            raise OfflineError(f"Cannot download {repo}: the connection failed ({exc})") from exc
        raise


def _list_files(
    repo: str, endpoint: str, revision: str | None
) -> tuple[list[tuple[str, int]], str | None]:
    """The checkpoint files of ``repo`` with their sizes, and the commit they are at."""
    from huggingface_hub import HfApi

    info = HfApi(endpoint=endpoint).model_info(repo, revision=revision, files_metadata=True)
    files = [
        (s.rfilename, s.size or 0)
        for s in info.siblings or []
        if any(fnmatch.fnmatch(s.rfilename, pat) for pat in CHECKPOINT_FILES)
        and "/" not in s.rfilename
    ]
    if not any(f.endswith(".safetensors") for f, _ in files):
        raise Sr3Error(f"{repo} has no safetensors weights; it cannot be converted")
    return files, info.sha or revision


def _download(
    repo: str,
    files: list[tuple[str, int]],
    commit: str | None,
    local_dir: Path,
    endpoint: str,
    report: ProgressFn,
    stop: threading.Event,
) -> Path:
    """Download ``files`` of ``repo`` into ``local_dir`` (resuming); returns it."""
    from huggingface_hub import hf_hub_download

    total = sum(size for _, size in files)
    done = 0
    for filename, size in files:
        if stop.is_set():
            raise FetchCancelled(f"Fetching {repo} was cancelled")
        hf_hub_download(
            repo,
            filename,
            revision=commit,
            local_dir=local_dir,
            endpoint=endpoint,
            tqdm_class=_bar_class(report, stop, done, total, filename),
        )
        done += size
        report(FetchProgress("download", done, total, f"Downloaded {filename}"))
    return local_dir


def _is_network_error(exc: BaseException) -> bool:
    # huggingface_hub raises httpx's errors for dropped connections; httpx is its
    # dependency, so it is checked by module name rather than imported here.
    return type(exc).__module__.split(".")[0] in ("httpx", "httpcore", "httpx2")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _check_space(folder: Path, download_bytes: int) -> None:
    """The checkpoint, its float GGUF and the quantized file must fit at once."""
    folder.mkdir(parents=True, exist_ok=True)  # also where the free space is measured
    need = int(download_bytes * 2.4)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise Sr3Error(
            f"Not enough disk space in {folder}: fetching needs about {need / 1e9:.1f} GB, "
            f"{free / 1e9:.1f} GB are free"
        )


def _bar_class(
    report: ProgressFn, stop: threading.Event, base: int, total: int, filename: str
) -> type:
    """A tqdm stand-in for huggingface_hub that forwards byte counts to ``report``
    and aborts the transfer when ``stop`` is set."""

    class _Bar:
        def __init__(self, *args: Any, initial: int = 0, **kwargs: Any) -> None:
            self.n = initial

        def update(self, n: int | float = 1) -> None:
            if stop.is_set():
                raise FetchCancelled(f"Downloading {filename} was cancelled")
            self.n += int(n)
            report(FetchProgress("download", base + self.n, total, f"Downloading {filename}"))

        def close(self) -> None:
            pass

        def __enter__(self) -> _Bar:
            return self

        def __exit__(self, *exc: object) -> None:
            self.close()

    return _Bar


__all__ = [
    "DEFAULT_QUANT",
    "DEFAULT_REPO",
    "FetchCancelled",
    "FetchProgress",
    "fetch_model",
]
