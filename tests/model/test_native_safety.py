"""llama.cpp on the CPU the tests run on: every shipped quantization embeds and
reasons without crashing, the buffer policy, and crash reports in one line."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from sr3desk.model import cpufeatures
from sr3desk.model.crash import REPACK_ENV, crash_message, supervise
from sr3desk.model.native import repack_enabled

# Run in a child: a crash in llama.cpp must fail this test with its reason, not
# take pytest down with it.
_EMBED_AND_REASON = textwrap.dedent(
    """
    import sys
    import numpy as np
    from sr3desk.model.runtime import open_embedder

    with open_embedder(sys.argv[1], threads=2, n_ctx=512) as emb:
        docs = emb.embed_documents(["The os.path module joins paths.", "Reading files"])
        query = emb.embed_query("join two paths", reason=True, max_reason_tokens=24)
    assert docs.shape[0] == 2 and np.isfinite(docs).all(), docs
    assert np.isfinite(query.vector).all()
    print("ok", docs.shape[1], query.forced)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["F16", "Q8_0", "Q4_K_M"])
def test_every_shipped_quantization_embeds_and_reasons(
    quant: str, smollm2_gguf: Callable[[str], Path]
) -> None:
    model = smollm2_gguf(quant)
    out = subprocess.run(
        [sys.executable, "-c", _EMBED_AND_REASON, str(model)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode < 0:
        pytest.fail(
            f"llama.cpp crashed on this CPU with {model.name}: "
            f"{crash_message(-out.returncode, str(model), 'embedding')}\n{out.stderr[-2000:]}"
        )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok "), out.stdout


def test_repack_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REPACK_ENV, "off")
    assert repack_enabled() is False
    monkeypatch.setenv(REPACK_ENV, "on")
    assert repack_enabled() is True
    monkeypatch.setenv(REPACK_ENV, "auto")
    monkeypatch.setattr("sr3desk.model.native.has_amx", lambda: True)
    assert repack_enabled() is False  # the AMX path crashes: never by default


def test_cpu_flags_and_cache_key() -> None:
    amx = "flags\t\t: fpu sse4_2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8 ht\n"
    plain = "flags\t\t: fpu sse4_2 avx2 fma ht\n"
    flags = cpufeatures.cpu_flags(amx)
    assert {"avx512f", "amx_int8", "avx512_bf16"} <= flags and "ht" not in flags
    assert cpufeatures.has_amx(flags) and not cpufeatures.has_amx(cpufeatures.cpu_flags(plain))
    # Different CPUs or different build flags never share a wheel.
    keys = {
        cpufeatures.cache_key("", flags),
        cpufeatures.cache_key("", cpufeatures.cpu_flags(plain)),
        cpufeatures.cache_key("-DGGML_CUDA=on", flags),
    }
    assert len(keys) == 3
    assert cpufeatures.cache_key(" ", flags) == cpufeatures.cache_key("", flags)


def test_supervised_crash_is_one_line(capfd: pytest.CaptureFixture[str]) -> None:
    crasher = (
        "import os, signal; from sr3desk.model.crash import note_model; "
        "note_model('/models/broken.Q8_0.gguf'); os.kill(os.getpid(), signal.SIGSEGV)"
    )
    code = supervise([], "sr3desk embed", program=[sys.executable, "-c", crasher])
    assert code == 128 + signal.SIGSEGV
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "llama.cpp" in err and "/models/broken.Q8_0.gguf" in err and "SIGSEGV" in err
    assert f"exit code {128 + signal.SIGSEGV}" in err and f"{REPACK_ENV}=off" in err


def test_supervised_exit_code_passes_through() -> None:
    assert supervise([], "x", program=[sys.executable, "-c", "raise SystemExit(3)"]) == 3


def test_the_watchers_control_signals_sent_to_the_supervisor_reach_the_child(
    tmp_path: Path,
) -> None:
    """`sr3desk watch` pauses on SIGUSR1, resumes on SIGUSR2 and rescans on SIGHUP; sent
    to the supervising process, each must reach the child, not kill both."""
    import os
    import time

    got = tmp_path / "got.txt"
    child = textwrap.dedent(
        f"""
        import signal, sys, time
        out = open({str(got)!r}, "a")
        def note(n, f):
            out.write(signal.Signals(n).name + "\\n")
            out.flush()
            if n == signal.SIGUSR2:
                sys.exit(7)
        for s in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(s, note)
        out.write("ready\\n")
        out.flush()
        while True:
            time.sleep(0.05)
        """
    )
    parent = (
        "import sys; from sr3desk.model.crash import supervise; "
        f"sys.exit(supervise([], 'sr3desk watch', program=[sys.executable, '-c', {child!r}]))"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent])
    try:
        deadline = time.monotonic() + 60
        while "ready" not in (got.read_text() if got.exists() else ""):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            os.kill(proc.pid, sig)
            time.sleep(0.3)
        assert proc.wait(timeout=30) == 7
    finally:
        if proc.poll() is None:
            proc.kill()
    assert got.read_text().split() == ["ready", "SIGHUP", "SIGUSR1", "SIGUSR2"]
