"""``sr3desk status``: what the index holds.

``--json`` prints ``{"files", "chunks", "pending", "model", "skipped": [{"path",
"reason"}]}`` (plus ``"embedded"``, ``"building"`` and ``"default_model"``):
``files`` are indexed files, ``chunks`` their passages, ``pending`` the passages
still waiting for a vector, ``model`` the id of the model whose vectors are served
(null: keyword only), ``skipped`` the files that could not be read and why.
``default_model`` is the model the settings name for embedding (null: none):
``{"path", "name", "stage", "model_id", "auto"}``, ``auto`` true when ``model
install --if-unset`` (``make run``) set it rather than the user; name, stage and id
are null, and ``"error"`` says why, when the file cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from sr3desk.cli import add_db_argument
from sr3desk.index.types import IndexStatus

if TYPE_CHECKING:
    from sr3desk.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``status`` subcommand."""
    p = sub.add_parser(
        "status",
        help="show what the index holds",
        description="Show indexed files, chunks, the model and the files that were skipped.",
    )
    add_db_argument(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the status of the index; returns the exit code."""
    from sr3desk.index.store import Store
    from sr3desk.settings import Settings, data_dir

    home = data_dir(args.db)
    with Store.open(home) as store:
        status = store.status()
    settings = Settings.load(home)
    status.folders = list(settings.folders)
    default = default_model(settings)
    if args.json:
        json.dump(status.to_json() | {"default_model": default}, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        write_status(status, sys.stdout, default)
    return 0


def default_model(settings: Settings) -> dict[str, Any] | None:
    """What ``status --json`` says of the default model (None when none is set)."""
    from sr3desk.errors import Sr3Error
    from sr3desk.model.ggufinfo import inspect_gguf

    if not settings.model_path:
        return None
    out: dict[str, Any] = {
        "path": settings.model_path,
        "name": None,
        "stage": None,
        "model_id": None,
        "auto": settings.model_path == settings.model_auto,
    }
    try:
        info = inspect_gguf(settings.model_path)
    except Sr3Error as err:
        out["error"] = str(err)
        return out
    out.update(name=info.name, stage=info.stage, model_id=info.model_id)
    return out


def write_status(status: IndexStatus, out: IO[str], default: dict[str, Any] | None = None) -> None:
    """Write the status readably; ``default`` is :func:`default_model`'s answer."""
    out.write(f"Files:   {status.files} indexed, {len(status.skipped)} skipped\n")
    out.write(f"Chunks:  {status.chunks} ({status.embedded} embedded, {status.pending} pending)\n")
    if status.model:
        out.write(f"Model:   {status.model_name or '?'} ({status.model}, {status.dim} dims)\n")
    else:
        out.write("Model:   none (keyword search only)\n")
    if default is not None:
        if "error" in default:
            out.write(f"Default: {default['path']} (unusable: {default['error']})\n")
        else:
            how = ", set automatically" if default["auto"] else ""
            stage = default["stage"] or "stage unknown"
            out.write(f"Default: {default['name']} ({stage}{how}) {default['path']}\n")
    if status.building:
        out.write(
            f"Rebuilding for {status.building}: {status.building_embedded}/"
            f"{status.building_chunks} chunks embedded so far\n"
        )
    if status.folders:
        out.write("Folders: " + ", ".join(status.folders) + "\n")
    if status.last_indexed:
        when = datetime.fromtimestamp(status.last_indexed).strftime("%Y-%m-%d %H:%M")
        out.write(f"Updated: {when}\n")
    out.write(f"Disk:    {status.disk_bytes / 1e6:.1f} MB\n")
    if status.skipped:
        out.write("Skipped:\n")
        for path, reason in status.skipped:
            out.write(f"  {path}: {reason}\n")
