"""The Autobahn TestSuite cases 1.* to 10.*, and 12.*/13.* with permessage-deflate, in both
roles, run by kosoku.

Slow-ish (about 10 s on 2 cores) and marked ``autobahn``: select it with ``-m autobahn`` or
leave it out with ``-m "not autobahn"``. The same run from the command line, with reports:
``python -m tests.autobahn.run --role both``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("kosoku")

from tests.autobahn.run import BAD_BEHAVIORS, DEFAULT_CASES, DEFLATE_CASES, Summary, run_autobahn


def _check(summary: Summary, pytestconfig: pytest.Config, name: str, outdir: Path) -> None:
    table = pytestconfig.rootpath / "reports" / "autobahn" / f"summary-{name}.txt"
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_text(summary.format(), encoding="utf-8")  # conftest prints it at the end
    for report in summary.roles:
        assert not report.harness_errors, f"{report.role}: {report.harness_errors}"
        assert report.outcomes, f"{report.role}: no case ran"
        bad = [f"{o.case_id} {o.behavior}" for o in report.outcomes if o.behavior in BAD_BEHAVIORS]
        assert not bad, f"{report.role} role: {', '.join(bad)} (reports in {outdir})"
    assert summary.passed


@pytest.mark.autobahn
def test_autobahn_cases_both_roles(pytestconfig: pytest.Config) -> None:
    outdir = pytestconfig.rootpath / "reports" / "autobahn" / "1-10"
    summary = asyncio.run(
        run_autobahn(("server", "client"), DEFAULT_CASES, outdir=outdir, timeout=600.0)
    )
    _check(summary, pytestconfig, "1-10", outdir)


# kosoku's case files (12.*) open its test data without closing it: its ResourceWarnings, not
# ours, which the suite's filterwarnings=error would turn into failures.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.autobahn
def test_autobahn_deflate_cases_both_roles(pytestconfig: pytest.Config) -> None:
    """12.* and 13.*: permessage-deflate (RFC 7692), 216 cases a role; the slow part of CI."""
    outdir = pytestconfig.rootpath / "reports" / "autobahn" / "12-13-deflate"
    summary = asyncio.run(
        run_autobahn(
            ("server", "client"), DEFLATE_CASES, outdir=outdir, timeout=1800.0, deflate=True
        )
    )
    _check(summary, pytestconfig, "12-13-deflate", outdir)
