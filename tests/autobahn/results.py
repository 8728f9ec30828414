"""The outcome of an Autobahn run: each case's verdicts, per role, and the summary of one
adapter's run (what ``autobahn-summary.json`` holds and what the terminal shows)."""

from __future__ import annotations

import importlib.metadata
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .common import AGENT

__all__ = [
    "BAD_BEHAVIORS",
    "BEHAVIORS",
    "DEFAULT_CASES",
    "DEFLATE_CASES",
    "EXPECTED_INFORMATIONAL",
    "CaseOutcome",
    "Role",
    "RoleReport",
    "Summary",
    "is_bad",
]

Role = Literal["server", "client"]

#: Autobahn's verdicts, plus kosoku's ERROR (the case could not be run to a verdict).
BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "ERROR")
#: Verdicts that fail the run (INFORMATIONAL too, outside :data:`EXPECTED_INFORMATIONAL`).
BAD_BEHAVIORS = frozenset({"NON-STRICT", "UNIMPLEMENTED", "FAILED", "ERROR"})
#: Every case except permessage-deflate (there are no 8.* or 11.* cases).
DEFAULT_CASES = ("1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*")
#: The permessage-deflate cases, added by ``--deflate``.
DEFLATE_CASES = ("12.*", "13.*")
#: Cases that probe unspecified behavior: INFORMATIONAL is their only verdict.
EXPECTED_INFORMATIONAL = frozenset({"7.1.6", "7.13.1", "7.13.2"})


def is_bad(outcome: CaseOutcome) -> bool:
    """Whether ``outcome`` fails the run: a bad verdict, or INFORMATIONAL where the case can
    give OK."""
    if outcome.behavior == "INFORMATIONAL":
        return outcome.case_id not in EXPECTED_INFORMATIONAL
    return outcome.behavior in BAD_BEHAVIORS


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
    #: Client role: how our connections ended (``"closed"``, ``"deadline"``), how many each.
    connections: dict[str, int] = field(default_factory=dict)

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
        return [o for o in self.not_ok() if is_bad(o)]

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
            "connections": self.connections,
            "cases": [asdict(o) for o in sorted(self.outcomes, key=lambda o: _case_key(o.case_id))],
        }


@dataclass
class Summary:
    """The outcome of one adapter's run, in one or both roles."""

    adapter: str
    roles: list[RoleReport]
    cases: list[str]
    exclude: list[str]
    concurrency: int
    seconds: float
    outdir: str
    #: Whether both sides offered and accepted permessage-deflate.
    deflate: bool = False

    @property
    def passed(self) -> bool:
        """Whether every role passed."""
        return all(report.passed for report in self.roles)

    def to_json(self) -> dict[str, Any]:
        """The summary as plain JSON data (what ``autobahn-summary.json`` holds)."""
        return {
            "agent": AGENT,
            "adapter": self.adapter,
            "kosoku": _kosoku_version(),
            "python": sys.version.split()[0],
            "cases": self.cases,
            "exclude": self.exclude,
            "deflate": self.deflate,
            "concurrency": self.concurrency,
            "seconds": round(self.seconds, 2),
            "passed": self.passed,
            "roles": {report.role: report.to_json() for report in self.roles},
        }

    def format(self) -> str:
        """A plain-text table of the counts and the list of cases that are not OK."""
        width = max(len(b) for b in BEHAVIORS)
        header = f"{'':<8}{'total':>6}" + "".join(f"{b:>{width + 2}}" for b in BEHAVIORS)
        lines = [
            f"Autobahn cases {' '.join(self.cases)} through the {self.adapter} adapter; "
            f"excluded: {' '.join(self.exclude) or 'none'}"
        ]
        for report in self.roles:
            verdict = "passed" if report.passed else "FAILED"
            lines += [
                "",
                f"{self.adapter} as {report.role}: {verdict} in {report.seconds:.1f} s",
                header,
            ]
            rows = [*report.groups().items(), ("all", report.counts())]
            for name, counts in rows:
                total = sum(counts.values())
                cells = "".join(f"{counts.get(b, 0):>{width + 2}}" for b in BEHAVIORS)
                lines.append(f"{name:<8}{total:>6}{cells}")
            for outcome in report.not_ok():
                note = (
                    " (expected)"
                    if outcome.behavior == "INFORMATIONAL" and not is_bad(outcome)
                    else ""
                )
                lines.append(
                    f"  {report.role} {outcome.case_id}: {outcome.behavior}{note}, "
                    f"close {outcome.behavior_close}, remote close code "
                    f"{outcome.remote_close_code}"
                )
            if report.connections:
                lines.append(f"  our connections ended: {report.connections}")
            lines.extend(f"  harness error: {error}" for error in report.harness_errors)
        lines += ["", f"total {self.seconds:.1f} s; reports in {self.outdir}"]
        lines.append("PASSED" if self.passed else "FAILED")
        return "\n".join(lines)


def _kosoku_version() -> str | None:
    try:
        return importlib.metadata.version("kosoku")
    except importlib.metadata.PackageNotFoundError:
        return None
