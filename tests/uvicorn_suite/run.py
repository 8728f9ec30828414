"""Run uvicorn's own WebSocket protocol tests over ``WSMachineProtocol``.

uvicorn's test code is not part of this repository: the source distribution of the installed
uvicorn version is downloaded with ``pip download`` at run time, and from it
``tests/protocols/test_websocket.py`` and what it imports (``tests/conftest.py``,
``tests/utils.py``, ``tests/response.py``) are unpacked into a temporary directory, with
``protocols_conftest.py`` (next to this file) as ``tests/protocols/conftest.py`` to point the
``ws_protocol_cls`` fixture at our class.

    python tests/uvicorn_suite/run.py [pytest arguments...]

prints pytest's output and the counts; the exit status is pytest's. ``tests/test_uvicorn.py``
runs it too.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: What the suite needs from uvicorn's sdist, besides the test module itself.
FILES = (
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/utils.py",
    "tests/response.py",
    "tests/protocols/__init__.py",
    "tests/protocols/test_websocket.py",
)

PYTEST_INI = """\
[pytest]
addopts = -rxXs --strict-markers -p no:cacheprovider
faulthandler_timeout = 60
xfail_strict = true
filterwarnings =
    error
    ignore: The global interpreter lock (GIL)*:RuntimeWarning
"""


class DownloadError(RuntimeError):
    """uvicorn's source distribution could not be downloaded (no network, no index)."""


@dataclasses.dataclass
class Result:
    returncode: int
    passed: int
    failed: int
    skipped: int
    xfailed: int
    failures: list[str]
    output: str

    def summary(self) -> str:
        return (
            f"uvicorn suite over WSMachineProtocol: {self.passed} passed / {self.failed} failed"
            f" / {self.skipped} skipped / {self.xfailed} xfailed (known differences)"
        )


def download_sdist(dest: Path, timeout: float = 180) -> Path:
    """Download the sdist of the installed uvicorn into ``dest``; return its path."""
    version = importlib.metadata.version("uvicorn")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", "-q", "-d", str(dest), f"uvicorn=={version}",
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DownloadError(f"pip download timed out after {timeout} s") from exc
    archives = sorted(dest.glob("uvicorn-*.tar.gz"))
    if done.returncode != 0 or not archives:
        raise DownloadError(f"pip download failed: {done.stderr.strip()[-500:]}")
    return archives[0]


def unpack(archive: Path, dest: Path) -> Path:
    """Unpack the suite's files from ``archive`` into ``dest``; return the suite's root."""
    with tarfile.open(archive) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}
        for name in FILES:
            member = members.get(name)
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if member is None:
                if name.endswith("__init__.py"):
                    target.write_text("")
                    continue
                raise DownloadError(f"{archive.name} has no {name}")
            source = tar.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
    (dest / "tests" / "protocols" / "conftest.py").write_text(
        (HERE / "protocols_conftest.py").read_text()
    )
    (dest / "pytest.ini").write_text(PYTEST_INI)
    return dest


def _counts(report: Path) -> tuple[int, int, int, int, list[str]]:
    passed = failed = skipped = xfailed = 0
    failures = []
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name", "?")
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        skip = case.find("skipped")
        if problem is not None:
            failed += 1
            message = (problem.get("message") or "").splitlines()
            failures.append(f"{name}: {message[0] if message else problem.tag}")
        elif skip is not None:
            if skip.get("type") == "pytest.xfail":
                xfailed += 1
            else:
                skipped += 1
        else:
            passed += 1
    return passed, failed, skipped, xfailed, failures


def run(args: list[str] | None = None, timeout: float = 900) -> Result:
    """Download, unpack and run the suite; raise :class:`DownloadError` if it cannot be had."""
    with tempfile.TemporaryDirectory(prefix="uvicorn-suite-") as tmp:
        root = Path(tmp)
        archive = download_sdist(root / "sdist")
        suite = unpack(archive, root / "suite")
        report = root / "report.xml"
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        command = [
            sys.executable, "-m", "pytest", "tests/protocols/test_websocket.py",
            f"--junitxml={report}", "-q", *(args or []),
        ]  # fmt: skip
        done = subprocess.run(
            command,
            cwd=suite,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        output = done.stdout + done.stderr
        if not report.exists():
            return Result(done.returncode, 0, 0, 0, 0, ["no report: pytest did not run"], output)
        passed, failed, skipped, xfailed, failures = _counts(report)
        return Result(done.returncode, passed, failed, skipped, xfailed, failures, output)


def main() -> int:
    try:
        result = run(sys.argv[1:])
    except DownloadError as exc:
        print(f"cannot get uvicorn's test suite: {exc}", file=sys.stderr)
        return 2
    print(result.output)
    print(result.summary())
    for failure in result.failures:
        print("  FAILED", failure)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
