"""The performance targets of issue 5, and how a row's measurement is held against them.

A target is one of three kinds:

- ``ratio``: wsmachine's median over a peer's median in the same row (for a row where smaller is
  better, the memory row, the peer's over wsmachine's), at least ``bound``;
- ``fraction``: wsmachine's median over the median of a reference row (the plain 1 MiB copy),
  at least ``bound``;
- ``at_most``: wsmachine's median itself, at most ``bound`` (bytes per idle connection).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["Check", "Target", "at_most", "fraction", "ratio"]

REFERENCE = "reference"


class Measured(Protocol):
    """What a target needs from a row's result (``run.Result``)."""

    rates: dict[str, float]

    def ratio(self, other: str) -> float | None:
        """wsmachine against ``other``, > 1 when wsmachine is better."""


@dataclass(frozen=True, slots=True)
class Check:
    """One target held against the run: what was asked, what was measured, whether it held."""

    #: The requirement as it reads in the table.
    target: str
    kind: str
    against: str
    bound: float
    measured: float | None
    #: ``measured`` formatted for the table.
    shown: str
    met: bool | None


@dataclass(frozen=True, slots=True)
class Target:
    """One requirement of a row."""

    kind: Literal["ratio", "fraction", "at_most"]
    #: A library name (``ratio``), a reference row name (``fraction``), or a unit (``at_most``).
    against: str
    bound: float
    #: How the requirement reads in the table (ASCII) and in the chart.
    label: str

    def measure(self, result: Measured, rows: Mapping[str, Measured]) -> float | None:
        """The number this target is about, or None when the run did not produce it."""
        mine = result.rates.get("wsmachine")
        if self.kind == "ratio":
            return result.ratio(self.against)
        if mine is None:
            return None
        if self.kind == "fraction":
            reference = rows.get(self.against)
            theirs = reference.rates.get(REFERENCE) if reference is not None else None
            return mine / theirs if theirs else None
        return mine

    def check(self, result: Measured, rows: Mapping[str, Measured]) -> Check:
        """Measure and compare."""
        value = self.measure(result, rows)
        if value is None:
            return Check(self.label, self.kind, self.against, self.bound, None, "n/a", None)
        met = value <= self.bound if self.kind == "at_most" else value >= self.bound
        return Check(
            self.label, self.kind, self.against, self.bound, value, self.show(value, met), met
        )

    def show(self, value: float, met: bool) -> str:
        """``value`` for the table, with one more digit where rounding would hide a miss."""
        if self.kind == "at_most":
            return f"{value:,.0f} {self.against}"
        scale, suffix = (100, "%") if self.kind == "fraction" else (1, "x")
        for digits in (0 if self.kind == "fraction" else 2, 3, 4):
            shown = round(value * scale, digits)
            if (shown >= self.bound * scale) == met:
                break
        return f"{shown:.{digits}f}{suffix}"


def ratio(library: str, bound: float) -> Target:
    """wsmachine at least ``bound`` times ``library`` in the same row."""
    return Target("ratio", library, bound, f">={bound:.1f}x {library}")


def fraction(row: str, bound: float, what: str) -> Target:
    """wsmachine at least ``bound`` (0-1) of the reference row ``row``."""
    return Target("fraction", row, bound, f">={bound:.0%} of {what}")


def at_most(bound: float, unit: str) -> Target:
    """wsmachine's own value at most ``bound``."""
    return Target("at_most", unit, bound, f"<={bound:g} {unit}")
