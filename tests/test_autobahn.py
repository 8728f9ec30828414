"""The Autobahn TestSuite cases, run by kosoku through each adapter's public API, in both
roles: 1.* to 10.* through the selector, blocking, trio and asyncio adapters, and 12.*/13.*
(permessage-deflate) through the selector and asyncio adapters.

Marked ``autobahn`` (5 to 20 s per adapter for 1.* to 10.* on 2 cores; each deflate run takes
about 8 minutes): select them with ``-m autobahn`` or leave them out with ``-m "not autobahn"``.
The same runs from the command line, with reports: ``python -m tests.autobahn.run --adapter
all`` (add ``--deflate`` for 12.*/13.*). The counts are printed in pytest's terminal summary
(``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

import pytest

pytest.importorskip("kosoku")

from tests.autobahn.results import DEFAULT_CASES, DEFLATE_CASES
from tests.autobahn.run import DEFLATE_CONCURRENCY, run_autobahn


class CaseSet(NamedTuple):
    """Which cases, with permessage-deflate or not, how many there are, how many run at
    once, and the bounds."""

    cases: tuple[str, ...]
    deflate: bool
    size: int
    concurrency: int
    timeout: float  # each role's kosoku call, in seconds
    case_timeout: float  # each connection of our client, in seconds


CASE_SETS = {
    "1-10": CaseSet(
        DEFAULT_CASES, deflate=False, size=301, concurrency=16, timeout=180.0, case_timeout=60.0
    ),
    # See DEFLATE_CONCURRENCY for why 4 at once.
    "12-13-deflate": CaseSet(
        DEFLATE_CASES,
        deflate=True,
        size=216,
        concurrency=DEFLATE_CONCURRENCY,
        timeout=1800.0,
        case_timeout=480.0,
    ),
}

# kosoku's case files (12.*) open its test data without closing it: its ResourceWarnings, not
# ours, which the suite's filterwarnings=error would turn into failures.
_KOSOKU_WARNINGS = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.mark.autobahn
@pytest.mark.parametrize(
    ("adapter", "case_set"),
    [
        ("selector", "1-10"),
        ("blocking", "1-10"),
        ("trio", "1-10"),
        ("asyncio", "1-10"),
        pytest.param("selector", "12-13-deflate", marks=_KOSOKU_WARNINGS),
        pytest.param("asyncio", "12-13-deflate", marks=_KOSOKU_WARNINGS),
    ],
)
def test_autobahn_cases_both_roles(
    adapter: str, case_set: str, pytestconfig: pytest.Config
) -> None:
    """Every case is OK, or INFORMATIONAL where that is the only verdict (7.1.6, 7.13.1,
    7.13.2): NON-STRICT, UNIMPLEMENTED, FAILED, ERROR and a failure of the harness fail."""
    spec = CASE_SETS[case_set]
    reports = pytestconfig.rootpath / "reports" / "autobahn"
    outdir = reports / case_set / adapter
    summary = asyncio.run(
        run_autobahn(
            adapter,
            ("server", "client"),
            spec.cases,
            concurrency=spec.concurrency,
            outdir=outdir,
            timeout=spec.timeout,
            case_timeout=spec.case_timeout,
            deflate=spec.deflate,
        )
    )
    table = reports / f"summary-{adapter}-{case_set}.txt"
    table.write_text(summary.format(), encoding="utf-8")  # conftest prints it at the end
    problems = []  # both roles', so that a failure shows all of them
    for report in summary.roles:
        where = f"{adapter} as {report.role}"
        problems += [f"{where}: harness error: {e}" for e in report.harness_errors]
        if len(report.outcomes) != spec.size:
            problems.append(f"{where}: {len(report.outcomes)} of {spec.size} cases ran")
        bad = [f"{o.case_id} {o.behavior}" for o in report.bad()]
        if bad:
            problems.append(f"{where}: {', '.join(bad)}")
    assert not problems, f"{problems} (reports in {outdir})"
    assert summary.passed
