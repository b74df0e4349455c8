"""``sr3desk search QUERY``: search the index from the command line.

Text output lists one file per result with its page, score, heading and a
snippet whose query terms are bold on a terminal. ``--json`` prints one object:
``{"query", "mode", "took_ms", "results": [{"path", "score", "page", "snippet",
"chunk", "ocr"}]}`` (``chunk``: the text of the file's best passage; ``snippet``: the
excerpt of it shown; ``ocr``: true when that passage was read by OCR), plus
``"reasoning"`` with ``--reason``, and with ``--deep`` ``"deep": true`` (false when
the cross-encoder is missing) and ``"stages"``: the
milliseconds each stage took (``search``, ``rerank``). Notes (partly embedded
index, weak model, ...) go to stderr so stdout stays parseable.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sr3desk.cli import add_db_argument, add_model_argument
from sr3desk.errors import Sr3Error

if TYPE_CHECKING:
    from sr3desk.index.store import Store
    from sr3desk.model.ggufinfo import ModelInfo
    from sr3desk.search.types import SearchResponse

log = logging.getLogger(__name__)

BOLD, RESET = "\x1b[1m", "\x1b[0m"


def parse_date(value: str) -> float:
    """Parse ``YYYY-MM-DD`` or an ISO date-time (local time unless it names a zone)."""
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid date {value!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM"
        ) from None
    return when.timestamp()  # a naive datetime is read as local time


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``search`` subcommand."""
    p = sub.add_parser(
        "search",
        help="search the indexed files",
        description="Search the index: hybrid (keywords + model) by default.",
    )
    p.add_argument("query", help="what to look for")
    add_db_argument(p)
    add_model_argument(p)
    p.add_argument("-k", type=int, default=10, metavar="N", help="files to show (default 10)")
    p.add_argument(
        "--mode",
        choices=("hybrid", "vector", "keyword"),
        help="hybrid (default when a model is set), vector, or keyword (needs no model)",
    )
    p.add_argument(
        "--reason", action="store_true", help="let the model reason about the query first"
    )
    p.add_argument(
        "--deep",
        action="store_true",
        help="deep search: re-rank the best files with the cross-encoder (works without a model)",
    )
    p.add_argument(
        "--folder",
        action="append",
        default=[],
        metavar="DIR",
        help="only files under DIR (repeatable)",
    )
    p.add_argument(
        "--type",
        action="append",
        default=[],
        metavar="EXT",
        help="only files of this type, e.g. pdf (repeatable, or comma-separated)",
    )
    p.add_argument("--after", type=parse_date, metavar="DATE", help="modified on or after DATE")
    p.add_argument("--before", type=parse_date, metavar="DATE", help="modified before DATE")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _served_model(store: Store, wanted: ModelInfo) -> ModelInfo:
    """The model whose vectors the index serves, when it differs from ``wanted``.

    After a model change the old vectors serve until the new ones are complete;
    queries must then be embedded with the old model, if its file is still there.
    """
    from sr3desk.errors import ModelError
    from sr3desk.model.ggufinfo import inspect_gguf

    served = store.read_model_id
    if served is None or served == wanted.model_id:
        return wanted
    path = store.read_model_path
    if path and Path(path).is_file():
        try:
            info = inspect_gguf(Path(path))
        except ModelError:
            return wanted
        if info.model_id == served:
            sys.stderr.write(
                f"note: the index is still served by {info.name} ({path}) "
                "until it is rebuilt with the new model; searching with it\n"
            )
            return info
    return wanted


def run(args: argparse.Namespace) -> int:
    """Run the search and print the results; returns the exit code."""
    from sr3desk.index.store import Store
    from sr3desk.index.types import Filters
    from sr3desk.model.ggufinfo import inspect_gguf
    from sr3desk.search import Searcher, SearchRequest
    from sr3desk.search.types import mark_ocr
    from sr3desk.settings import Settings, data_dir, resolve_model_path

    home = data_dir(args.db)
    model_path = resolve_model_path(args.model, home)
    mode = args.mode
    if mode is None:
        mode = "hybrid" if model_path is not None else "keyword"
        if model_path is None:
            sys.stderr.write(
                "note: no embedding model set, searching by keywords only "
                "(set one with --model or `sr3desk model install FILE.gguf --default`)\n"
            )
    exts = tuple(e for t in args.type for e in t.split(",") if e.strip())
    try:
        filters = Filters(
            folders=tuple(args.folder),
            exts=exts,
            modified_after=args.after,
            modified_before=args.before,
        )
        request = SearchRequest(
            args.query, mode=mode, k=args.k, filters=filters, reason=args.reason, deep=args.deep
        )
    except ValueError as exc:
        raise Sr3Error(str(exc)) from None
    # Keyword search needs no model: a configured one is not even opened.
    info = inspect_gguf(model_path) if model_path is not None and mode != "keyword" else None
    with ExitStack() as stack:
        store = stack.enter_context(Store.open(home, info))
        embedder = None
        if info is not None:
            from sr3desk.model.runtime import open_embedder

            info = _served_model(store, info)
            settings = Settings.load(home)
            embedder = stack.enter_context(
                open_embedder(info.path, threads=settings.threads, gpu_layers=settings.gpu_layers)
            )
            if args.reason:
                _warn_reasoning(info)
        reranker = _open_reranker(stack) if args.deep else None
        searcher = stack.enter_context(Searcher(store, embedder, home=home, reranker=reranker))
        response = searcher.search(request)
        mark_ocr(response.results, store.ocr_notes([r.file_id for r in response.results]))
    for note in response.notes:
        sys.stderr.write(f"note: {note}\n")
    if args.json:
        out = to_json(response, with_reasoning=args.reason, with_stages=args.deep)
        json.dump(out, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        write_text(response, sys.stdout, bold=_use_bold(sys.stdout))
    return 0


def _warn_reasoning(info: ModelInfo) -> None:
    """Say on stderr when the model's reasoning is not measured to help (it still runs)."""
    from sr3desk.search.reasoning import reasoning_verdict

    verdict = reasoning_verdict(info.eval)
    if not verdict.helps:
        sys.stderr.write(
            f"note: {info.name}: {verdict.describe()}; reasoning anyway, as asked "
            "(--deep re-ranks with the cross-encoder instead)\n"
        )


def _open_reranker(stack: ExitStack) -> Any:
    """The cross-encoder of deep search, or None (with a note) when it cannot be opened."""
    from sr3desk.search.rerank import open_reranker

    try:
        return stack.enter_context(open_reranker())
    except Sr3Error as exc:
        sys.stderr.write(f"note: {exc}\n")
        return None


def to_json(
    response: SearchResponse, with_reasoning: bool = False, with_stages: bool = False
) -> dict[str, Any]:
    """Return the JSON object of ``sr3desk search --json`` for ``response``
    (``with_stages``: add ``deep`` and the stages' milliseconds)."""
    out: dict[str, Any] = {
        "query": response.query,
        "mode": response.mode,
        "took_ms": round(response.took_ms, 2),
        "results": [
            {
                "path": os.path.abspath(r.path),
                "score": r.score,
                "page": r.best.page,
                "snippet": r.best.snippet,
                "chunk": r.best.text,
                "ocr": r.from_ocr(),
            }
            for r in response.results
        ],
    }
    if with_reasoning:
        out["reasoning"] = response.reasoning
    if with_stages:
        out["deep"] = response.deep
        out["stages"] = {name: round(ms, 2) for name, ms in response.stages.items()}
    return out


def _use_bold(stream: IO[str]) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def write_text(response: SearchResponse, out: IO[str], bold: bool = False) -> None:
    """Write ``response`` readably: rank, path, page, score, heading, snippet."""
    from sr3desk.search.snippets import Snippet, render

    if response.reasoning:
        out.write(f"reasoning: {' '.join(response.reasoning.split())}\n")
        if response.forced:
            out.write("(the model did not finish its reasoning; the embedding was forced)\n")
        out.write("\n")
    if not response.results:
        out.write(f"No results for {response.query!r} ({response.mode}).\n")
        return
    for i, result in enumerate(response.results, start=1):
        best = result.best
        page = f"  page {best.page}" if best.page is not None else ""
        if result.from_ocr():
            page += "  (text by OCR)"
        title = f"{BOLD}{result.path}{RESET}" if bold else result.path
        out.write(f"{i:2d}. {title}{page}  (score {result.score:.3f})\n")
        if best.heading:
            out.write(f"    {best.heading}\n")
        snippet = Snippet(best.snippet, best.highlights)
        text = render(snippet, BOLD, RESET) if bold else snippet.text
        out.write(f"    {text}\n\n")
    n = len(response.results)
    kind = f"{response.mode} search" + (", re-ranked" if response.deep else "")
    out.write(f"{n} file{'s' if n != 1 else ''} in {response.took_ms:.0f} ms ({kind})\n")
