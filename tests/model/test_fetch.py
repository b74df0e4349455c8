"""fetch_model against a local stand-in of the hub: offline failures, cancel, bad repos.

The whole fetch (download, convert, quantize, use) runs through the command line in
tests/cli/test_model.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants
import pytest
from hubstandin import HubStandIn

from sr3desk.errors import OfflineError, Sr3Error
from sr3desk.model.fetch import FetchCancelled, FetchProgress, fetch_model


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo the suite's offline switch: these tests talk to a server on 127.0.0.1."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def checkpoint_repo(hf_dir: Path, repo_dir: Path) -> Path:
    """A repo folder holding (links to) the checkpoint files of ``hf_dir``, no GGUFs."""
    repo_dir.mkdir(parents=True)
    for f in hf_dir.iterdir():
        if f.is_file() and not f.name.startswith(".") and f.suffix != ".gguf":
            (repo_dir / f.name).symlink_to(f)
    return repo_dir


@pytest.fixture
def hub(tiny_qwen2_dir: Path, tmp_path: Path) -> Iterator[HubStandIn]:
    repo = checkpoint_repo(tiny_qwen2_dir, tmp_path / "hub" / "tiny-qwen2")
    with HubStandIn({"local/tiny-qwen2": repo}) as server:
        yield server


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_offline_switch_fails_at_once(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE"):
        fetch_model("local/tiny-qwen2", tmp_path / "models", endpoint="http://127.0.0.1:9")
    assert time.monotonic() - start < 30  # no retries, no waiting for a network
    assert not (tmp_path / "models").exists()


def test_unreachable_hub_fails_at_once(tmp_path: Path, online: None) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(OfflineError, match=r"Cannot reach 127\.0\.0\.1"):
        fetch_model("local/tiny-qwen2", tmp_path / "models", endpoint=url)
    assert not (tmp_path / "models").exists()


def test_unknown_repo(tmp_path: Path, online: None, hub: HubStandIn) -> None:
    with pytest.raises(Sr3Error, match="no such public model"):
        fetch_model("local/nothing-here", tmp_path / "models", endpoint=hub.url)


def test_cancel_stops_the_download(tmp_path: Path, online: None, hub: HubStandIn) -> None:
    cancel = threading.Event()
    reports: list[FetchProgress] = []

    def progress(p: FetchProgress) -> None:
        reports.append(p)
        if p.stage == "download" and p.done:
            cancel.set()

    dest = tmp_path / "models"
    with pytest.raises(FetchCancelled):
        fetch_model("local/tiny-qwen2", dest, progress=progress, cancel=cancel, endpoint=hub.url)
    downloads = [p for p in reports if p.stage == "download"]
    total = sum(f.stat().st_size for f in hub.repos["local/tiny-qwen2"].iterdir() if f.is_file())
    assert downloads and downloads[0].total == total
    assert downloads[-1].done is not None and downloads[-1].done < total
    assert not list(dest.glob("*.gguf"))
    assert any(r.startswith("GET /api/models/local/tiny-qwen2") for r in hub.requests)
