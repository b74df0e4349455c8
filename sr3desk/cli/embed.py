"""``sr3desk embed TEXT...``: print embedding vectors, for scripting and checks.

``--json`` prints one JSON list of lists of floats (one unit vector per text, in
order); without it each vector is one line of space-separated numbers. A TEXT of
``-`` reads one text per non-empty line of stdin. Texts are embedded as documents
unless ``--query`` is given; ``--reason`` (queries) lets the model reason first
and writes its reasoning to stderr, so stdout stays parseable.
"""

from __future__ import annotations

import argparse
import json
import sys

from sr3desk.cli import add_db_argument, add_model_argument


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``embed`` subcommand."""
    p = sub.add_parser(
        "embed",
        help="print the embedding vectors of texts",
        description="Embed texts with the model and print the vectors (unit length).",
    )
    p.add_argument("texts", nargs="+", metavar="TEXT", help="text to embed ('-': stdin lines)")
    add_model_argument(p)
    add_db_argument(p)
    kind = p.add_mutually_exclusive_group()
    kind.add_argument(
        "--document", dest="query", action="store_false", help="embed as passages (default)"
    )
    kind.add_argument("--query", dest="query", action="store_true", help="embed as search queries")
    p.add_argument("--reason", action="store_true", help="with --query: let the model reason first")
    p.add_argument("--json", action="store_true", help="print a JSON list of vectors")
    p.add_argument("--threads", type=int, metavar="N", help="llama.cpp threads")
    p.set_defaults(func=run, query=False)


def read_texts(args: list[str]) -> list[str]:
    """Expand ``-`` into the non-empty lines of stdin; returns the texts in order."""
    texts: list[str] = []
    for text in args:
        if text == "-":
            texts.extend(line.rstrip("\n") for line in sys.stdin if line.strip())
        else:
            texts.append(text)
    return texts


def run(args: argparse.Namespace) -> int:
    """Embed the texts and print the vectors; returns the exit code."""
    from sr3desk.errors import ModelRequiredError, Sr3Error
    from sr3desk.model.runtime import open_embedder
    from sr3desk.settings import Settings, data_dir, resolve_model_path

    if args.reason and not args.query:
        raise Sr3Error("--reason applies to queries: add --query")
    home = data_dir(args.db)
    path = resolve_model_path(args.model, home)
    if path is None:
        raise ModelRequiredError(
            "No embedding model is set: pass --model FILE.gguf, or run "
            "`sr3desk model fetch` or `sr3desk model install FILE.gguf --default`"
        )
    texts = read_texts(args.texts)
    settings = Settings.load(home)
    threads = args.threads or settings.threads
    with open_embedder(path, threads=threads, gpu_layers=settings.gpu_layers) as embedder:
        if args.query:
            rows = []
            for text in texts:
                q = embedder.embed_query(text, reason=args.reason)
                if q.reasoning is not None:
                    forced = " (embed token appended)" if q.forced else ""
                    sys.stderr.write(f"reasoning{forced}: {q.reasoning}\n")
                rows.append(q.vector.tolist())
        else:
            rows = embedder.embed_documents(texts).tolist()
    if args.json:
        json.dump(rows, sys.stdout)
        sys.stdout.write("\n")
    else:
        for row in rows:
            sys.stdout.write(" ".join(f"{x:.7g}" for x in row) + "\n")
    return 0
