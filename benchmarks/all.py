"""Every row of issue 13's performance table, in one command.

Usage::

    python -m benchmarks.all [--quick | --check] [--json FILE]

Runs, one after the other and each in its own Python process (so no run inherits another's
heap, imports or switched-off C extension):

1. ``benchmarks.run``: the sans-IO rows (bytes in, events out; no sockets);
2. ``benchmarks.asgi_echo``: pipelined loopback echo through real servers, every group
   (uvicorn, the event-loop servers with the selector and asyncio adapters, trio);
3. ``benchmarks.scale``: memory per idle connection and broadcast to many clients.

Each prints its own tables as it goes; then this prints ONE summary, a line per row of issue
13's table: the measured figures, the target, met or NOT MET, read from the three JSON results.
``--json`` writes the summary, the correctness verdicts and the three results in one file.

``--quick`` runs each part's quick settings (about 2 to 3 minutes); ``--check`` the smallest
settings that still exercise every library and server (correctness, not speed; for CI and
the tests). The exit status is 1 when a library or server failed a correctness check, or a
part did not finish; unmet targets do not change it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .machine import facts, load_average

__all__ = ["PARTS", "SummaryRow", "main", "summarize"]

ROOT = Path(__file__).resolve().parent.parent

#: run.py's rows the summary reads (``--check`` runs only these).
RUN_ROWS = (
    "recv_binary_1m",
    "recv_binary_1m_into",
    "copy_1m",
    "recv_binary_64k",
    "recv_text_1m",
    "recv_text_64k",
    "recv_binary_1m_pure",
    "recv_text_1m_pure",
    "handshake",
)
#: Each part: its module, then its arguments for a full run, ``--quick`` and ``--check``.
PARTS: dict[str, dict[str, Any]] = {
    "run": {
        "module": "benchmarks.run",
        "full": [],
        "quick": ["--quick"],
        "check": ["--quick", "--only", ",".join(RUN_ROWS)],
    },
    "asgi_echo": {
        "module": "benchmarks.asgi_echo",
        "full": [],
        "quick": ["--quick"],
        "check": ["--check"],
    },
    "scale": {
        "module": "benchmarks.scale",
        "full": [],
        "quick": [
            *("--connections", "300", "--clients", "50", "--broadcasts", "10"),
            *("--repeat", "1", "--timeout", "60"),
        ],
        "check": [
            *("--connections", "50", "--clients", "20", "--broadcasts", "5"),
            *("--repeat", "1", "--timeout", "60"),
        ],
    },
}
#: A part that runs longer than this has failed (the full scale run takes about 6 minutes).
PART_TIMEOUT = 1800
#: Issue 13: bytes of server memory per idle connection, at most.
IDLE_BYTES = 4096
#: Issue 13: broadcasts per second over ``websockets.broadcast``, at least.
BROADCAST_RATIO = 1.5
VERDICT = {True: "met", False: "NOT MET", None: "n/a"}


@dataclass(slots=True)
class SummaryRow:
    """One line of the summary: a row of issue 13's table, measured and judged."""

    row: str
    #: The measured figures, as they read in the table.
    measured: str = "not measured"
    #: Each target as it reads, with whether it held (None: not measured).
    targets: list[tuple[str, bool | None]] = field(default_factory=list)

    @property
    def met(self) -> bool | None:
        """False when a target failed; None when one was not measured; else True."""
        verdicts = [met for _, met in self.targets]
        if False in verdicts:
            return False
        return None if not verdicts or None in verdicts else True


# -- reading the parts' results ----------------------------------------------------------------


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _ratio_target(
    label: str, value: float | None, bound: float, *, at_most: bool = False
) -> tuple[str, bool | None]:
    if value is None:
        return label, None
    return label, value <= bound if at_most else value >= bound


def run_summary(result: dict[str, Any] | None) -> list[SummaryRow]:
    """The sans-IO rows, from ``benchmarks.run``'s JSON (issue 13's targets, not issue 5's)."""
    rows = {r["name"]: r for r in (result or {}).get("results", [])}
    copy = rows.get("copy_1m", {}).get("rates", {}).get("reference")

    def row(name: str, title: str, *targets: tuple[str, str, float]) -> SummaryRow:
        """``targets``: (kind, against, bound), kind "ratio" (to a library) or "copy"."""
        line = SummaryRow(f"{title} [{name}]")
        found = rows.get(name)
        if found is None:
            line.targets = [(t[0], None) for t in _labels(targets)]
            return line
        rates, errors = found["rates"], found["errors"]
        mine = rates.get("wsmachine")
        if "wsmachine" in errors:
            line.measured = f"wsmachine {errors['wsmachine'][:60]}"
        figures = [] if mine is None else [f"{mine:,.0f} {found['unit']}"]
        for (label, _), (kind, against, bound) in zip(_labels(targets), targets, strict=True):
            if kind == "copy":
                value = mine / copy if mine and copy else None
                figures.append("n/a" if value is None else f"{value:.0%} of copy")
            else:
                theirs = rates.get(against)
                value = mine / theirs if mine and theirs else None
                figures.append(f"{_x(value)} {against}")
            line.targets.append(_ratio_target(label, value, bound))
        if mine is not None:
            line.measured = "; ".join(figures)
        return line

    return [
        row(
            "recv_binary_1m",
            "server recv 1 MiB binary, receive_data",
            ("ratio", "websockets", 2.0),
            ("copy", "copy_1m", 0.25),
        ),
        row("recv_binary_1m_into", "server recv 1 MiB binary, receive-into", ("copy", "", 0.40)),
        row("recv_binary_64k", "server recv 64 KiB binary", ("ratio", "websockets", 2.0)),
        row("recv_text_1m", "server recv 1 MiB text, decoded", ("ratio", "websockets", 1.5)),
        row("recv_text_64k", "server recv 64 KiB text, decoded", ("ratio", "websockets", 1.5)),
        row("recv_binary_1m_pure", "pure Python: recv 1 MiB binary", ("ratio", "wsproto", 1.0)),
        row("recv_text_1m_pure", "pure Python: recv 1 MiB text", ("ratio", "wsproto", 1.0)),
        row(
            "handshake",
            "server handshake",
            ("ratio", "wsproto", 1.2),
            ("ratio", "websockets", 0.85),
        ),
    ]


def _labels(targets: Sequence[tuple[str, str, float]]) -> list[tuple[str, float]]:
    return [
        (f">={bound:.0%} of copy" if kind == "copy" else f">={bound:g}x {against}", bound)
        for kind, against, bound in targets
    ]


#: The echo rows: (summary label, asgi_echo group, server).
ECHO_ROWS = (
    ("loopback echo, selector adapter", "loop", "wsmachine-selector"),
    ("loopback echo, asyncio adapter", "loop", "wsmachine"),
    ("loopback echo, trio adapter", "trio", "wsmachine-trio"),
)


def echo_summary(result: dict[str, Any] | None) -> list[SummaryRow]:
    """The echo rows, from ``benchmarks.asgi_echo``'s JSON: a line per adapter and size."""
    from .asgi_echo import GROUPS, SIZES

    lines = []
    for title, group_key, server in ECHO_ROWS:
        group = (result or {}).get("groups", {}).get(group_key, {})
        found = {r["size"]: r for r in group.get("rows", []) if r["server"] == server}
        targets = GROUPS[group_key]["targets"][server]
        for size in SIZES:
            line = SummaryRow(f"{title}, {size} [{server}]")
            row = found.get(size)
            for reference, bounds in targets.items():
                label = f">={bounds[size]:g}x {reference}"
                ratio = None if row is None else row["ratios"].get(reference)
                line.targets.append(_ratio_target(label, ratio, bounds[size]))
            if row is not None and row["median"] is not None:
                figures = [f"{row['median']:,.0f} rt/s"]
                figures += [f"{_x(row['ratios'].get(r))} {r}" for r in targets]
                line.measured = "; ".join(figures)
            elif row is not None and row["note"]:
                line.measured = row["note"][:70]
            lines.append(line)
    return lines


def scale_summary(result: dict[str, Any] | None) -> list[SummaryRow]:
    """Idle memory and broadcast, from ``benchmarks.scale``'s JSON (selector and asyncio)."""
    result = result or {}
    idle = {r["server"]: r for r in result.get("idle", {}).get("rows", [])}
    broadcast = {(r["server"], r["mode"]): r for r in result.get("broadcast", {}).get("rows", [])}
    lines = []
    for server in ("selector", "asyncio"):
        line = SummaryRow(f"idle connection memory, {server} adapter")
        row = idle.get(server)
        value = None if row is None else row["bytes_per_connection"]
        if value is not None:
            line.measured = f"{value:,.0f} B per connection"
        elif row is not None and row["note"]:
            line.measured = row["note"][:70]
        line.targets.append(_ratio_target(f"<={IDLE_BYTES:,} B", value, IDLE_BYTES, at_most=True))
        lines.append(line)
    for server in ("selector", "asyncio"):
        for mode in ("paced", "burst"):
            line = SummaryRow(f"broadcast 125 B to every client, {server} adapter, {mode}")
            row = broadcast.get((server, mode))
            ratio = None if row is None else row["ratio"]
            if row is not None and row["broadcasts_per_second"] is not None:
                line.measured = (
                    f"{row['broadcasts_per_second']:,.0f} broadcasts/s; "
                    f"{_x(ratio)} websockets.broadcast"
                )
            elif row is not None and row["note"]:
                line.measured = row["note"][:70]
            line.targets.append(
                _ratio_target(f">={BROADCAST_RATIO:g}x websockets", ratio, BROADCAST_RATIO)
            )
            lines.append(line)
    return lines


def summarize(results: dict[str, dict[str, Any] | None]) -> list[SummaryRow]:
    """Issue 13's rows from the parts' JSON results (a missing part: its rows not measured)."""
    return [
        *run_summary(results.get("run")),
        *echo_summary(results.get("asgi_echo")),
        *scale_summary(results.get("scale")),
    ]


def correctness(name: str, status: int | None, result: dict[str, Any] | None) -> dict[str, Any]:
    """Whether part ``name`` finished and every library or server in it passed its checks."""
    failed: list[str] = []
    skipped: list[str] = []
    if result is not None and name == "run":
        for row in result.get("results", []):
            failed += [f"{row['name']}: {lib}: {why}" for lib, why in row["errors"].items()]
    elif result is not None and name == "asgi_echo":
        for group in result.get("groups", {}).values():
            for server, note in group.get("notes", {}).items():
                (skipped if note.startswith("SKIPPED") else failed).append(f"{server}: {note}")
    elif result is not None and name == "scale":
        for part in ("idle", "broadcast"):
            for server, note in result.get(part, {}).get("notes", {}).items():
                target = skipped if note.startswith("SKIPPED") else failed
                target.append(f"{part}: {server}: {note}")
    if status is None:
        failed.append(f"did not finish in {PART_TIMEOUT} s")
    elif status != 0 and not failed:
        failed.append(f"exit status {status}")
    if status is not None and result is None:
        failed.append("wrote no JSON result")
    return {"ok": not failed, "exit_status": status, "failed": failed, "skipped": skipped}


# -- running --------------------------------------------------------------------------------


def run_part(module: str, args: list[str], output: Path) -> int | None:
    """``python -m module *args --json output`` from the repository root; its exit status."""
    command = [sys.executable, "-m", module, *args, "--json", str(output)]
    print(f"\n==== {' '.join(command[1:])}", flush=True)
    try:
        return subprocess.run(command, cwd=ROOT, timeout=PART_TIMEOUT, check=False).returncode
    except subprocess.TimeoutExpired:
        return None


def format_summary(rows: Sequence[SummaryRow]) -> str:
    """The summary table: row, measured, target(s), met / NOT MET."""
    table = [["issue 13 row [benchmark row or server]", "measured", "target", "met?"]]
    for row in rows:
        target = ", ".join(label for label, _ in row.targets)
        table.append([row.row, row.measured, target, VERDICT[row.met]])
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    lines = []
    for index, cells in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _load(path: Path) -> dict[str, Any] | None:
    try:
        loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return loaded


def main(
    argv: Sequence[str] | None = None,
    runner: Callable[[str, list[str], Path], int | None] = run_part,
) -> int:
    """Run the three parts, print the summary; 1 when a correctness check failed."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.all",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="each part's quick settings")
    mode.add_argument(
        "--check", action="store_true", help="smallest settings: correctness, not speed"
    )
    parser.add_argument("--json", metavar="FILE", help="also write everything as JSON")
    args = parser.parse_args(argv)
    setting = "check" if args.check else "quick" if args.quick else "full"

    env: dict[str, Any] = facts()
    env["mode"] = setting
    started = time.perf_counter()
    results: dict[str, dict[str, Any] | None] = {}
    checks: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="wsmachine-bench-") as scratch:
        for name, part in PARTS.items():
            output = Path(scratch) / f"{name}.json"
            status = runner(part["module"], list(part[setting]), output)
            results[name] = _load(output)
            checks[name] = correctness(name, status, results[name])
    env["load_average_end"] = load_average()
    env["seconds"] = round(time.perf_counter() - started, 1)

    rows = summarize(results)
    table = format_summary(rows)
    print(f"\n==== Summary: issue 13's table ({setting} run)")
    if setting == "check":
        print("(correctness check: runs too short for the figures to mean anything)")
    print(table)
    met = [r.met for r in rows]
    print(f"\nTargets met: {met.count(True)} of {len(rows)} rows ({met.count(None)} not measured)")
    print("Correctness:")
    for name, verdict in checks.items():
        state = "ok" if verdict["ok"] else "FAILED"
        print(f"  {PARTS[name]['module']}: {state}")
        for line in verdict["failed"]:
            print(f"    failed: {line}")
        for line in verdict["skipped"]:
            print(f"    {line}")
    ok = all(v["ok"] for v in checks.values())
    print(
        f"Load average at start {env['load_average_start']}, at end {env['load_average_end']}"
        f"; total {env['seconds']} s"
    )
    if args.json:
        payload = {
            "environment": env,
            "ok": ok,
            "summary": [{**asdict(r), "met": r.met} for r in rows],
            "table": table,
            "correctness": checks,
            "results": results,
        }
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
            handle.write("\n")
        print(f"results written to {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
