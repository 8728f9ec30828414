"""Benchmark wsmachine against websockets and wsproto, sans-IO layers only, in one process.

Usage::

    python -m benchmarks.run [--quick] [--json FILE] [--only NAME[,NAME...]] [--gc]

Each workload is timed repeatedly with the libraries interleaved (A B C, B C A, C A B, ...);
the table shows medians and the ratios wsmachine/websockets and wsmachine/wsproto (> 1: wsmachine
is faster). Every timed run is checked afterwards; a library that produced the wrong result is
reported as FAIL instead of a number.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from .adapters import Adapter, load_adapters
from .workloads import VerificationError, Workload, make_workloads

__all__ = ["Result", "main", "measure"]

LIBRARIES = ("wsmachine", "websockets", "wsproto")
REFERENCE = "reference"


@dataclass(slots=True)
class Result:
    """Medians, samples and failures of one workload."""

    name: str
    title: str
    unit: str
    #: Median rate per library (``"reference"`` for a reference row).
    rates: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    #: Library → why it has no number ("FAIL: ..." for a wrong result, "ERROR: ..." otherwise).
    errors: dict[str, str] = field(default_factory=dict)

    def spread(self) -> float | None:
        """The widest (max - min) / median over the libraries' samples: the run's noise."""
        spreads = [
            (max(s) - min(s)) / statistics.median(s)
            for n, s in self.samples.items()
            if n not in self.errors and len(s) > 1
        ]
        return max(spreads, default=None)

    def ratio(self, other: str) -> float | None:
        """wsmachine's rate divided by ``other``'s, when both exist."""
        mine, theirs = self.rates.get("wsmachine"), self.rates.get(other)
        if mine is None or not theirs:
            return None
        return mine / theirs


def time_once(call: Callable[[], object], keep_gc: bool) -> tuple[float, object]:
    """Run ``call`` once; return (seconds, result). The collector is off unless ``keep_gc``."""
    gc.collect()
    if not keep_gc:
        gc.disable()
    try:
        start = time.perf_counter()
        result = call()
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return elapsed, result


def run_one(workload: Workload, adapter: Adapter | None, keep_gc: bool) -> float:
    """One checked, timed run; return the rate in the workload's unit."""
    call = workload.prepare(adapter)
    elapsed, result = time_once(call, keep_gc)
    workload.verify(result)
    return workload.work / elapsed


def _rotated(items: Sequence[Adapter | None], shift: int) -> list[Adapter | None]:
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def _describe_error(exc: Exception) -> str:
    kind = "FAIL" if isinstance(exc, VerificationError) else "ERROR"
    return f"{kind}: {type(exc).__name__}: {exc}"


def measure(
    workload: Workload, adapters: Sequence[Adapter], reps: int, warmup: int, keep_gc: bool
) -> Result:
    """Time ``workload`` ``warmup + reps`` rounds, libraries interleaved and rotated."""
    result = Result(workload.name, workload.title, workload.unit)
    contenders: list[Adapter | None] = [None] if workload.reference else list(adapters)
    names = {id(a): (a.name if a is not None else REFERENCE) for a in contenders}
    workload.build()
    try:
        for round_ in range(warmup + reps):
            for adapter in _rotated(contenders, round_):
                name = names[id(adapter)]
                if name in result.errors:
                    continue
                try:
                    rate = run_one(workload, adapter, keep_gc)
                except Exception as exc:
                    result.errors[name] = _describe_error(exc)
                    continue
                if round_ >= warmup:
                    result.samples.setdefault(name, []).append(rate)
    finally:
        workload.release()
    result.rates = {
        n: statistics.median(s) for n, s in result.samples.items() if n not in result.errors
    }
    return result


def _fmt_rate(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.1f}k"
    return f"{value:,.0f}"


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _fmt_pct(result: Result) -> str:
    spread = result.spread()
    return "-" if spread is None else f"{spread:.0%}"


def _cell(result: Result, library: str) -> str:
    if library in result.errors:
        return result.errors[library].split(":", 1)[0]
    return _fmt_rate(result.rates.get(library))


def format_table(results: Sequence[Result]) -> str:
    """The results table: medians per library and wsmachine's ratios."""
    header = ["workload", "unit", *LIBRARIES, "wsm/websockets", "wsm/wsproto", "spread"]
    rows = [header]
    for r in results:
        if REFERENCE in r.rates or REFERENCE in r.errors:
            value = _cell(r, REFERENCE)
            rows.append([r.title, r.unit, value, value, value, "(no library)", "", _fmt_pct(r)])
            continue
        rows.append(
            [
                r.title,
                r.unit,
                *(_cell(r, lib) for lib in LIBRARIES),
                _fmt_ratio(r.ratio("websockets")),
                _fmt_ratio(r.ratio("wsproto")),
                _fmt_pct(r),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [c.rjust(w) for c, w in zip(row[2:], widths[2:], strict=True)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def environment(
    adapters: Sequence[Adapter],
    missing: dict[str, str],
    args: argparse.Namespace,
    reps: int,
    warmup: int,
) -> dict[str, object]:
    """What the numbers depend on, for the header and the JSON file."""
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "libraries": {a.name: a.describe() for a in adapters},
        "websockets_speedups": any(getattr(a, "speedups", False) for a in adapters),
        "unavailable": missing,
        "mode": "quick" if args.quick else "full",
        "repetitions": reps,
        "warmup_rounds": warmup,
        "gc_during_timing": args.gc,
    }


def print_header(env: dict[str, object]) -> None:
    """The environment lines above the table."""
    print(f"Python: {env['python']} on {env['platform']}")
    libraries = env["libraries"]
    assert isinstance(libraries, dict)
    for description in libraries.values():
        print(f"  {description}")
    missing = env["unavailable"]
    assert isinstance(missing, dict)
    for name, reason in missing.items():
        print(f"  {name}: UNAVAILABLE - {reason}")
    gc_state = "on" if env["gc_during_timing"] else "off"
    print(
        f"Mode: {env['mode']}, {env['repetitions']} measured rounds "
        f"(+{env['warmup_rounds']} warm-up), medians, gc {gc_state} while timing\n"
    )


def print_errors(results: Sequence[Result]) -> None:
    """The full text of every failure below the table."""
    failures = [(r.name, lib, msg) for r in results for lib, msg in r.errors.items()]
    if failures:
        print("\nFailures (no number reported for these):")
    for name, lib, message in failures:
        print(f"  {name} / {lib}: {message}")


def select(workloads: list[Workload], only: str | None) -> list[Workload]:
    """Workloads whose name contains one of the comma-separated ``only`` names."""
    if not only:
        return workloads
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen = [w for w in workloads if any(name in w.name for name in wanted)]
    if not chosen:
        names = ", ".join(w.name for w in workloads)
        raise SystemExit(f"--only {only!r} matches no workload; choose from: {names}")
    return chosen


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="short run (< 30 s)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--only", metavar="NAME", help="comma-separated workload name(s)")
    parser.add_argument(
        "--gc", action="store_true", help="leave the garbage collector on while timing"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected workloads, print the table, optionally write JSON."""
    args = parse_args(argv)
    reps, warmup = (5, 0) if args.quick else (11, 1)
    adapters, missing = load_adapters()
    env = environment(adapters, missing, args, reps, warmup)
    print_header(env)
    started = time.perf_counter()
    results = []
    for workload in select(make_workloads(args.quick), args.only):
        print(f"  running {workload.name} ...", file=sys.stderr, flush=True)
        results.append(measure(workload, adapters, reps, warmup, args.gc))
    print(format_table(results))
    print(
        "\nrates are medians; ratios > 1: wsmachine is faster; spread: widest (max - min) / median"
        " over the rounds of any one library"
    )
    print_errors(results)
    print(f"\n(total {time.perf_counter() - started:.1f} s)")
    if args.json:
        rows = [{**asdict(r), "spread": r.spread()} for r in results]
        payload = {"environment": env, "results": rows}
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
