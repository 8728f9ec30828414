"""Facts about the machine and the software a run measured, for the report header and the JSON."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import zlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["facts", "load_average", "start_server", "stop_server"]

ROOT = Path(__file__).resolve().parent.parent

#: Distributions whose versions the numbers depend on.
DISTRIBUTIONS = ("wsmachine", "websockets", "wsproto", "h11")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (Linux), else nothing."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _memory_total() -> str | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return None


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _git() -> str | None:
    """The commit the benchmarked tree is at, ``+dirty`` when it has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head


def _wsmachine_speedups() -> bool | None:
    """Whether wsmachine.frames uses the compiled functions (the default rows' configuration)."""
    try:
        from wsmachine import frames
    except Exception:
        return None
    return frames.parse_frames is not getattr(frames, "_py_parse_frames", None)


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, where the OS has them."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def facts() -> dict[str, object]:
    """CPU, OS, Python and library versions; everything measured depends on these."""
    cpu = _cpuinfo()
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu.get("model name") or platform.processor() or platform.machine(),
        "cpu_mhz": cpu.get("cpu MHz"),
        "cpu_flags_avx2": "avx2" in cpu.get("flags", "").split() if cpu else None,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "memory": _memory_total(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_build": " ".join(platform.python_build()),
        "python_compiler": platform.python_compiler(),
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        "versions": {name: _version(name) for name in DISTRIBUTIONS},
        "wsmachine_commit": _git(),
        "wsmachine_speedups": _wsmachine_speedups(),
        "load_average_start": load_average(),
    }


def start_server(module: str, name: str) -> tuple[subprocess.Popen[str], int]:
    """Run ``python -m <module> --serve <name>`` in a subprocess; it prints its port first."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--serve", name],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip().isdigit():
        stop_server(process)
        raise RuntimeError(f"the {name} server did not start: {line!r}")
    return process, int(line)


def stop_server(process: subprocess.Popen[str]) -> None:
    """End a server started by :func:`start_server`."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    if process.stdout is not None:
        process.stdout.close()
