"""Packaging facts CI relies on: the license ships, and the C build switch is declared.

Building the wheel and sdist takes a network-isolated build environment, so it is checked by
hand (``python -m build``: LICENSE lands in the sdist and in the wheel's
``.dist-info/licenses/``); these tests keep the declarations that make it so.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_license_file_is_mit_for_the_wsmachine_authors() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the wsmachine authors" in text


def test_pyproject_ships_the_license() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]


def test_setup_py_declares_the_extension_switch() -> None:
    source = (ROOT / "setup.py").read_text()
    assert 'os.environ.get("WSMACHINE_BUILD_EXTENSION", "optional")' in source
    assert 'optional=mode == "optional"' in source
