"""The conformance matrix (docs/conformance/*.toml) cannot rot.

Every row names code that exists (``module:qualified.name``, imported) and tests that exist
(``tests/...py::[Class::]function``, read from the test files), or says why the rule does not
apply here; every section in scope has a row; both RFCs are covered. The checker itself lives
in ``docs/_ext/conformance.py`` (the Sphinx extension that renders the matrix), so the docs
and this test read the data the same way; the last tests here feed it broken data to show it
notices.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_checker() -> ModuleType:
    path = ROOT / "docs" / "_ext" / "conformance.py"
    spec = importlib.util.spec_from_file_location("conformance", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("conformance", module)
    spec.loader.exec_module(module)
    return module


conformance = _load_checker()
MATRICES = {m.path.name: m for m in conformance.load_all()}


def test_both_rfcs_are_covered() -> None:
    assert {m.rfc for m in MATRICES.values()} == {6455, 7692, 8441, 9220}
    for matrix in MATRICES.values():
        assert matrix.rows, matrix.path.name
        assert matrix.sections, matrix.path.name


@pytest.mark.parametrize("name", sorted(MATRICES))
def test_matrix_is_sound(name: str) -> None:
    problems = conformance.check(MATRICES[name])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", sorted(MATRICES))
def test_requirements_are_written_in_our_words(name: str) -> None:
    # Short sentences of our own: a reader checks them against the RFC, not a copy of it.
    for row in MATRICES[name].rows:
        text = row.requirement
        assert text.endswith("."), f"{row.id}: a sentence"
        assert len(text) <= 320, f"{row.id}: keep the requirement short"
        assert "MUST" not in text and "SHOULD" not in text, f"{row.id}: the level says that"


def test_every_gap_test_is_in_the_matrix() -> None:
    # tests/test_rfc_gaps.py exists for the matrix: each of its tests proves some row.
    named = {t for m in MATRICES.values() for row in m.rows for t in row.tests}
    gaps = conformance._module_tests((ROOT / "tests" / "test_rfc_gaps.py").resolve())
    missing = {f"tests/test_rfc_gaps.py::{name}" for name in gaps} - named
    assert not missing, sorted(missing)


def test_open_bugs_are_strict_xfails() -> None:
    # A row shows an open bug only through a strict xfail test: fixing the bug turns the
    # test into a failure until the mark goes, and then the row reads "tested".
    for matrix in MATRICES.values():
        for row in matrix.rows:
            for test_id in row.tests:
                info = conformance.resolve_test(test_id)
                if isinstance(info, str) or not info.xfail:
                    continue
                assert info.reason, f"{test_id}: say which rule is broken"
                path, _, name = test_id.partition("::")
                source = (ROOT / path).read_text(encoding="utf-8")
                function = name.split("::")[-1]
                tree = ast.parse(source)
                marks = [
                    ast.unparse(d)
                    for node in ast.walk(tree)
                    if isinstance(node, ast.FunctionDef) and node.name == function
                    for d in node.decorator_list
                    if "xfail" in ast.unparse(d)
                ]
                assert marks and all("strict=True" in m for m in marks), test_id
                assert conformance.status(row)[0] == "bug", row.id


@pytest.mark.parametrize("name", sorted(MATRICES))
def test_every_row_is_rendered(name: str) -> None:
    matrix = MATRICES[name]
    lines = conformance.matrix_rst(matrix)
    assert sum(line.startswith("   * - :rfc:") for line in lines) == len(matrix.rows)
    summary = conformance.summary_rst(MATRICES.values())
    assert any(f":rfc:`{matrix.rfc}`" in line for line in summary)


# -- the checker notices broken data --------------------------------------------------------------

HEADER = """
rfc = 6455
title = "t"
scope = "s"
sections = ["5.1", "5.2"]
"""

GOOD_ROW = """
[[row]]
id = "5.1/a"
section = "5.1"
level = "MUST"
party = "ours"
requirement = "A client masks."
where = ["wsmachine.connection:Connection._frame"]
tests = ["tests/test_connection.py::TestMasking::test_client_masks_control_frames"]

[[row]]
id = "5.2/b"
section = "5.2"
level = "MUST NOT"
requirement = "Not here."
na = "why"
"""


def _problems(tmp_path: Path, extra: str) -> list[str]:
    path = tmp_path / "m.toml"
    path.write_text(HEADER + GOOD_ROW + extra, encoding="utf-8")
    problems: list[str] = conformance.check(conformance.load(path))
    return problems


def _row(**fields: str | list[str]) -> str:
    lines = ["[[row]]"]
    for key, value in fields.items():
        if isinstance(value, list):
            lines.append(f"{key} = [{', '.join(repr(v).replace(chr(39), chr(34)) for v in value)}]")
        else:
            lines.append(f'{key} = "{value}"')
    return "\n" + "\n".join(lines) + "\n"


BASE = {
    "id": "5.1/x",
    "section": "5.1",
    "level": "MUST",
    "party": "peer",
    "requirement": "Something.",
    "where": ["wsmachine.frames:FrameReader.feed"],
    "tests": ["tests/test_frames.py::TestMaskingRules::test_unmasked_frame_from_client"],
}


def test_good_data_has_no_problem(tmp_path: Path) -> None:
    assert _problems(tmp_path, _row(**BASE)) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"tests": ["tests/test_frames.py::TestMaskingRules::test_no_such_test"]}, "no test"),
        ({"tests": ["tests/test_frames.py::TestNoSuchClass::test_x"]}, "no test"),
        ({"tests": ["tests/test_no_such_file.py::test_x"]}, "no file"),
        ({"tests": ["tests/test_frames.py::TestMaskKeySource"]}, "no test"),
        ({"tests": ["tests/test_frames.py::pattern"]}, "no test"),  # a helper, not a test
        ({"tests": ["tests/test_frames.py::TestOpcodes::test_unknown_opcode_fails[1]"]}, "param"),
        ({"tests": ["wsmachine/frames.py::feed"]}, "tests/"),
        ({"tests": []}, "names no test"),
        ({"where": []}, "names no module"),
        ({"where": ["wsmachine.frames:FrameReader.no_such_method"]}, "has no"),
        ({"where": ["wsmachine.no_such_module:f"]}, "cannot import"),
        ({"where": ["wsmachine.frames.FrameReader"]}, "module:name"),
        ({"section": "9.9"}, "not in the file's sections"),
        ({"level": "MUSTN'T"}, "level"),
        ({"party": "someone"}, "party"),
        ({"id": "5.1/a"}, "duplicate id"),
    ],
)
def test_broken_rows_are_reported(
    tmp_path: Path, change: dict[str, str | list[str]], expected: str
) -> None:
    problems = _problems(tmp_path, _row(**{**BASE, **change}))
    assert any(expected in p for p in problems), problems


def test_a_section_without_rows_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(HEADER.replace('"5.2"]', '"5.2", "5.3"]') + GOOD_ROW, encoding="utf-8")
    problems = conformance.check(conformance.load(path))
    assert problems == ["m.toml: section 5.3 has no row"]


def test_unknown_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(HEADER + GOOD_ROW + _row(**BASE, test="typo"), encoding="utf-8")
    with pytest.raises(conformance.MatrixError, match="unknown keys"):
        conformance.load(path)


# -- the Autobahn results page --------------------------------------------------------------------


def _load_report() -> ModuleType:
    path = ROOT / "tests" / "autobahn" / "report.py"
    spec = importlib.util.spec_from_file_location("autobahn_report", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _role(role: str, groups: dict[str, dict[str, int]], not_ok: list[dict[str, object]]) -> dict:
    behaviors = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "ERROR")
    counts = {b: sum(g.get(b, 0) for g in groups.values()) for b in behaviors}
    full = {name: {b: g.get(b, 0) for b in behaviors} for name, g in groups.items()}
    return {
        "role": role,
        "passed": not counts["FAILED"],
        "seconds": 1.0,
        "total": sum(counts.values()),
        "counts": counts,
        "groups": full,
        "not_ok": not_ok,
        "harness_errors": [],
        "cases": [],
    }


# The shape tests/autobahn/run.py writes (Summary.to_json).
SUMMARY = {
    "agent": "wsmachine",
    "kosoku": "0.1.0",
    "python": "3.11.7",
    "cases": ["1.*", "7.*", "12.*"],
    "exclude": [],
    "concurrency": 16,
    "seconds": 2.0,
    "passed": False,
    "roles": {
        "server": _role(
            "server",
            {"1.*": {"OK": 16}, "7.*": {"OK": 36, "INFORMATIONAL": 1}, "12.*": {"OK": 90}},
            [
                {
                    "case_id": "7.1.6",
                    "behavior": "INFORMATIONAL",
                    "behavior_close": "INFORMATIONAL",
                    "duration_ms": 3,
                    "remote_close_code": 1000,
                }
            ],
        ),
        "client": _role(
            "client",
            {"1.*": {"OK": 15, "FAILED": 1}, "7.*": {"OK": 37}, "12.*": {"OK": 90}},
            [
                {
                    "case_id": "1.1.2",
                    "behavior": "FAILED",
                    "behavior_close": "OK",
                    "duration_ms": 3,
                    "remote_close_code": 1000,
                }
            ],
        ),
    },
}


def test_autobahn_report_counts_each_group_in_both_roles(tmp_path: Path) -> None:
    report = _load_report()
    (tmp_path / "client").mkdir()
    (tmp_path / "client" / "x_case_1_1_2.json").write_text(
        '{"id": "1.1.2", "description": "Send text message with payload 125"}', encoding="utf-8"
    )
    summary_path = tmp_path / "autobahn-summary.json"
    summary_path.write_text(json.dumps(SUMMARY), encoding="utf-8")
    output = tmp_path / "results.inc"
    assert report.main([str(summary_path), "--output", str(output)]) == 0
    text = output.read_text(encoding="utf-8")
    assert "**Result: FAILED.**" in text
    assert "   * - 1.*\n     - Framing: text and binary messages\n     - 16\n" in text
    assert "     - 16 OK\n     - 15 OK, 1 FAILED\n" in text
    assert "     - 36 OK, 1 INFORMATIONAL\n     - 37 OK\n" in text
    assert "* 1.1.2 as client: FAILED" in text and "Send text message with payload 125" in text
    assert "* 7.1.6 as server: INFORMATIONAL" in text
    docutils_core = pytest.importorskip("docutils.core")
    html5 = pytest.importorskip("docutils.writers.html5_polyglot")
    html = docutils_core.publish_string(
        text, writer=html5.Writer(), settings_overrides={"report_level": 2, "halt_level": 2}
    )
    assert b"Verdicts per case group" in html


def test_autobahn_report_refuses_a_summary_without_roles(tmp_path: Path) -> None:
    report = _load_report()
    summary_path = tmp_path / "autobahn-summary.json"
    summary_path.write_text('{"roles": {}}', encoding="utf-8")
    assert report.main([str(summary_path), "--output", str(tmp_path / "x.inc")]) == 1
    assert not (tmp_path / "x.inc").exists()


def test_the_docs_include_a_generated_autobahn_report() -> None:
    text = (ROOT / "docs" / "autobahn" / "results.inc").read_text(encoding="utf-8")
    assert text.startswith(".. This file is generated by tests/autobahn/report.py")
    assert "**Result: passed.**" in text
    assert "As server" in text and "As client" in text
