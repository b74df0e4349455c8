"""A local stand-in for the Hugging Face hub's file API, for offline fetch tests.

It answers the two kinds of request ``huggingface_hub`` makes to download a model:
``GET /api/models/{repo}[/revision/{rev}]`` (the file list with sizes) and
``HEAD``/``GET /{repo}/resolve/{rev}/{file}`` (file metadata and bytes, with
ranges), serving the files of local folders. Point ``HF_ENDPOINT`` (or the
``endpoint`` argument) at :attr:`HubStandIn.url`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_API = re.compile(r"^/api/models/([^/]+/[^/]+?)(?:/revision/([^/?]+))?(?:\?.*)?$")
_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+?)(?:\?.*)?$")


class HubStandIn:
    """Serves ``repos`` ({repo id: folder}) on 127.0.0.1; a context manager."""

    def __init__(self, repos: Mapping[str, Path]) -> None:
        self.repos = dict(repos)
        self.requests: list[str] = []
        handler = _handler(self)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


def _etag(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(f"{path.name}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()


def _handler(hub: HubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            hub.requests.append(f"{self.command} {self.path}")

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def _serve(self, body: bool) -> None:
            api = _API.match(self.path)
            if api and api.group(1) in hub.repos:
                folder = hub.repos[api.group(1)]
                info = {
                    "id": api.group(1),
                    "modelId": api.group(1),
                    "sha": COMMIT,
                    "private": False,
                    "siblings": [
                        {"rfilename": f.name, "size": f.stat().st_size}
                        for f in sorted(folder.iterdir())
                        if f.is_file() and not f.name.startswith(".")
                    ],
                }
                self._send(200, json.dumps(info).encode(), "application/json", body)
                return
            res = _RESOLVE.match(self.path)
            if res and res.group(1) in hub.repos:
                path = hub.repos[res.group(1)] / res.group(3)
                if path.is_file():
                    self._send_file(path, body)
                    return
                self._send(404, b"", "text/plain", body, {"X-Error-Code": "EntryNotFound"})
                return
            self._send(404, b"", "text/plain", body, {"X-Error-Code": "RepoNotFound"})

        def _send_file(self, path: Path, body: bool) -> None:
            size = path.stat().st_size
            start = 0
            rng = re.match(r"bytes=(\d+)-", self.headers.get("Range", ""))
            status = 200
            if rng:
                start, status = int(rng.group(1)), 206
            headers = {
                "ETag": f'"{_etag(path)}"',
                "X-Repo-Commit": COMMIT,
                "Accept-Ranges": "bytes",
            }
            if status == 206:
                headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size - start))
            self.end_headers()
            if body:
                with open(path, "rb") as fh:
                    fh.seek(start)
                    while chunk := fh.read(1 << 20):
                        self.wfile.write(chunk)

        def _send(
            self,
            status: int,
            data: bytes,
            ctype: str,
            body: bool,
            extra: Mapping[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler
