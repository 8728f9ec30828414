"""The RFC conformance matrix: rows kept as data, checked against the code and the tests, and
rendered by Sphinx at build time.

The data is one TOML file per RFC in ``docs/conformance/``. Each file names the RFC and the
sections in scope, then holds one ``[[row]]`` per requirement::

    [[row]]
    id = "5.1/client-masks"            # unique within the file
    section = "5.1"                    # must be one of the file's ``sections``
    level = "MUST"                     # see LEVELS
    party = "ours"                     # see PARTIES: whose duty the requirement is
    requirement = "The client masks every frame it sends."   # our own words
    where = ["wsmachine.connection:Connection._frame"]       # module:qualified.name
    tests = ["tests/test_connection.py::TestMasking::test_client_masks_control_frames"]
    na = "..."                         # optional: why the rule does not apply here
    note = "..."                       # optional: anything a reader should know

A row must name at least one test unless it carries ``na``. Test ids name a test function
(``path::function`` or ``path::Class::function``) by its base name, without parameters; they
are resolved by reading the test files (no import, no collection), which also tells which
tests are marked ``xfail``: such a row is shown as an open bug.

Used twice: ``tests/test_conformance_matrix.py`` runs :func:`check` (which also imports every
``where``), and the directives below render the tables, warning (an error under ``-W``) about
any problem that needs no import to find.

Directives:

``.. conformance-matrix:: rfc6455.toml``
    The rows of one file as a table; ``:sections: 4 5.1`` keeps the rows whose section is, or
    is under, one of the given sections; ``:status: bug`` keeps the rows with that status
    (``tested``, ``bug`` or ``n/a``).

``.. conformance-summary:: rfc6455.toml rfc7692.toml``
    One line per file: rows by status and by level.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import tomllib
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

#: The repository root (this file is ``docs/_ext/conformance.py``).
ROOT = Path(__file__).resolve().parents[2]
#: Where the matrix data lives.
DATA_DIR = ROOT / "docs" / "conformance"
#: The style sheet of the tables.
STATIC_DIR = Path(__file__).resolve().parent / "conformance_static"
#: The data files, one per RFC.
MATRIX_FILES = ("rfc6455.toml", "rfc7692.toml", "rfc8441.toml", "rfc9220.toml")

#: Requirement levels. Upper case: RFC 2119 keywords. Lower case: the RFC states the duty
#: without the keyword. ``definition``: the RFC defines a value or term that the code must
#: report faithfully. ``advice``: a security consideration with no keyword.
LEVELS = (
    "MUST",
    "MUST NOT",
    "SHOULD",
    "SHOULD NOT",
    "MAY",
    "must",
    "should",
    "definition",
    "advice",
)
#: Whose duty a requirement is, and how the table names it.
PARTIES = {
    "ours": "wsmachine",
    "peer": "peer (checked)",
    "application": "application",
    "adapters": "adapters",
}


@dataclasses.dataclass(frozen=True)
class Row:
    """One requirement."""

    id: str
    section: str
    level: str
    party: str
    requirement: str
    where: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()
    na: str = ""
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Matrix:
    """The rows of one RFC."""

    path: Path
    rfc: int
    title: str
    scope: str
    sections: tuple[str, ...]
    rows: tuple[Row, ...]


class MatrixError(ValueError):
    """The data file does not follow the format."""


_ROW_KEYS = {f.name for f in dataclasses.fields(Row)}


def load(path: Path) -> Matrix:
    """Read one data file.

    :raises MatrixError: a key is missing, unknown, or of the wrong type.
    """
    with path.open("rb") as f:
        data = tomllib.load(f)
    try:
        rfc, title, scope = data["rfc"], data["title"], data["scope"]
        sections, raw_rows = data["sections"], data["row"]
    except KeyError as exc:
        raise MatrixError(f"{path.name}: missing top-level key {exc}") from None
    rows = []
    for i, raw in enumerate(raw_rows):
        where = f"{path.name}, row {i + 1} ({raw.get('id', '?')})"
        unknown = set(raw) - _ROW_KEYS
        if unknown:
            raise MatrixError(f"{where}: unknown keys {sorted(unknown)}")
        for key in ("id", "section", "level", "requirement"):
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise MatrixError(f"{where}: {key!r} must be a non-empty string")
        for key in ("where", "tests"):
            value = raw.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise MatrixError(f"{where}: {key!r} must be a list of strings")
        fields = {**raw, "where": tuple(raw.get("where", ())), "tests": tuple(raw.get("tests", ()))}
        fields.setdefault("party", "")
        rows.append(Row(**fields))
    return Matrix(path, int(rfc), str(title), str(scope), tuple(sections), tuple(rows))


def load_all(directory: Path = DATA_DIR) -> list[Matrix]:
    """Every data file, in :data:`MATRIX_FILES` order."""
    return [load(directory / name) for name in MATRIX_FILES]


# -- test ids -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TestInfo:
    """What the test files say about one test id."""

    __test__: ClassVar[bool] = False  # not a pytest class, despite its name

    xfail: bool
    reason: str = ""


def _is_xfail(decorator: ast.expr) -> tuple[bool, str]:
    """Whether a decorator is ``pytest.mark.xfail`` (called or not), and its reason."""
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    if not (isinstance(target, ast.Attribute) and target.attr == "xfail"):
        return False, ""
    reason = ""
    if isinstance(decorator, ast.Call):
        for keyword in decorator.keywords:
            if keyword.arg == "reason" and isinstance(keyword.value, ast.Constant):
                reason = str(keyword.value.value)
        if not reason and decorator.args and isinstance(decorator.args[0], ast.Constant):
            reason = str(decorator.args[0].value)
    return True, reason


def _xfail_of(node: ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef) -> tuple[bool, str]:
    for decorator in node.decorator_list:
        found, reason = _is_xfail(decorator)
        if found:
            return True, reason
    return False, ""


@cache
def _module_tests(path: Path) -> dict[str, TestInfo]:
    """The test functions a test file defines, by id suffix (``func`` or ``Class::func``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: dict[str, TestInfo] = {}
    module_xfail = any(
        isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)
        and "xfail" in ast.unparse(node.value)
        for node in tree.body
    )

    def info(*nodes: ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef) -> TestInfo:
        for node in nodes:
            xfail, reason = _xfail_of(node)
            if xfail:
                return TestInfo(True, reason)
        return TestInfo(module_xfail)

    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if isinstance(node, functions) and node.name.startswith("test"):
            found[node.name] = info(node)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, functions) and item.name.startswith("test"):
                    found[f"{node.name}::{item.name}"] = info(item, node)
    return found


def resolve_test(test_id: str, root: Path = ROOT) -> TestInfo | str:
    """Find a test id in the test files; return its info, or what is wrong with the id."""
    path, sep, rest = test_id.partition("::")
    if not sep:
        return f"test id {test_id!r} has no '::'"
    if "[" in rest:
        return f"test id {test_id!r}: name the test without parameters"
    name = Path(path)
    if name.parts[:1] != ("tests",) or not name.name.startswith("test_") or name.suffix != ".py":
        return f"test id {test_id!r}: expected a tests/**/test_*.py file"
    file = root / name
    if not file.is_file():
        return f"test id {test_id!r}: no file {path}"
    info = _module_tests(file.resolve()).get(rest)
    if info is None:
        return f"test id {test_id!r}: no test {rest!r} in {path}"
    return info


# -- where ---------------------------------------------------------------------------------------


def resolve_where(spec: str) -> str | None:
    """Import ``module:qualified.name``; return what is wrong, or ``None`` when it exists."""
    module_name, sep, qualname = spec.partition(":")
    if not sep or not qualname:
        return f"where {spec!r}: expected module:name"
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        return f"where {spec!r}: cannot import {module_name} ({exc})"
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            return f"where {spec!r}: {module_name} has no {qualname}"
    return None


# -- checks ---------------------------------------------------------------------------------------


def check(matrix: Matrix, *, imports: bool = True, root: Path = ROOT) -> list[str]:
    """Every problem of one matrix, as messages; empty when it is sound.

    :param imports: also import every ``where`` (the docs build leaves that to the test).
    """
    problems: list[str] = []
    seen: set[str] = set()
    covered: set[str] = set()
    for row in matrix.rows:
        label = f"{matrix.path.name} {row.id}"
        if row.id in seen:
            problems.append(f"{label}: duplicate id")
        seen.add(row.id)
        if row.section not in matrix.sections:
            problems.append(f"{label}: section {row.section} is not in the file's sections")
        covered.add(row.section)
        if row.level not in LEVELS:
            problems.append(f"{label}: level {row.level!r} is not one of {LEVELS}")
        if row.na:
            if row.party and row.party not in PARTIES:
                problems.append(f"{label}: party {row.party!r} is not one of {list(PARTIES)}")
        else:
            if row.party not in PARTIES:
                problems.append(f"{label}: party {row.party!r} is not one of {list(PARTIES)}")
            if not row.tests:
                problems.append(f"{label}: names no test and is not marked n/a")
            if not row.where:
                problems.append(f"{label}: names no module:function and is not marked n/a")
        for test_id in row.tests:
            found = resolve_test(test_id, root)
            if isinstance(found, str):
                problems.append(f"{label}: {found}")
        if imports:
            for spec in row.where:
                error = resolve_where(spec)
                if error:
                    problems.append(f"{label}: {error}")
    problems += [
        f"{matrix.path.name}: section {section} has no row"
        for section in matrix.sections
        if section not in covered
    ]
    return problems


def status(row: Row, root: Path = ROOT) -> tuple[str, str]:
    """``("n/a" | "bug" | "tested", reason)``: a row is a known bug when a test is xfail."""
    if row.na:
        return "n/a", row.na
    for test_id in row.tests:
        found = resolve_test(test_id, root)
        if isinstance(found, TestInfo) and found.xfail:
            return "bug", found.reason
    return "tested", ""


def _in_sections(section: str, wanted: Sequence[str]) -> bool:
    return not wanted or any(section == w or section.startswith(w + ".") for w in wanted)


def summary_counts(matrix: Matrix) -> dict[str, int]:
    """Rows, by status and by level group, for the summary table."""
    counts = dict.fromkeys(("rows", "tested", "bug", "n/a", "must", "should", "other"), 0)
    for row in matrix.rows:
        counts["rows"] += 1
        counts[status(row)[0]] += 1
        if row.level.upper().startswith("MUST"):
            counts["must"] += 1
        elif row.level.upper().startswith("SHOULD"):
            counts["should"] += 1
        else:
            counts["other"] += 1
    return counts


# -- rendering ------------------------------------------------------------------------------------


def _escape(text: str) -> str:
    """Text for a table cell: one line, no markup surprises from ``*`` or a trailing ``_``."""
    return " ".join(text.split()).replace("\\", "\\\\").replace("*", "\\*").replace("`", "\\`")


def _short_test(test_id: str) -> str:
    return test_id.removeprefix("tests/")


_STATUS_LABEL = {"tested": "tested", "bug": "**open bug**", "n/a": "n/a"}


def matrix_rst(
    matrix: Matrix, sections: Sequence[str] = (), statuses: Sequence[str] = ()
) -> list[str]:
    """The list-table for the rows under ``sections`` whose status is one of ``statuses``
    (all rows when both are empty; no table when no row is left)."""
    rows = [
        row
        for row in matrix.rows
        if _in_sections(row.section, sections) and (not statuses or status(row)[0] in statuses)
    ]
    if not rows:
        return []
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 5 34 9 10 19 23",
        "   :class: conformance-matrix",
        "",
        "   * - §",
        "     - Requirement (in our words)",
        "     - Level",
        "     - Whose duty",
        "     - Enforced in",
        "     - Tests",
    ]
    for row in rows:
        state, reason = status(row)
        text = _escape(row.requirement)
        lines += [
            f"   * - :rfc:`{row.section} <{matrix.rfc}#section-{row.section}>`",
            f"     - {text}",
        ]
        if row.note:
            lines += ["", f"       *Note:* {_escape(row.note)}"]
        if state == "n/a":
            lines += ["", f"       **n/a:** {_escape(reason)}"]
        elif state == "bug":
            lines += ["", f"       **Open bug:** {_escape(reason)}"]
        lines.append(f"     - {row.level}")
        party = PARTIES.get(row.party, "—") if row.party else "—"
        lines.append(f"     - {party}")
        if row.where:
            lines.append(f"     - * ``{row.where[0]}``")
            lines += [f"       * ``{spec}``" for spec in row.where[1:]]
        else:
            lines.append("     - —")
        cells = [f"``{_short_test(t)}``" for t in row.tests]
        cells.append(_STATUS_LABEL[state])
        lines.append(f"     - * {cells[0]}")
        lines += [f"       * {cell}" for cell in cells[1:]]
    return lines


def summary_rst(matrices: Iterable[Matrix]) -> list[str]:
    """The summary list-table, one line per RFC."""
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "",
        "   * - RFC",
        "     - Scope",
        "     - Rows",
        "     - MUST / MUST NOT",
        "     - SHOULD / SHOULD NOT",
        "     - Other",
        "     - Tested",
        "     - n/a",
        "     - Open bugs",
    ]
    for matrix in matrices:
        c = summary_counts(matrix)
        lines += [
            f"   * - :rfc:`{matrix.rfc}` ({_escape(matrix.title)})",
            f"     - {_escape(matrix.scope)}",
            *(
                f"     - {c[key]}"
                for key in ("rows", "must", "should", "other", "tested", "n/a", "bug")
            ),
        ]
    return lines


# -- Sphinx ---------------------------------------------------------------------------------------


def setup(app: Any) -> dict[str, Any]:
    """Register the directives (Sphinx imported here only, so the test needs no Sphinx)."""
    from docutils import nodes  # noqa: PLC0415
    from docutils.statemachine import StringList  # noqa: PLC0415
    from sphinx.util import logging  # noqa: PLC0415
    from sphinx.util.docutils import SphinxDirective  # noqa: PLC0415

    logger = logging.getLogger(__name__)

    class _Base(SphinxDirective):
        has_content = False

        def _load(self, name: str) -> Matrix | None:
            rel, path = self.env.relfn2path(name, self.env.docname)
            self.env.note_dependency(rel)
            try:
                matrix = load(Path(path))
            except (OSError, tomllib.TOMLDecodeError, MatrixError) as exc:
                logger.warning("conformance data %s: %s", name, exc, location=self.get_location())
                return None
            for problem in check(matrix, imports=False):
                logger.warning("conformance matrix: %s", problem, location=self.get_location())
            for row in matrix.rows:
                for test_id in row.tests:
                    test_file = ROOT / test_id.partition("::")[0]
                    if test_file.is_file():
                        self.env.note_dependency(str(test_file))
            return matrix

        def _render(self, rst: list[str]) -> list[nodes.Node]:
            container = nodes.container()
            source = self.get_source_info()[0]
            self.state.nested_parse(StringList(rst, source=source), self.content_offset, container)
            return list(container.children)

    class MatrixDirective(_Base):
        required_arguments = 1
        option_spec: ClassVar[dict[str, Any]] = {
            "sections": lambda arg: arg.split(),
            "status": lambda arg: arg.split(),
        }

        def run(self) -> list[nodes.Node]:
            matrix = self._load(self.arguments[0])
            if matrix is None:
                return []
            rst = matrix_rst(
                matrix, self.options.get("sections", ()), self.options.get("status", ())
            )
            return self._render(rst)

    class SummaryDirective(_Base):
        required_arguments = 1
        optional_arguments = 10

        def run(self) -> list[nodes.Node]:
            matrices = [m for m in map(self._load, self.arguments) if m is not None]
            return self._render(summary_rst(matrices))

    def add_static(_app: Any, config: Any) -> None:
        config.html_static_path.append(str(STATIC_DIR))

    app.connect("config-inited", add_static)
    app.add_css_file("conformance.css")
    app.add_directive("conformance-matrix", MatrixDirective)
    app.add_directive("conformance-summary", SummaryDirective)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
