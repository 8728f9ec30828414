"""A small local Sphinx extension for the wsmachine docs.

Directives:

``.. wsmachine-transitions::``
    Renders :data:`wsmachine.state.TRANSITIONS` at build time, so the docs cannot drift from
    the code. Option ``:view:`` picks the rendering: ``table`` (one row per allowed pair),
    ``matrix`` (actions x states, forbidden pairs shown as a dash) or ``diagram`` (a plain-text
    tree in a literal block).

``.. wsmachine-output:: examples/sansio_pair.py``
    Runs a Python example at build time and shows what it printed. The build fails if the
    example fails, so the shown output is always real.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

from wsmachine import state as state_module
from wsmachine.state import TRANSITIONS, Action, State

_ARROW = "──▶"
#: The repository root, put on the path of the examples run at build time.
_ROOT = Path(__file__).resolve().parents[2]


def _state_ref(state: State) -> str:
    return f":py:attr:`~wsmachine.State.{state.name}`"


def _action_ref(action: Action) -> str:
    return f":py:attr:`{action.value} <wsmachine.state.Action.{action.name}>`"


def _outgoing(state: State) -> list[tuple[Action, State]]:
    """The allowed actions from ``state`` and where they lead, in the enums' order."""
    return [(a, TRANSITIONS[state, a]) for a in Action if (state, a) in TRANSITIONS]


def _is_terminal(state: State) -> bool:
    return all(target is state for _, target in _outgoing(state))


def table_rst() -> list[str]:
    lines = [
        ".. list-table:: Allowed transitions (generated from ``TRANSITIONS``)",
        "   :header-rows: 1",
        "   :widths: 25 35 25",
        "",
        "   * - From",
        "     - Action",
        "     - To",
    ]
    for state in State:
        for action, target in _outgoing(state):
            lines += [
                f"   * - {_state_ref(state)}",
                f"     - {_action_ref(action)}",
                f"     - {_state_ref(target)}",
            ]
    return lines


def matrix_rst() -> list[str]:
    """Actions down, states across (the narrower way round), each cell the target or a dash."""
    states = list(State)
    lines = [
        ".. list-table:: Every action x state pair; a dash is a forbidden pair "
        "(generated from ``TRANSITIONS``)",
        "   :header-rows: 1",
        "   :stub-columns: 1",
        "",
        "   * - action \\\\ state",
    ]
    lines += [f"     - {state.name}" for state in states]
    for action in Action:
        lines.append(f"   * - {action.value}")
        for state in states:
            target = TRANSITIONS.get((state, action))
            lines.append(f"     - {target.name if target is not None else '—'}")
    return lines


def diagram_text() -> str:
    width = max(len(a.value) for a in Action) + 2
    out: list[str] = []
    for state in State:
        suffix = "   (terminal)" if _is_terminal(state) else ""
        out.append(f"{state.name}{suffix}")
        edges = _outgoing(state)
        for i, (action, target) in enumerate(edges):
            branch = "└─" if i == len(edges) - 1 else "├─"
            label = f" {action.value} ".ljust(width, "─")
            loop = "  (stays)" if target is state else ""
            out.append(f"  {branch}{label}{_ARROW} {target.name}{loop}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


class TransitionsDirective(SphinxDirective):
    """Render the transition table of :mod:`wsmachine.state`."""

    has_content = False
    option_spec: ClassVar[dict[str, Any]] = {
        "view": lambda arg: directives.choice(arg, ("table", "matrix", "diagram")),
    }

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(state_module.__file__)
        view = self.options.get("view", "table")
        if view == "diagram":
            text = diagram_text()
            block = nodes.literal_block(text, text)
            block["language"] = "text"
            return [block]
        rst = table_rst() if view == "table" else matrix_rst()
        container = nodes.container()
        source = self.get_source_info()[0]
        self.state.nested_parse(StringList(rst, source=source), self.content_offset, container)
        return list(container.children)


class OutputDirective(SphinxDirective):
    """Run a Python example and show its standard output."""

    required_arguments = 1
    has_content = False
    option_spec: ClassVar[dict[str, Any]] = {"timeout": directives.positive_int}

    def run(self) -> list[nodes.Node]:
        rel, path = self.env.relfn2path(self.arguments[0], self.env.docname)
        self.env.note_dependency(rel)
        timeout = self.options.get("timeout", 60)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
        try:
            result = subprocess.run(  # noqa: S603 - runs our own example with our interpreter
                [sys.executable, path],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env=env,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise self.error(f"running {rel} failed: {exc}") from None
        if result.returncode != 0:
            raise self.error(
                f"{rel} exited with status {result.returncode}:\n{result.stderr[-2000:]}"
            )
        block = nodes.literal_block(result.stdout, result.stdout)
        block["language"] = "text"
        return [block]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("wsmachine-transitions", TransitionsDirective)
    app.add_directive("wsmachine-output", OutputDirective)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
