"""Run the Autobahn TestSuite cases with kosoku through the adapters' public APIs.

``python -m tests.autobahn.run [--adapter selector|blocking|trio|all] [--role server|client|both]
[--cases GLOB ...] [--exclude GLOB ...] [--deflate] [--outdir DIR]``

For each adapter (:mod:`tests.autobahn.adapters`):

* server role: an echo server written with the adapter's server API, in a process of its own
  (:mod:`.processes`), on 127.0.0.1 and a port the OS picks, and kosoku's fuzzing client against
  it;
* client role: kosoku's fuzzing server, and a case client, in a process of its own, that opens
  every case with the adapter's client API and echoes until the server closes
  (:class:`.common.CaseClient`).

Each role is one kosoku call for all its cases, ``--concurrency`` cases at a time (most cases
spend their time waiting, so running many at once shortens the run even on 2 cores); the two
roles run at the same time, the adapters one after the other. Every kosoku call is bounded by
``--timeout``, every thread and process started here by a bounded wait. Prints the counts
per behavior, per role and per case group, and each case that is not OK; writes
``OUTDIR/ADAPTER/autobahn-summary.json`` and kosoku's per-case reports
(``OUTDIR/ADAPTER/server``, ``OUTDIR/ADAPTER/client``). Exits 1 when any case is NON-STRICT,
UNIMPLEMENTED, FAILED or ERROR, or INFORMATIONAL other than 7.1.6, 7.13.1 and 7.13.2, or
when the harness itself failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import kosoku

from .adapters import ADAPTERS, load
from .common import ClientStats
from .processes import run_client, start_server
from .results import DEFAULT_CASES, DEFLATE_CASES, CaseOutcome, Role, RoleReport, Summary

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_OUTDIR",
    "DEFLATE_CONCURRENCY",
    "SUMMARY_NAME",
    "main",
    "run_autobahn",
]

T = TypeVar("T")

DEFAULT_OUTDIR = Path("reports/autobahn")
#: Autobahn's own limit for its slowest cases (12.*); our side ends a connection after it.
DEFAULT_CASE_TIMEOUT = 480.0
SUMMARY_NAME = "autobahn-summary.json"
#: Cases at once, per role.
DEFAULT_CONCURRENCY = 16
#: Cases at once with permessage-deflate. The selector adapter serves every connection from
#: one thread and kosoku's cases share one interpreter lock: at 16 at once, the 12.* cases of
#: 1000 small messages waited behind those of large ones and missed kosoku's 60 s limit.
#: 4 at once take no longer in all (the run is CPU-bound either way).
DEFLATE_CONCURRENCY = 4
#: Seconds for an echo server to start listening, and to stop (its connections included).
START_SECONDS = 15.0
STOP_SECONDS = 15.0
#: Seconds the case client may take to stop once kosoku has answered (sessions poll twice a
#: second; this only bounds the wait).
CLIENT_STOP_SECONDS = 30.0


async def _in_thread(call: Callable[[], T], name: str, timeout: float) -> T:
    """``call()`` in a new daemon thread, awaited at most ``timeout`` seconds.

    Not ``asyncio.to_thread``: on Python 3.11 ``asyncio.run`` waits without bound for the
    default executor's threads, so one stuck thread would hang the whole run.

    :raises TimeoutError: ``call`` did not return in time (its thread is left behind).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(outcome: tuple[T] | Exception) -> None:
        if future.done():  # cancelled by the timeout
            return
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome[0])

    def target() -> None:
        outcome: tuple[T] | Exception
        try:
            outcome = (call(),)
        except Exception as error:
            outcome = error
        with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody waits
            loop.call_soon_threadsafe(deliver, outcome)

    threading.Thread(target=target, name=name, daemon=True).start()
    return await asyncio.wait_for(future, timeout)


async def _kosoku_call(call: Awaitable[Any], timeout: float, report: RoleReport) -> list[Any]:
    """Await a kosoku call under ``timeout``; its results even when some cases failed."""
    try:
        return list(await asyncio.wait_for(call, timeout))
    except kosoku.FailureError as failure:
        return list(failure.results)
    except TimeoutError:
        report.harness_errors.append(f"kosoku did not finish within {timeout:.0f} s")
    return []


def _write_case_reports(results: Sequence[Any], outdir: Path, report: RoleReport) -> None:
    """Write kosoku's own per-case reports (JSON with the wire log, and HTML), if it can."""
    try:
        from kosoku._report import write_reports  # private API: guarded below

        write_reports(list(results), str(outdir))
    except Exception as error:  # the summary must still be written
        report.harness_errors.append(f"could not write kosoku's reports: {error!r}")


def _finish(report: RoleReport, results: Sequence[Any], start: float, outdir: Path) -> None:
    """Record ``results`` in ``report`` and write kosoku's reports to ``outdir``."""
    report.seconds = time.monotonic() - start
    report.outcomes = [CaseOutcome.from_result(r) for r in results]
    if not results and not report.harness_errors:
        report.harness_errors.append("kosoku returned no results")
    if results:
        _write_case_reports(results, outdir, report)


async def run_server_role(
    adapter: str,
    cases: Sequence[str],
    exclude: Sequence[str],
    *,
    deflate: bool,
    concurrency: int,
    timeout: float,
    outdir: Path,
) -> RoleReport:
    """Test the adapter's echo server, in a process of its own (:mod:`.processes`), with
    kosoku's fuzzing client."""
    report = RoleReport("server")
    start = time.monotonic()
    results: list[Any] = []
    try:
        server = await _in_thread(
            lambda: start_server(adapter, deflate=deflate, timeout=START_SECONDS),
            "autobahn-start-server",
            START_SECONDS + 5.0,
        )
    except Exception as error:
        report.harness_errors.append(f"the echo server did not start: {error!r}")
        _finish(report, results, start, outdir)
        return report
    try:
        call = kosoku.run_fuzzingclient(
            server.url, list(cases), list(exclude) or None, concurrency=concurrency
        )
        results = await _kosoku_call(call, timeout, report)
    finally:
        try:
            errors = await _in_thread(
                lambda: server.stop(STOP_SECONDS), "autobahn-stop-server", STOP_SECONDS + 5.0
            )
        except Exception as error:  # TimeoutError included
            errors = [f"stop() failed: {error!r}"]
        report.harness_errors += [f"echo server: {e}" for e in errors]
    _finish(report, results, start, outdir)
    return report


async def run_client_role(
    adapter: str,
    cases: Sequence[str],
    exclude: Sequence[str],
    *,
    deflate: bool,
    concurrency: int,
    timeout: float,
    case_timeout: float,
    outdir: Path,
) -> RoleReport:
    """Test the adapter's case client, in a process of its own (:mod:`.processes`), against
    kosoku's fuzzing server."""
    report = RoleReport("client")
    start = time.monotonic()
    fuzzing_server = kosoku.run_fuzzingserver(
        list(cases), list(exclude) or None, host="127.0.0.1", port=0
    )
    stop = threading.Event()
    async with fuzzing_server as fuzzer:
        # The client stops starting cases a little before kosoku's bound, so that its
        # updateReports still gets the results of the cases that did run.
        seconds = max(timeout - 10.0, timeout * 0.9) - (time.monotonic() - start)
        driver = asyncio.ensure_future(
            _in_thread(
                lambda: run_client(
                    adapter,
                    f"ws://127.0.0.1:{fuzzer.port}",
                    deflate=deflate,
                    workers=concurrency,
                    seconds=seconds,
                    case_timeout=case_timeout,
                    stop=stop,
                ),
                "autobahn-case-client",
                timeout + CLIENT_STOP_SECONDS,
            )
        )
        try:
            results = await _kosoku_call(fuzzer.get_result(), timeout, report)
        finally:
            stop.set()
            with contextlib.suppress(Exception):  # TimeoutError: reported just below
                await asyncio.wait_for(asyncio.shield(driver), CLIENT_STOP_SECONDS)
    if driver.done() and not driver.cancelled() and driver.exception() is None:
        stats = driver.result()
    else:
        report.harness_errors.append("the case client did not stop")
        driver.cancel()
        stats = ClientStats()
    report.connections = dict(stats.endings)
    report.harness_errors += [f"case client: {e}" for e in stats.errors]
    if stats.case_count and len(results) != stats.case_count:
        report.harness_errors.append(
            f"kosoku served {stats.case_count} cases but reported {len(results)}"
        )
    _finish(report, results, start, outdir)
    return report


async def run_autobahn(
    adapter: str,
    roles: Sequence[Role] = ("server", "client"),
    cases: Sequence[str] = DEFAULT_CASES,
    exclude: Sequence[str] = (),
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    timeout: float = 300.0,
    case_timeout: float = DEFAULT_CASE_TIMEOUT,
    outdir: Path,
    deflate: bool = False,
) -> Summary:
    """Run the cases through ``adapter`` in each role (the roles at the same time) and write
    ``outdir/autobahn-summary.json``.

    :param adapter: a key of :data:`tests.autobahn.adapters.ADAPTERS`.
    :param timeout: bound on each role's kosoku call, in seconds.
    :param case_timeout: bound on each connection of our client, in seconds.
    :param deflate: offer and accept permessage-deflate (for the 12.* and 13.* cases).
    """
    start = time.monotonic()
    outdir.mkdir(parents=True, exist_ok=True)
    load(adapter)  # an adapter that does not import fails here, before any process
    runs = {
        "server": lambda: run_server_role(
            adapter,
            cases,
            exclude,
            deflate=deflate,
            concurrency=concurrency,
            timeout=timeout,
            outdir=outdir / "server",
        ),
        "client": lambda: run_client_role(
            adapter,
            cases,
            exclude,
            deflate=deflate,
            concurrency=concurrency,
            timeout=timeout,
            case_timeout=case_timeout,
            outdir=outdir / "client",
        ),
    }
    reports = await asyncio.gather(*(runs[role]() for role in roles))
    summary = Summary(
        adapter=adapter,
        roles=list(reports),
        cases=list(cases),
        exclude=list(exclude),
        concurrency=concurrency,
        seconds=time.monotonic() - start,
        outdir=str(outdir),
        deflate=deflate,
    )
    (outdir / SUMMARY_NAME).write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: run, print the summaries, return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.autobahn.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--adapter", choices=(*ADAPTERS, "all"), default="all")
    parser.add_argument("--role", choices=("server", "client", "both"), default="both")
    parser.add_argument(
        "--cases", nargs="+", metavar="GLOB", help=f"default: {' '.join(DEFAULT_CASES)}"
    )
    parser.add_argument("--exclude", nargs="+", metavar="GLOB", default=[])
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="offer and accept permessage-deflate; without --cases, also run "
        f"{' '.join(DEFLATE_CASES)}",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        help=f"cases at once, per role (default: {DEFAULT_CONCURRENCY}, "
        f"{DEFLATE_CONCURRENCY} with --deflate)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        help="seconds allowed for each role of each adapter (default: 300, 1800 with --deflate)",
    )
    parser.add_argument(
        "--case-timeout",
        type=float,
        default=DEFAULT_CASE_TIMEOUT,
        help="seconds our client keeps one connection open at most",
    )
    parser.add_argument(
        "--outdir", type=Path, default=DEFAULT_OUTDIR, help="each adapter writes to OUTDIR/ADAPTER"
    )
    args = parser.parse_args(argv)
    cases = list(args.cases or (DEFAULT_CASES + DEFLATE_CASES if args.deflate else DEFAULT_CASES))
    roles: tuple[Role, ...] = ("server", "client") if args.role == "both" else (args.role,)
    adapters = list(ADAPTERS) if args.adapter == "all" else [args.adapter]
    concurrency = DEFLATE_CONCURRENCY if args.deflate else DEFAULT_CONCURRENCY
    passed = True
    for adapter in adapters:
        summary = asyncio.run(
            run_autobahn(
                adapter,
                roles,
                cases,
                args.exclude,
                concurrency=max(1, args.concurrency or concurrency),
                timeout=args.timeout or (1800.0 if args.deflate else 300.0),
                case_timeout=args.case_timeout,
                outdir=args.outdir / adapter,
                deflate=args.deflate,
            )
        )
        print(summary.format())
        print(f"summary: {args.outdir / adapter / SUMMARY_NAME}\n", flush=True)
        passed = passed and summary.passed
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
