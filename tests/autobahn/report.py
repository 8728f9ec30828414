"""Turn Autobahn summaries (``autobahn-summary.json``, one per adapter and run, written by
:mod:`tests.autobahn.run`) into reStructuredText for the docs: a matrix of the verdict counts
(rows: adapter × role × case set), the counts per case group, and every case that is not OK
with what it tests.

``python -m tests.autobahn.report SUMMARY.json [SUMMARY.json ...] [--output FILE]``
(default output: ``docs/autobahn/results.inc``)

The per-case reports kosoku writes next to each summary (``server/*.json``,
``client/*.json``) are read, when present, for the description of each case that is not OK.
Nothing here imports kosoku or the rest of the harness: the script only reads JSON (the tests
load it by path).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["case_descriptions", "main", "render"]

ROLES = ("server", "client")
#: Verdicts, best first; a cell lists the non-zero ones in this order.
BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "ERROR")
#: What the Autobahn groups test (the TestSuite's own chapter titles, shortened).
GROUP_TITLES = {
    "1": "Framing: text and binary messages",
    "2": "Pings and pongs",
    "3": "Reserved bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 handling",
    "7": "Close handling",
    "9": "Limits and performance",
    "10": "Miscellaneous (auto-fragmentation)",
    "12": "permessage-deflate: compressed messages",
    "13": "permessage-deflate: parameters",
}
DEFAULT_OUTPUT = Path("docs/autobahn/results.inc")

#: One column of the per-group table, one row set of the matrix: (adapter, role).
Column = tuple[str, str]


def _group_key(group: str) -> tuple[int, ...]:
    return tuple(int(p) for p in group.rstrip(".*").split(".") if p.isdigit())


def _case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(p) for p in case_id.split(".") if p.isdigit())


def _cell(counts: Mapping[str, int] | None) -> str:
    if not counts:
        return "—"
    parts = [f"{counts[b]} {b}" for b in BEHAVIORS if counts.get(b)]
    parts += [f"{n} {b}" for b, n in counts.items() if b not in BEHAVIORS and n]
    return ", ".join(parts) or "—"


def _and(words: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join(filter(None, (", ".join(words[:-1]), words[-1]))) if words else ""


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("`", "\\`").replace("|", "\\|")


def _adapter(summary: Mapping[str, Any]) -> str:
    """The adapter a summary was run through (older summaries name none: the agent)."""
    return str(summary.get("adapter") or summary.get("agent") or "wsmachine")


def _case_set(summary: Mapping[str, Any]) -> str:
    """``1.* to 10.*`` for a run of whole groups, else the globs as given."""
    cases = [str(c) for c in summary.get("cases", [])]
    whole_groups = all(c.endswith(".*") and c[:-2].isdigit() for c in cases)
    label = f"{cases[0]} to {cases[-1]}" if len(cases) > 2 and whole_groups else " ".join(cases)
    excluded = " ".join(summary.get("exclude", []))
    label = label or "all"
    if excluded:
        label += f" except {excluded}"
    if summary.get("deflate"):
        label += ", permessage-deflate"
    return label


def _roles(summary: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    roles: Mapping[str, Any] = summary.get("roles", {})
    for role in ROLES:
        if role in roles:
            yield role, roles[role]


def case_descriptions(summary_path: Path) -> dict[tuple[str, str], str]:
    """``(role, case id) -> description`` from kosoku's per-case JSON reports, if any."""
    found: dict[tuple[str, str], str] = {}
    for role in ROLES:
        directory = summary_path.parent / role
        if not directory.is_dir():
            continue
        for path in directory.glob("*.json"):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and "id" in data and data.get("description"):
                # The TestSuite's descriptions hold HTML markup (<b>...</b>).
                text = re.sub(r"<[^>]*>", "", str(data["description"]))
                found[role, str(data["id"])] = " ".join(text.split())
    return found


def _matrix(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The counts, one row per adapter × role × case set, one column per behavior."""
    out = [
        ".. list-table:: Verdicts per adapter, role and case set",
        "   :header-rows: 1",
        "   :stub-columns: 3",
        "",
        *(
            f"   {'*' if i == 0 else ' '} - {title}"
            for i, title in enumerate(("Adapter", "Role", "Cases", "Total", *BEHAVIORS, "Time"))
        ),
    ]
    for summary in summaries:
        for role, report in _roles(summary):
            counts: Mapping[str, int] = report.get("counts", {})
            seconds = report.get("seconds")
            time = f"{seconds:.0f} s" if isinstance(seconds, int | float) else "—"
            cells = [
                _adapter(summary),
                role,
                _escape(_case_set(summary)),
                str(report.get("total", sum(counts.values()))),
                *(str(counts.get(b, 0)) for b in BEHAVIORS),
                time,
            ]
            out += [f"   {'*' if i == 0 else ' '} - {cell}" for i, cell in enumerate(cells)]
    out.append("")
    return out


def _group_table(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The counts per case group: a column per adapter and role, the runs of a column
    (e.g. 1.* to 10.*, and 12.* and 13.*) added up."""
    columns: dict[Column, dict[str, dict[str, int]]] = {}
    totals: dict[Column, dict[str, int]] = {}
    for summary in summaries:
        for role, report in _roles(summary):
            column = (_adapter(summary), role)
            groups = columns.setdefault(column, {})
            for group, counts in report.get("groups", {}).items():
                cell = groups.setdefault(group, {})
                for behavior, n in counts.items():
                    cell[behavior] = cell.get(behavior, 0) + n
            column_total = totals.setdefault(column, {})
            for behavior, n in report.get("counts", {}).items():
                column_total[behavior] = column_total.get(behavior, 0) + n
    every_group = sorted({g for groups in columns.values() for g in groups}, key=_group_key)
    out = [
        ".. list-table:: Verdicts per case group",
        "   :header-rows: 2",
        "   :stub-columns: 1",
        "",
        "   * -",
        "     -",
        "     -",
        *(f"     - {adapter}" for adapter, _ in columns),
        "   * - Group",
        "     - What it tests",
        "     - Cases",
        *(f"     - As {role}" for _, role in columns),
    ]
    for group in every_group:
        per_column = [columns[column].get(group) for column in columns]
        total = max((sum(c.values()) for c in per_column if c), default=0)
        title = GROUP_TITLES.get(group.split(".")[0], "")
        out += [f"   * - {group}", f"     - {title or '—'}", f"     - {total}"]
        out += [f"     - {_cell(c)}" for c in per_column]
    every = max((sum(c.values()) for c in totals.values()), default=0)
    out += ["   * - all", "     - —", f"     - {every}"]
    out += [f"     - {_cell(totals[column])}" for column in columns]
    out.append("")
    return out


def _not_ok(
    summaries: Sequence[Mapping[str, Any]], descriptions: Mapping[tuple[str, str], str]
) -> list[str]:
    """One line per case, role and verdict that is not OK, naming the adapters it concerns
    (none for a summary that names no adapter)."""
    adapters: dict[tuple[str, str, str, str, Any], list[str]] = {}
    for summary in summaries:
        for role, report in _roles(summary):
            for case in report.get("not_ok", []):
                key = (
                    str(case["case_id"]),
                    role,
                    str(case["behavior"]),
                    str(case.get("behavior_close", "?")),
                    case.get("remote_close_code"),
                )
                names = adapters.setdefault(key, [])
                if summary.get("adapter"):
                    names.append(str(summary["adapter"]))
    if not adapters:
        return ["Every case is OK.", ""]
    out = ["Cases that are not OK:", ""]
    for key in sorted(adapters, key=lambda k: (_case_key(k[0]), ROLES.index(k[1]), k[2:3])):
        case_id, role, behavior, behavior_close, close_code = key
        which = f" ({', '.join(adapters[key])})" if adapters[key] else ""
        line = (
            f"* {case_id} as {role}{which}: {behavior} (close: {behavior_close}, "
            f"peer's close code {close_code})"
        )
        description = descriptions.get((role, case_id))
        if description:
            line += f". {_escape(description)}"
        out.append(line)
    out.append("")
    return out


def render(
    summaries: Sequence[Mapping[str, Any]],
    descriptions: Mapping[tuple[str, str], str] | None = None,
) -> str:
    """The reStructuredText for the summaries of one or more runs; ``descriptions`` as
    :func:`case_descriptions`.

    :raises ValueError: a summary has no role.
    """
    if not summaries or any(not list(_roles(s)) for s in summaries):
        raise ValueError("a summary has no role")
    descriptions = descriptions or {}
    first = summaries[0]
    verdict = "passed" if all(s.get("passed") for s in summaries) else "FAILED"
    names = list(dict.fromkeys(_adapter(s) for s in summaries))
    roles = [r for r in ROLES if any(r in s.get("roles", {}) for s in summaries)]
    if any(s.get("adapter") for s in summaries):
        what = (
            f"through the public API of the {_and(names)} "
            f"adapter{'s' if len(names) > 1 else ''} of {first.get('agent') or 'wsmachine'}, "
            f"in the {_and(roles)} role{'s' if len(roles) > 1 else ''}"
        )
    else:
        what = f"against the {_and(roles)} role{'s' if len(roles) > 1 else ''} of {names[0]}"
    out = [
        ".. This file is generated by tests/autobahn/report.py from autobahn-summary.json;",
        "   do not edit it by hand.",
        "",
        f"**Result: {verdict}.** Run by kosoku {first.get('kosoku') or '?'} on Python "
        f"{first.get('python') or '?'}, {what}.",
        "",
        *_matrix(summaries),
        *_group_table(summaries),
        *_not_ok(summaries, descriptions),
    ]
    errors = [
        (f"{_adapter(s)} as {role}", error)
        for s in summaries
        for role, report in _roles(s)
        for error in report.get("harness_errors", [])
    ]
    if errors:
        out += ["Harness errors:", ""]
        out += [f"* {where}: {_escape(str(error))}" for where, error in errors]
        out.append("")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: write the include file; status 1 if a summary cannot be read."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.autobahn.report", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "summary", type=Path, nargs="+", help="autobahn-summary.json, one or more runs"
    )
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    try:
        summaries: list[Any] = []
        descriptions: dict[tuple[str, str], str] = {}
        for path in args.summary:
            summaries.append(json.loads(path.read_text(encoding="utf-8")))
            descriptions.update(case_descriptions(path))
        text = render(summaries, descriptions)
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"cannot read {[str(p) for p in args.summary]}: {error}", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
