"""Run the Autobahn TestSuite cases against wsmachine with kosoku, in one or both roles.

``python -m tests.autobahn.run --role server|client|both [--cases GLOB ...] [--exclude GLOB ...]
[--deflate] [--outdir DIR]``

* server role: our echo server (:mod:`tests.autobahn.echo_server`) in threads of this process,
  kosoku's fuzzing client against it.
* client role: kosoku's fuzzing server, our case client (:mod:`tests.autobahn.client`) against it.

Each role is one kosoku call for all its cases, ``--concurrency`` cases at a time (most cases
spend their time waiting, so running many at once shortens the run even on 2 cores). Every
call is bounded by ``--timeout``. Prints the counts per behavior, per role and per case group,
and each case that is not OK; writes ``autobahn-summary.json`` and kosoku's per-case reports
(``OUTDIR/server``, ``OUTDIR/client``). Exits 1 when any case is NON-STRICT, UNIMPLEMENTED,
FAILED or ERROR, or when the harness itself failed (INFORMATIONAL is fine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import kosoku

from wsmachine.extensions import Extension, PerMessageDeflate

from .client import AGENT, CaseClient
from .echo_server import EchoServer

__all__ = [
    "BAD_BEHAVIORS",
    "BEHAVIORS",
    "DEFAULT_CASES",
    "DEFLATE_CASES",
    "EXPECTED_INFORMATIONAL",
    "CaseOutcome",
    "RoleReport",
    "Summary",
    "main",
    "run_autobahn",
]

Role = Literal["server", "client"]

#: Autobahn's verdicts, plus kosoku's ERROR (the case could not be run to a verdict).
BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "ERROR")
#: Verdicts that fail the run.
BAD_BEHAVIORS = frozenset({"NON-STRICT", "UNIMPLEMENTED", "FAILED", "ERROR"})
#: Every case except permessage-deflate (there are no 8.* or 11.* cases).
DEFAULT_CASES = ("1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*")
#: The permessage-deflate cases, added by ``--deflate``.
DEFLATE_CASES = ("12.*", "13.*")
#: Cases that probe unspecified behavior: INFORMATIONAL is their only verdict.
EXPECTED_INFORMATIONAL = frozenset({"7.1.6", "7.13.1", "7.13.2"})

DEFAULT_OUTDIR = Path("reports/autobahn")
#: Autobahn's own limit for its slowest cases (12.*); our side ends a connection after it.
DEFAULT_CASE_TIMEOUT = 480.0
SUMMARY_NAME = "autobahn-summary.json"


@dataclass(frozen=True)
class CaseOutcome:
    """One case's verdicts, as kosoku reported them."""

    case_id: str
    behavior: str
    behavior_close: str
    duration_ms: int
    remote_close_code: int | None

    @classmethod
    def from_result(cls, result: Any) -> CaseOutcome:
        """Copy the fields of a ``kosoku`` ``CaseResult``."""
        return cls(
            case_id=result.case_id,
            behavior=result.behavior.value,
            behavior_close=result.behavior_close.value,
            duration_ms=result.duration,
            remote_close_code=result.remote_close_code,
        )


def _group_of(case_id: str) -> str:
    return case_id.split(".", 1)[0] + ".*"


def _case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case_id.split(".") if part.isdigit())


@dataclass
class RoleReport:
    """The outcome of one role: its cases and any failure of the harness itself."""

    role: Role
    outcomes: list[CaseOutcome] = field(default_factory=list)
    seconds: float = 0.0
    harness_errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of cases per behavior, every behavior present (0 when none)."""
        counts = dict.fromkeys(BEHAVIORS, 0)
        for outcome in self.outcomes:
            counts[outcome.behavior] = counts.get(outcome.behavior, 0) + 1
        return counts

    def groups(self) -> dict[str, dict[str, int]]:
        """Counts per behavior for each case group (``"1.*"``, ``"2.*"``, ...)."""
        groups: dict[str, dict[str, int]] = {}
        for outcome in sorted(self.outcomes, key=lambda o: _case_key(o.case_id)):
            counts = groups.setdefault(_group_of(outcome.case_id), dict.fromkeys(BEHAVIORS, 0))
            counts[outcome.behavior] = counts.get(outcome.behavior, 0) + 1
        return groups

    def not_ok(self) -> list[CaseOutcome]:
        """Every case whose behavior is not OK, in case order."""
        return sorted(
            (o for o in self.outcomes if o.behavior != "OK"), key=lambda o: _case_key(o.case_id)
        )

    def bad(self) -> list[CaseOutcome]:
        """Cases that fail the run."""
        return [o for o in self.not_ok() if o.behavior in BAD_BEHAVIORS]

    @property
    def passed(self) -> bool:
        """No bad case, no harness error, and at least one case ran."""
        return bool(self.outcomes) and not self.bad() and not self.harness_errors

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON data."""
        return {
            "role": self.role,
            "passed": self.passed,
            "seconds": round(self.seconds, 2),
            "total": len(self.outcomes),
            "counts": self.counts(),
            "groups": self.groups(),
            "not_ok": [asdict(o) for o in self.not_ok()],
            "harness_errors": self.harness_errors,
            "cases": [asdict(o) for o in sorted(self.outcomes, key=lambda o: _case_key(o.case_id))],
        }


@dataclass
class Summary:
    """The outcome of a whole run."""

    roles: list[RoleReport]
    cases: list[str]
    exclude: list[str]
    concurrency: int
    seconds: float
    outdir: str

    @property
    def passed(self) -> bool:
        """Whether every role passed."""
        return all(report.passed for report in self.roles)

    def to_json(self) -> dict[str, Any]:
        """The summary as plain JSON data (what ``autobahn-summary.json`` holds)."""
        return {
            "agent": AGENT,
            "kosoku": _kosoku_version(),
            "python": sys.version.split()[0],
            "cases": self.cases,
            "exclude": self.exclude,
            "concurrency": self.concurrency,
            "seconds": round(self.seconds, 2),
            "passed": self.passed,
            "roles": {report.role: report.to_json() for report in self.roles},
        }

    def format(self) -> str:
        """A plain-text table of the counts and the list of cases that are not OK."""
        width = max(len(b) for b in BEHAVIORS)
        header = f"{'':<8}{'total':>6}" + "".join(f"{b:>{width + 2}}" for b in BEHAVIORS)
        lines = [f"Autobahn cases {' '.join(self.cases)}; excluded: {' '.join(self.exclude)}"]
        for report in self.roles:
            verdict = "passed" if report.passed else "FAILED"
            lines += ["", f"role {report.role}: {verdict} in {report.seconds:.1f} s", header]
            rows = [*report.groups().items(), ("all", report.counts())]
            for name, counts in rows:
                total = sum(counts.values())
                cells = "".join(f"{counts.get(b, 0):>{width + 2}}" for b in BEHAVIORS)
                lines.append(f"{name:<8}{total:>6}{cells}")
            for outcome in report.not_ok():
                note = ""
                if (
                    outcome.behavior == "INFORMATIONAL"
                    and outcome.case_id in EXPECTED_INFORMATIONAL
                ):
                    note = " (expected)"
                lines.append(
                    f"  {report.role} {outcome.case_id}: {outcome.behavior}{note}, "
                    f"close {outcome.behavior_close}, remote close code "
                    f"{outcome.remote_close_code}"
                )
            lines.extend(f"  harness error: {error}" for error in report.harness_errors)
        lines += ["", f"total {self.seconds:.1f} s; reports in {self.outdir}"]
        lines.append("PASSED" if self.passed else "FAILED")
        return "\n".join(lines)


def _kosoku_version() -> str | None:
    try:
        return importlib.metadata.version("kosoku")
    except importlib.metadata.PackageNotFoundError:
        return None


def _write_case_reports(results: Sequence[Any], outdir: Path, report: RoleReport) -> None:
    """Write kosoku's own per-case reports (JSON with the wire log, and HTML), if it can."""
    try:
        from kosoku._report import write_reports  # private API: guarded below

        write_reports(list(results), str(outdir))
    except Exception as error:  # the summary must still be written
        report.harness_errors.append(f"could not write kosoku's reports: {error!r}")


async def _kosoku_call(call: Any, timeout: float, report: RoleReport) -> list[Any]:
    """Await a kosoku call under ``timeout``; its results even when some cases failed."""
    try:
        return list(await asyncio.wait_for(call, timeout))
    except kosoku.FailureError as failure:
        return list(failure.results)
    except TimeoutError:
        report.harness_errors.append(f"kosoku did not finish within {timeout:.0f} s")
    return []


async def run_server_role(
    cases: Sequence[str],
    exclude: Sequence[str],
    *,
    concurrency: int,
    timeout: float,
    case_timeout: float = DEFAULT_CASE_TIMEOUT,
    outdir: Path,
    extensions: Sequence[Extension] = (),
) -> RoleReport:
    """Test our echo server with kosoku's fuzzing client."""
    report = RoleReport("server")
    start = time.monotonic()
    server = EchoServer(extensions=extensions, connection_timeout=case_timeout)
    with server:
        call = kosoku.run_fuzzingclient(
            server.url, list(cases), list(exclude) or None, concurrency=concurrency
        )
        results = await _kosoku_call(call, timeout, report)
    report.seconds = time.monotonic() - start
    report.outcomes = [CaseOutcome.from_result(r) for r in results]
    report.harness_errors += [f"echo server: {e}" for e in server.stats.errors]
    if not results and not report.harness_errors:
        report.harness_errors.append("kosoku returned no results")
    if results:
        _write_case_reports(results, outdir / "server", report)
    return report


async def run_client_role(
    cases: Sequence[str],
    exclude: Sequence[str],
    *,
    concurrency: int,
    timeout: float,
    case_timeout: float = DEFAULT_CASE_TIMEOUT,
    outdir: Path,
    extensions: Sequence[Extension] = (),
) -> RoleReport:
    """Test our case client against kosoku's fuzzing server."""
    report = RoleReport("client")
    start = time.monotonic()
    fuzzing_server = kosoku.run_fuzzingserver(
        list(cases), list(exclude) or None, host="127.0.0.1", port=0
    )
    async with fuzzing_server as fuzzer:
        client = CaseClient(
            "127.0.0.1", fuzzer.port, extensions=extensions, case_timeout=case_timeout
        )
        # The client stops a little before kosoku's bound, so that its updateReports
        # still gets the results of the cases that did run.
        deadline = start + max(timeout - 10.0, timeout * 0.9)
        driver = asyncio.ensure_future(
            asyncio.to_thread(client.run_all, deadline=deadline, workers=concurrency)
        )
        try:
            results = await _kosoku_call(fuzzer.get_result(), timeout, report)
        finally:
            client.stop.set()
            # Open sessions notice ``stop`` within half a second; this only bounds the wait.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(driver), 30.0)
    if not driver.done():
        report.harness_errors.append("the case client did not stop")
    report.seconds = time.monotonic() - start
    report.outcomes = [CaseOutcome.from_result(r) for r in results]
    stats = client.stats
    report.harness_errors += [f"case client: {e}" for e in stats.errors]
    report.harness_errors += [f"case client was refused: {r}" for r in stats.rejected]
    if stats.case_count and len(results) != stats.case_count:
        report.harness_errors.append(
            f"kosoku served {stats.case_count} cases but reported {len(results)}"
        )
    if not results and not report.harness_errors:
        report.harness_errors.append("kosoku returned no results")
    if results:
        _write_case_reports(results, outdir / "client", report)
    return report


async def run_autobahn(
    roles: Sequence[Role] = ("server", "client"),
    cases: Sequence[str] = DEFAULT_CASES,
    exclude: Sequence[str] = (),
    *,
    concurrency: int = 16,
    timeout: float = 900.0,
    case_timeout: float = DEFAULT_CASE_TIMEOUT,
    outdir: Path = DEFAULT_OUTDIR,
    deflate: bool = False,
) -> Summary:
    """Run the cases in each role (the roles at the same time) and write the summary JSON.

    :param timeout: bound on each role's kosoku call, in seconds.
    :param case_timeout: bound on each connection of our side, in seconds.
    :param deflate: offer and accept permessage-deflate (for the 12.* and 13.* cases).
    """
    start = time.monotonic()
    outdir.mkdir(parents=True, exist_ok=True)
    server_ext: list[Extension] = [PerMessageDeflate()] if deflate else []
    # 13.2/13.5/13.6 (client role) need client_no_context_takeover in the offer.
    client_ext: list[Extension] = (
        [PerMessageDeflate(client_no_context_takeover=True)] if deflate else []
    )
    runs = {
        "server": lambda: run_server_role(
            cases,
            exclude,
            concurrency=concurrency,
            timeout=timeout,
            case_timeout=case_timeout,
            outdir=outdir,
            extensions=server_ext,
        ),
        "client": lambda: run_client_role(
            cases,
            exclude,
            concurrency=concurrency,
            timeout=timeout,
            case_timeout=case_timeout,
            outdir=outdir,
            extensions=client_ext,
        ),
    }
    reports = await asyncio.gather(*(runs[role]() for role in roles))
    summary = Summary(
        roles=list(reports),
        cases=list(cases),
        exclude=list(exclude),
        concurrency=concurrency,
        seconds=time.monotonic() - start,
        outdir=str(outdir),
    )
    (outdir / SUMMARY_NAME).write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: run, print the summary, return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.autobahn.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--role", choices=("server", "client", "both"), default="both")
    parser.add_argument(
        "--cases", nargs="+", metavar="GLOB", help=f"default: {' '.join(DEFAULT_CASES)}"
    )
    parser.add_argument("--exclude", nargs="+", metavar="GLOB", default=[])
    parser.add_argument(
        "--deflate",
        action="store_true",
        help=f"also run {' '.join(DEFLATE_CASES)}, with permessage-deflate on both sides",
    )
    parser.add_argument("--concurrency", type=int, default=16, help="cases at once, per role")
    parser.add_argument(
        "--timeout",
        type=float,
        help="seconds allowed for each role (default: 900, or 1800 with --deflate)",
    )
    parser.add_argument(
        "--case-timeout",
        type=float,
        default=DEFAULT_CASE_TIMEOUT,
        help="seconds our side keeps one connection open at most",
    )
    parser.add_argument("--outdir", type=Path, default=DEFAULT_OUTDIR)
    args = parser.parse_args(argv)
    cases = list(args.cases or DEFAULT_CASES)
    if args.deflate:
        cases += [c for c in DEFLATE_CASES if c not in cases]
    roles: tuple[Role, ...] = ("server", "client") if args.role == "both" else (args.role,)
    summary = asyncio.run(
        run_autobahn(
            roles,
            cases,
            args.exclude,
            concurrency=max(1, args.concurrency),
            timeout=args.timeout or (1800.0 if args.deflate else 900.0),
            case_timeout=args.case_timeout,
            outdir=args.outdir,
            deflate=args.deflate,
        )
    )
    print(summary.format())
    print(f"summary: {args.outdir / SUMMARY_NAME}")
    return 0 if summary.passed else 1


if __name__ == "__main__":
    sys.exit(main())
