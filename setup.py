"""The build's one dynamic part: the optional C speed-up, required on request.

Everything else about the package is declared in pyproject.toml. ``wsmachine._speedups``
(masking and the frame-parsing loop) is optional: without a compiler the build goes on and
wsmachine uses its pure-Python twins. ``WSMACHINE_BUILD_EXTENSION=required`` makes a failed
C build fail the install instead, so CI cannot lose the speed-up silently.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup

MODES = ("optional", "required")
mode = os.environ.get("WSMACHINE_BUILD_EXTENSION", "optional")
if mode not in MODES:
    raise SystemExit(f"WSMACHINE_BUILD_EXTENSION must be one of {MODES}, not {mode!r}")

setup(
    ext_modules=[
        Extension(
            "wsmachine._speedups",
            sources=["wsmachine/_speedups.c"],
            optional=mode == "optional",
        )
    ]
)
