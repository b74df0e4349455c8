"""``sr3desk model info|convert|fetch|install``: look at, make, get and set up models.

- ``info GGUF [--json]``: name, file size, width, quantization, context, prompts,
  held-out metrics, without loading the weights.
- ``convert HF_DIR OUT.gguf [--type f16] [--quant Q8_0 ...]``: export a Hugging
  Face checkpoint (needs the ``train`` extra).
- ``fetch [REPO] [--quant Q4_K_M]``: download the official model, convert and
  quantize it into ``<data dir>/models`` (a progress bar on stderr); it becomes
  the default model when none is set.
- ``install GGUF [--default] [--if-unset]``: copy a GGUF into ``<data dir>/models``
  and optionally make it the default model. With ``--if-unset`` (what ``make run``
  does) only a default the user did not choose is replaced: none, a missing file, one
  an earlier ``--if-unset`` set, or the project's untrained stand-in that older
  ``make run``s installed before they recorded so. A model chosen in the app, with
  plain ``--default`` or by ``fetch``, stays.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sr3desk.cli import add_db_argument

if TYPE_CHECKING:
    from sr3desk.model.fetch import FetchProgress
    from sr3desk.model.ggufinfo import ModelInfo
    from sr3desk.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``model`` subcommand and its actions."""
    p = sub.add_parser(
        "model",
        help="inspect, convert, fetch or install embedding models",
        description="Manage Search-R3 models (GGUF files).",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    info = actions.add_parser("info", help="describe a GGUF model file")
    info.add_argument("gguf", metavar="GGUF", help="model file")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=run_info)

    conv = actions.add_parser(
        "convert", help="convert a Hugging Face checkpoint to GGUF (needs the train extra)"
    )
    conv.add_argument("hf_dir", metavar="HF_DIR", help="checkpoint folder")
    conv.add_argument("out", metavar="OUT.gguf", help="output file")
    conv.add_argument(
        "--type", default="f16", choices=("f32", "f16", "bf16"), help="float type (default f16)"
    )
    conv.add_argument(
        "--quant", nargs="*", default=[], metavar="QUANT", help="also write e.g. Q8_0 Q4_K_M"
    )
    conv.add_argument("--name", help="model name stored in the file (default: folder name)")
    conv.set_defaults(func=run_convert)

    fetch = actions.add_parser(
        "fetch", help="download the official model and convert it (needs the train extra)"
    )
    fetch.add_argument("repo", nargs="?", metavar="REPO", help="hub repo (default: official)")
    fetch.add_argument("--quant", default=None, metavar="QUANT", help="default Q4_K_M")
    fetch.add_argument("--revision", help="branch, tag or commit")
    fetch.add_argument(
        "--default", action="store_true", help="make it the default model (also when one is set)"
    )
    add_db_argument(fetch)
    fetch.set_defaults(func=run_fetch)

    inst = actions.add_parser("install", help="copy a GGUF into the models folder")
    inst.add_argument("gguf", metavar="GGUF", help="model file")
    inst.add_argument("--default", action="store_true", help="make it the default model")
    inst.add_argument(
        "--if-unset",
        action="store_true",
        help="with --default: only when no default model is set that the user chose",
    )
    add_db_argument(inst)
    inst.set_defaults(func=run_install)


# -- info ---------------------------------------------------------------------------


def info_json(info: ModelInfo) -> dict[str, Any]:
    """The facts ``model info --json`` prints."""
    pr = info.prompts
    return {
        "path": str(info.path),
        "name": info.name,
        "model_id": info.model_id,
        "architecture": info.architecture,
        "size_bytes": info.size_bytes,
        "dim": info.dim,
        "layers": info.n_layers,
        "context_train": info.n_ctx_train,
        "quantization": info.quantization,
        "vocab": info.n_vocab,
        "embed_token_id": info.embed_token_id,
        "stage": info.stage,
        "eval": info.eval,
        "prompts": {
            "from_metadata": pr.from_metadata,
            "document_system": pr.document_system,
            "query_system": pr.query_system,
            "reason_system": pr.reason_system,
            "answer_prefix": pr.answer_prefix,
            "embed_token": pr.embed_token,
        },
        "chat_template": "model" if info.chat_template else "ChatML (default)",
    }


def write_info(info: ModelInfo, out: IO[str]) -> None:
    """Write the model facts readably."""
    pr = info.prompts
    source = "from the file" if pr.from_metadata else "stage-1 defaults (none in the file)"
    rows = [
        ("Name", info.name),
        ("File", f"{info.path} ({_size(info.size_bytes)})"),
        ("Id", info.model_id),
        ("Model", f"{info.architecture}, {info.n_layers} layers, {info.dim} dims"),
        ("Quantization", info.quantization),
        ("Context", f"{info.n_ctx_train} tokens (trained)"),
        ("Embed token", f"{pr.embed_token} (id {info.embed_token_id} of {info.n_vocab})"),
        ("Stage", info.stage or "unknown"),
        ("Template", "the model's" if info.chat_template else "ChatML (none in the file)"),
        ("Prompts", source),
        ("  document", pr.document_system),
        ("  query", pr.query_system),
        ("  reasoning", pr.reason_system),
        ("  answer", f"{pr.answer_prefix}{pr.embed_token}"),
    ]
    if info.eval:
        rows.append(("Eval", ", ".join(f"{k}={v}" for k, v in sorted(info.eval.items()))))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out.write(f"{key + ':':<{width + 2}}{value}\n")


def run_info(args: argparse.Namespace) -> int:
    """Print what a GGUF says about itself."""
    from sr3desk.model.ggufinfo import inspect_gguf

    info = inspect_gguf(args.gguf)
    if args.json:
        json.dump(info_json(info), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        write_info(info, sys.stdout)
    return 0


# -- convert --------------------------------------------------------------------------


def run_convert(args: argparse.Namespace) -> int:
    """Convert a checkpoint with the training pipeline's exporter (a child process).

    Its progress lines go to stderr as they come; the written paths to stdout.
    """
    from sr3desk.model.convert import convert_checkpoint

    def progress(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    paths = convert_checkpoint(
        args.hf_dir,
        args.out,
        out_type=args.type,
        quants=args.quant,
        name=args.name,
        progress=progress,
    )
    for path in paths:
        sys.stdout.write(f"{path}\n")
    return 0


# -- fetch --------------------------------------------------------------------------


class FetchProgressBar:
    """One self-updating line on a terminal; plain lines per step otherwise."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last_stage = ""
        self.last_message = ""
        self.last_draw = 0.0
        self.drawn = False

    def __call__(self, p: FetchProgress) -> None:
        now = time.monotonic()
        new_stage = p.stage != self.last_stage
        if self.tty:
            if not new_stage and now - self.last_draw < 0.1:
                return
            self.stream.write("\r\x1b[K" + self.render(p))
            self.drawn = True
        elif new_stage or (p.done is None and p.message != self.last_message):
            self.stream.write(p.message + "\n")
        self.stream.flush()
        self.last_stage, self.last_message, self.last_draw = p.stage, p.message, now

    @staticmethod
    def render(p: FetchProgress) -> str:
        """The bar's text for one report."""
        if p.done is None or not p.total:
            return p.message
        frac = min(1.0, p.done / p.total)
        bar = "#" * int(frac * 30)
        return f"[{bar:<30}] {frac:4.0%} {_size(p.done)} of {_size(p.total)}  {p.message}"

    def close(self) -> None:
        """End the line."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def run_fetch(args: argparse.Namespace) -> int:
    """Download, convert and quantize a model into the models folder."""
    from sr3desk.model.fetch import DEFAULT_QUANT, DEFAULT_REPO, fetch_model
    from sr3desk.settings import Settings, data_dir, models_dir

    home = data_dir(args.db)
    bar = FetchProgressBar(sys.stderr)
    try:
        path = fetch_model(
            args.repo or DEFAULT_REPO,
            models_dir(home),
            quant=args.quant or DEFAULT_QUANT,
            progress=bar,
            revision=args.revision,
        )
    finally:
        bar.close()
    settings = Settings.load(home)
    if args.default or not _usable(settings.model_path):
        settings.model_path = str(path)
        settings.model_auto = None
        settings.save(home)
        sys.stderr.write(f"{path.name} is now the default model\n")
    sys.stdout.write(f"{path}\n")
    return 0


# -- install ------------------------------------------------------------------------


def run_install(args: argparse.Namespace) -> int:
    """Copy a GGUF into the models folder; optionally make it the default model."""
    from sr3desk.model.ggufinfo import inspect_gguf
    from sr3desk.settings import Settings, data_dir, models_dir

    info = inspect_gguf(args.gguf)  # refuses bad files before copying anything
    home = data_dir(args.db)
    target = install_file(info, models_dir(home))
    settings = Settings.load(home)
    if args.default:
        if args.if_unset and not replaceable_default(settings, models_dir(home)):
            chosen = settings.model_path or "none (keyword search only)"
            sys.stderr.write(f"default model left as {chosen}, as the user chose\n")
        else:
            settings.model_path = str(target)
            settings.model_auto = str(target) if args.if_unset else None
            settings.save(home)
            sys.stderr.write(f"{target.name} is now the default model\n")
    sys.stdout.write(f"{target}\n")
    return 0


# The untrained SmolLM2 that `make models` built as the app's default before a trained
# model shipped (training.testmodels): older `make run`s installed it as the default
# without recording that they did. It is a placeholder, never a user's considered choice.
STAND_IN = "smollm2-sr3"


def replaceable_default(settings: Settings, models: Path) -> bool:
    """True when ``install --default --if-unset`` may set the default model.

    That is when the user has not chosen one: none is set and none was ever set
    automatically (an automatic default the user then removed stays removed), the file
    is gone, the default is the one an earlier ``--if-unset`` set (``model_auto``), or
    (settings from before ``model_auto`` existed) it is the untrained stand-in installed
    in ``models``.
    """
    from sr3desk.errors import Sr3Error
    from sr3desk.model.ggufinfo import inspect_gguf

    path = settings.model_path
    if path is None:
        return settings.model_auto is None
    if not _usable(path):
        return True
    if settings.model_auto is not None:
        return path == settings.model_auto
    if Path(path).parent.resolve() != models.resolve():
        return False
    try:
        info = inspect_gguf(path)
    except Sr3Error:
        return False
    return info.name == STAND_IN and info.stage in (None, "base")


def install_file(info: ModelInfo, folder: Path) -> Path:
    """Copy the model into ``folder`` (atomically); returns the installed path.

    A file of the same name and content already there is kept as it is; one with
    other content is replaced.
    """
    from sr3desk.errors import Sr3Error
    from sr3desk.model.ggufinfo import inspect_gguf

    target = folder / info.path.name
    if target.resolve() == info.path.resolve():
        return target
    if target.is_file():
        try:
            if inspect_gguf(target).model_id == info.model_id:
                return target
        except Sr3Error:
            pass  # a broken copy: replace it
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=folder)
    os.close(fd)
    try:
        shutil.copyfile(info.path, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise Sr3Error(f"Cannot copy {info.path} into {folder}: {exc.strerror or exc}") from exc
    return target


def _usable(model_path: str | None) -> bool:
    """True when a default model is set and its file is still there."""
    return bool(model_path) and Path(str(model_path)).is_file()


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
