"""The CPU's instruction-set features that llama.cpp's CPU code depends on.

Two users:

- the Makefile keys the cache of the llama-cpp-python wheel by
  ``python3 sr3desk/model/cpufeatures.py --cache-key CMAKE_ARGS``: a native
  (``-march=native``) build is only reused on a CPU with the same features and
  the same build flags, so one CPU's build is never handed to another (an
  illegal instruction, or the AMX path on a CPU that should not take it);
- the runtime (``sr3desk.model.native``) asks :func:`has_amx` to decide whether
  llama.cpp may put weights into its extra ("repack"/AMX) buffer types;
- llama.cpp and the cross-encoder size their thread pools by :func:`physical_cores`.

This file imports nothing outside the standard library: the Makefile runs it
with the system Python before any virtual environment exists.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import sys
from pathlib import Path

# Flags (as /proc/cpuinfo spells them) that change what a native ggml build
# compiles or which kernels it picks: SIMD width, FMA/F16C, VNNI, BF16, AMX.
_ISA = re.compile(
    r"^(pni|ssse3|sse4_1|sse4_2|avx|avx2|fma|f16c|bmi2|avx_vnni|avx512\w*|amx\w*|sve\w*|"
    r"asimd\w*|i8mm|bf16|dotprod)$"
)


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The ISA features of this CPU relevant to llama.cpp.

    Takes the text of ``/proc/cpuinfo`` (read from the system when None) and
    returns the matching flag names; an empty set where the file is missing
    (macOS, Windows), in which case callers fall back to the machine name.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return frozenset()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(f for f in value.split() if _ISA.match(f))
            break  # every core of one machine reports the same set
    return frozenset(flags)


def physical_cores() -> int:
    """The physical cores this process may use (SMT siblings counted once).

    Matrix kernels gain nothing from SMT siblings and thread barriers suffer from
    oversubscription, so logical CPUs are mapped to cores.
    """
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        allowed = set(range(os.cpu_count() or 1))
    cores: set[tuple[str, str]] = set()
    for cpu in allowed:
        base = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            core = (base / "physical_package_id").read_text(), (base / "core_id").read_text()
        except OSError:
            core = (str(cpu), "")
        cores.add(core)
    return max(1, len(cores) or len(allowed))


def has_amx(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU has Intel AMX tiles for int8 (llama.cpp's AMX path)."""
    return "amx_int8" in (cpu_flags() if flags is None else flags)


def cache_key(build_flags: str, flags: frozenset[str] | None = None) -> str:
    """A short, stable name for a wheel built natively on this CPU with these flags.

    Takes the CMake arguments of the build and returns e.g. ``x86_64-3f2a9c01d4e7``:
    the machine name and a hash of the sorted ISA flags and the build flags.
    """
    flags = cpu_flags() if flags is None else flags
    text = " ".join(sorted(flags)) + "|" + " ".join(build_flags.split())
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{platform.machine() or 'cpu'}-{digest}"


def _main(argv: list[str]) -> int:
    if argv[:1] == ["--cache-key"]:
        sys.stdout.write(cache_key(" ".join(argv[1:])) + "\n")
        return 0
    if argv[:1] == ["--flags"]:
        sys.stdout.write(" ".join(sorted(cpu_flags())) + "\n")
        return 0
    sys.stderr.write("usage: cpufeatures.py --cache-key [CMAKE_ARGS...] | --flags\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
