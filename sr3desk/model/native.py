"""llama.cpp inside sr3desk: the library handle, its environment, logs and models.

Every use of llama.cpp goes through this module, which prepares the process
before the native library loads:

- ``OMP_WAIT_POLICY=PASSIVE`` (unless the user set it): llama-cpp-python's build
  uses OpenMP, whose threads spin while they wait for each other. On a desktop,
  where indexing runs beside the user's own programs, spinning threads lose their
  cores to other processes and every barrier stalls: measured on a busy 2-core
  machine, generating a token took 1.8 s with 2 spinning threads against 90 ms
  with passive waiting, and a 256-token prompt 34 against 62 tokens/s.
- llama.cpp's extra buffer types (weights repacked for the CPU's kernels, and on
  CPUs with Intel AMX the AMX buffer) are used only where they are safe: on a
  CPU with AMX, a native build crashes in the AMX matrix multiply at the first
  decode of a Q8_0 or Q4_K_M model (upstream llama.cpp issue 20824), so they are
  off there; ``SR3DESK_LLAMA_REPACK=on|off`` overrides (see :func:`repack_enabled`).
- llama.cpp writes its log lines to stderr by default; here they go to the
  ``sr3desk.llama`` logger instead (its info and debug lines at DEBUG, warnings at
  INFO, errors at WARNING), so they show only with ``-v``/``-vv`` and never mix
  with command output.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before libgomp loads, see above

import llama_cpp.llama_cpp as C

from sr3desk.errors import ModelError
from sr3desk.model.cpufeatures import has_amx
from sr3desk.model.crash import REPACK_ENV, note_model

llama_log = logging.getLogger("sr3desk.llama")

# ggml log levels (ggml.h): NONE, DEBUG, INFO, WARN, ERROR, CONT (continues a line).
_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.INFO}
_LEVELS |= {4: logging.WARNING}
_CONT = 5


class _LogRouter:
    """Collects llama.cpp's log fragments into lines and forwards them to logging."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.parts: list[str] = []
        self.level = logging.DEBUG
        self.last_error = ""

    def feed(self, level: int, text: bytes | None) -> None:
        piece = (text or b"").decode("utf-8", errors="replace")
        with self.lock:
            if level != _CONT:
                self.level = _LEVELS.get(level, logging.DEBUG)
            self.parts.append(piece)
            if not piece.endswith("\n"):
                return
            line = "".join(self.parts).rstrip()
            self.parts.clear()
            lvl = self.level
            if lvl == logging.WARNING:
                self.last_error = line
        if line:
            llama_log.log(lvl, "%s", line)


_ROUTER = _LogRouter()


@C.llama_log_callback
def _log_callback(level: int, text: bytes | None, user_data: ctypes.c_void_p) -> None:
    _ROUTER.feed(level, text)


def route_llama_logs() -> None:
    """Send llama.cpp's log output to the ``sr3desk.llama`` logger (idempotent)."""
    C.llama_log_set(_log_callback, ctypes.c_void_p(0))


route_llama_logs()
C.llama_backend_init()


def last_llama_error() -> str:
    """The last error line llama.cpp logged (for error messages), or ''."""
    return _ROUTER.last_error


# Whether the repacked weight buffers pay where they are safe (no AMX): see README,
# "CPU settings", for the measurement behind this default.
REPACK_BY_DEFAULT = True


def repack_enabled() -> bool:
    """Whether llama.cpp may load weights into its extra (repack/AMX) buffer types.

    ``SR3DESK_LLAMA_REPACK``: ``on`` or ``off`` force it; ``auto`` (the default)
    turns them off on CPUs with AMX, where they crash, and otherwise follows
    ``REPACK_BY_DEFAULT``. Returns the setting for the next model load.
    """
    value = os.environ.get(REPACK_ENV, "auto").strip().lower()
    if value in ("on", "1", "yes", "true"):
        return True
    if value in ("off", "0", "no", "false"):
        return False
    if value != "auto":
        llama_log.warning("%s=%s is not on, off or auto; using auto", REPACK_ENV, value)
    return REPACK_BY_DEFAULT and not has_amx()


def load_model(path: Path, vocab_only: bool = False, gpu_layers: int = 0) -> Any:
    """Load a GGUF with llama.cpp and return the native ``llama_model`` pointer.

    Every model load of sr3desk and of its training pipeline goes through here, so
    the buffer policy (:func:`repack_enabled`) holds everywhere. The caller owns
    the pointer and frees it with ``llama_model_free``. Raises ModelError (with
    llama.cpp's own reason) when llama.cpp refuses the file.
    """
    params = C.llama_model_default_params()
    params.vocab_only = vocab_only
    params.n_gpu_layers = gpu_layers
    params.use_extra_bufts = repack_enabled()
    if not vocab_only:
        note_model(path)  # a crash report can name the model (sr3desk.model.crash)
    _ROUTER.last_error = ""
    model = C.llama_model_load_from_file(os.fsencode(path), params)
    if not model:
        reason = last_llama_error() or "llama.cpp could not load it"
        raise ModelError(f"Cannot load model {path}: {reason}")
    return model


__all__ = [
    "REPACK_BY_DEFAULT",
    "C",
    "last_llama_error",
    "llama_log",
    "load_model",
    "repack_enabled",
    "route_llama_logs",
]
