"""Benchmark wsmachine against websockets and wsproto: every row of issue 5, in one run.

Usage::

    python -m benchmarks.run [--quick] [--json FILE] [--png FILE] [--only NAME[,NAME...]] [--gc]

Each workload is timed repeatedly with the libraries interleaved (A B C, B C A, C A B, ...);
the table shows medians, wsmachine's ratios to websockets and wsproto (> 1: wsmachine is
better), and each row's target from issue 5 next to the measured value, met or not. Every
timed run is checked afterwards; a library that produced the wrong result is reported as FAIL
instead of a number.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from .adapters import Adapter, load_adapters
from .machine import facts, load_average
from .targets import REFERENCE, Check
from .workloads import VerificationError, Workload, make_workloads

__all__ = ["Result", "main", "measure"]

LIBRARIES = ("wsmachine", "websockets", "wsproto")


@dataclass(slots=True)
class Result:
    """Medians, samples, failures and target checks of one workload."""

    name: str
    title: str
    unit: str
    #: False when a smaller number is better (memory).
    higher_is_better: bool = True
    #: The libraries this row measured (``"reference"`` for a reference row).
    libraries: list[str] = field(default_factory=list)
    #: Median per library.
    rates: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    #: Library → why it has no number ("FAIL: ..." for a wrong result, "ERROR: ..." otherwise).
    errors: dict[str, str] = field(default_factory=dict)
    #: Issue 5's targets for this row, held against the medians.
    checks: list[Check] = field(default_factory=list)

    def spread(self) -> float | None:
        """The widest (max - min) / median over the libraries' samples: the run's noise."""
        spreads = [
            (max(s) - min(s)) / statistics.median(s)
            for n, s in self.samples.items()
            if n not in self.errors and len(s) > 1
        ]
        return max(spreads, default=None)

    def ratio(self, other: str) -> float | None:
        """wsmachine against ``other``, > 1 when wsmachine is better.

        wsmachine's median over ``other``'s; for a row where smaller is better, the inverse.
        """
        mine, theirs = self.rates.get("wsmachine"), self.rates.get(other)
        if not mine or not theirs:
            return None
        return mine / theirs if self.higher_is_better else theirs / mine

    def met(self) -> bool | None:
        """Whether every target held: None when the row has none or one was not measured."""
        if not self.checks:
            return None
        if any(c.met is False for c in self.checks):
            return False
        if any(c.met is None for c in self.checks):
            return None
        return True


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
    """One checked, timed run; return the row's number (a rate, or bytes)."""
    call = workload.prepare(adapter)
    elapsed, result = time_once(call, keep_gc)
    workload.verify(result)
    return workload.value(elapsed, result)


def _rotated(items: Sequence[Adapter | None], shift: int) -> list[Adapter | None]:
    shift %= len(items)
    return [*items[shift:], *items[:shift]]


def _describe_error(exc: Exception) -> str:
    kind = "FAIL" if isinstance(exc, VerificationError) else "ERROR"
    return f"{kind}: {type(exc).__name__}: {exc}"


def contenders(workload: Workload, adapters: Sequence[Adapter]) -> list[Adapter | None]:
    """What a row times: nothing but the reference, or the loaded libraries it is about."""
    if workload.reference:
        return [None]
    wanted = workload.libraries
    return [a for a in adapters if wanted is None or a.name in wanted]


def measure(
    workload: Workload, adapters: Sequence[Adapter], reps: int, warmup: int, keep_gc: bool
) -> Result:
    """Time ``workload`` ``warmup + reps`` rounds, libraries interleaved and rotated."""
    result = Result(workload.name, workload.title, workload.unit, workload.higher_is_better)
    timed = contenders(workload, adapters)
    names = {id(a): (a.name if a is not None else REFERENCE) for a in timed}
    result.libraries = list(names.values())
    if not timed:
        return result
    if workload.max_rounds is not None:
        reps = min(reps, workload.max_rounds)
    try:
        workload.build()
    except Exception as exc:
        for name in result.libraries:
            result.errors[name] = f"ERROR: building the inputs: {type(exc).__name__}: {exc}"
        return result
    try:
        for round_ in range(warmup + reps):
            for adapter in _rotated(timed, round_):
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


def check_targets(workloads: Sequence[Workload], results: Sequence[Result]) -> None:
    """Hold every row's measurements against its targets (some refer to other rows)."""
    rows = {r.name: r for r in results}
    for workload, result in zip(workloads, results, strict=True):
        result.checks = [target.check(result, rows) for target in workload.targets]


# -- the table ------------------------------------------------------------------------------------


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
    if library not in result.libraries:
        return "-"
    if library in result.errors:
        return result.errors[library].split(":", 1)[0]
    return _fmt_rate(result.rates.get(library))


def _ratio_cell(result: Result, library: str) -> str:
    if library not in result.libraries:
        return ""
    return _fmt_ratio(result.ratio(library))


def _met_cell(result: Result) -> str:
    met = result.met()
    if not result.checks:
        return ""
    return {True: "met", False: "NOT MET", None: "?"}[met]


HEADER = [
    "workload",
    "unit",
    *LIBRARIES,
    "vs websockets",
    "vs wsproto",
    "spread",
    "target (issue 5)",
    "measured",
    "met?",
]


def format_table(results: Sequence[Result]) -> str:
    """The results table: medians per library, wsmachine's ratios, the targets."""
    rows = [HEADER]
    for r in results:
        targets = [
            "; ".join(c.target for c in r.checks),
            "; ".join(c.shown for c in r.checks),
            _met_cell(r),
        ]
        if r.libraries == [REFERENCE]:
            value = _cell(r, REFERENCE)
            rows.append(
                [r.title, r.unit, value, value, value, "(no library)", "", _fmt_pct(r), *targets]
            )
            continue
        rows.append(
            [
                r.title,
                r.unit,
                *(_cell(r, lib) for lib in LIBRARIES),
                _ratio_cell(r, "websockets"),
                _ratio_cell(r, "wsproto"),
                _fmt_pct(r),
                *targets,
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    left = {0, 1, 8, 9, 10}
    lines = []
    for index, row in enumerate(rows):
        cells = [
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths).rstrip())
    return "\n".join(lines)


NOTES = """\
Numbers are medians. Ratios > 1: wsmachine is better: its rate / the peer's rate, and for the
memory row (bytes, smaller is better) the peer's bytes / wsmachine's. spread: the widest
(max - min) / median over the rounds of any one library. "pure Python" rows run wsmachine with
its C extension switched off. The echo rows' columns are servers in their own processes
(wsmachine: the selector adapter; websockets: its asyncio server), one client, round trips/s.
MB = 10**6 bytes of payload; the memory target's 1 KB is 1000 bytes."""


# -- the report -----------------------------------------------------------------------------------


def environment(
    adapters: Sequence[Adapter],
    missing: dict[str, str],
    args: argparse.Namespace,
    reps: int,
    warmup: int,
) -> dict[str, object]:
    """What the numbers depend on, for the header and the JSON file."""
    return {
        **facts(),
        "libraries": {a.name: a.describe() for a in adapters},
        "websockets_speedups": any(getattr(a, "speedups", False) for a in adapters),
        "unavailable": missing,
        "mode": "quick" if args.quick else "full",
        "repetitions": reps,
        "warmup_rounds": warmup,
        "gc_during_timing": args.gc,
    }


def _load(value: object) -> str:
    return " ".join(f"{x:.2f}" for x in value) if isinstance(value, list) else "n/a"


def print_header(env: dict[str, object]) -> None:
    """The environment lines above the table."""
    print(
        f"Machine: {env['cpu']}, {env['usable_cpus']} usable of {env['logical_cpus']} logical "
        f"CPUs, {env['memory']}; {env['os']}"
    )
    print(f"Python: {env['python']} ({env['python_compiler']}), zlib {env['zlib']}")
    libraries = env["libraries"]
    assert isinstance(libraries, dict)
    for description in libraries.values():
        print(f"  {description}")
    versions = env["versions"]
    assert isinstance(versions, dict)
    print(f"  h11 {versions.get('h11')}; wsmachine commit {env['wsmachine_commit']}")
    missing = env["unavailable"]
    assert isinstance(missing, dict)
    for name, reason in missing.items():
        print(f"  {name}: UNAVAILABLE - {reason}")
    gc_state = "on" if env["gc_during_timing"] else "off"
    print(f"Load average (1, 5, 15 min) at start: {_load(env['load_average_start'])}")
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
    parser.add_argument("--quick", action="store_true", help="short run (< 40 s)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--png", metavar="FILE", help="also draw the ratios and targets as a PNG (matplotlib)"
    )
    parser.add_argument(
        "--only",
        metavar="NAME",
        help="comma-separated workload names (substring match): "
        + ", ".join(w.name for w in make_workloads(quick=True)),
    )
    parser.add_argument(
        "--gc", action="store_true", help="leave the garbage collector on while timing"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected workloads, print the table, optionally write JSON and a chart."""
    args = parse_args(argv)
    if args.png:
        from .chart import require_matplotlib

        require_matplotlib()  # fail now, not after the run
    reps, warmup = (5, 0) if args.quick else (11, 1)
    adapters, missing = load_adapters()
    env = environment(adapters, missing, args, reps, warmup)
    print_header(env)
    started = time.perf_counter()
    workloads = select(make_workloads(args.quick), args.only)
    results = []
    for workload in workloads:
        print(f"  running {workload.name} ...", file=sys.stderr, flush=True)
        results.append(measure(workload, adapters, reps, warmup, args.gc))
    check_targets(workloads, results)
    env["load_average_end"] = load_average()
    env["seconds"] = round(time.perf_counter() - started, 1)
    table = format_table(results)
    print(table)
    print()
    print(NOTES)
    print_errors(results)
    met = [r.met() for r in results if r.checks]
    print(
        f"\nTargets met: {met.count(True)} of {len(met)} rows"
        f"; load average at end: {_load(env['load_average_end'])}"
        f"; total {env['seconds']} s"
    )
    payload = {
        "environment": env,
        "results": [{**asdict(r), "spread": r.spread(), "met": r.met()} for r in results],
        "table": table,
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
            handle.write("\n")
    if args.png:
        from .chart import write_png

        write_png(payload, args.png)
        print(f"chart written to {args.png}")
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
