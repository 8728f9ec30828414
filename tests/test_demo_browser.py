"""A real browser against the demo: headless Chromium opens the page that
``python -m wsmachine serve`` serves, and talks to the server with ``new WebSocket(...)``.

Chromium is driven over its DevTools protocol, itself a WebSocket: the test's client is
wsmachine's own blocking adapter, so no driver package and no browser download are needed.
Debian's ``chromium`` package provides the browser (``.ci/run`` installs it). Without it the
test is skipped, except under ``CI`` where it must run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wsmachine.adapters.blocking import WebSocket, connect

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
]

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip(
        "Chromium is not installed (apt-get install -y chromium); under CI this test must run",
        allow_module_level=True,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(path: Path, pattern: str, timeout: float) -> re.Match[str]:
    """Poll a log file until ``pattern`` matches it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        match = re.search(pattern, text)
        if match:
            return match
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not in {path}:\n{path.read_text(errors='replace')}")


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    """Signal a process we started, wait for it, kill it if it hangs."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode


class DevTools:
    """A minimal Chrome DevTools Protocol client on wsmachine's blocking WebSocket."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.next_id = 0

    def call(
        self, method: str, session: str | None = None, timeout: float = 30.0, **params: Any
    ) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        for _ in range(100_000):  # events arrive between the answers; skip them
            left = deadline - time.monotonic()
            if left <= 0:
                break
            answer = json.loads(self.ws.recv(timeout=left))
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise AssertionError(f"{method} failed: {answer['error']}")
                result: dict[str, Any] = answer["result"]
                return result
        raise AssertionError(f"no answer to {method} within {timeout} s")

    def evaluate(self, session: str, expression: str, timeout: float = 30.0) -> Any:
        """Run JavaScript in the page (awaiting a promise) and return its JSON value."""
        result = self.call(
            "Runtime.evaluate",
            session,
            timeout=timeout,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open_page(self, url: str) -> str:
        """Open a tab on ``url``; return its session id once the demo's socket is open."""
        target = self.call("Target.createTarget", url=url)["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.evaluate(session, "typeof window.demo === 'object'"):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the page did not load its script")
        assert self.evaluate(session, "demo.opened").startswith("ws://")
        return session


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "wsmachine", "serve", "--port", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        url = wait_for(log, r"serving (http://\S+/)", 15).group(1)
        yield url, log, process
    finally:
        stop(process)


@pytest.fixture
def devtools(tmp_path: Path) -> Iterator[DevTools]:
    assert CHROMIUM is not None, "Chromium is needed under CI: apt-get install -y chromium"
    profile = tmp_path / "profile"
    profile.mkdir()
    log = tmp_path / "chromium.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            assert process.poll() is None, f"Chromium exited:\n{log.read_text(errors='replace')}"
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        ws = connect(f"ws://127.0.0.1:{port}{path}", max_message_size=64 << 20, open_timeout=10)
        try:
            yield DevTools(ws)
            with contextlib.suppress(Exception):
                DevTools(ws).call("Browser.close", timeout=5)
        finally:
            ws.close(timeout=5)
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


LARGE = 512 * 1024
SMALL_COUNT = 1000
TEXT = "héllo wörld ✓ 😀 日本語 ∑"


def test_browser_chats_with_the_demo_server(
    demo_server: tuple[str, Path, subprocess.Popen[bytes]], devtools: DevTools
) -> None:
    url, log, process = demo_server
    page = devtools.open_page(url)
    wait_for(log, r"connect\s+127\.0\.0\.1:\d+ path=/ws", 5)

    # Chromium offers permessage-deflate and the demo accepts it: all below is compressed.
    assert "permessage-deflate" in devtools.evaluate(page, "demo.ws.extensions")

    # The page sends "Ping" on open; the server broadcasts it back to its sender.
    assert devtools.evaluate(page, "demo.until(1).then(() => demo.messages[0])") == "Ping"

    # Text with non-ASCII characters, astral ones included, round-trips intact.
    echoed = devtools.evaluate(
        page,
        f"""(async () => {{
            const n = demo.messages.length;
            demo.ws.send({json.dumps(TEXT)});
            await demo.until(n + 1);
            return demo.messages[n];
        }})()""",
    )
    assert echoed == TEXT

    # A large binary message comes back byte for byte.
    check = devtools.evaluate(
        page,
        f"""(async () => {{
            const data = new Uint8Array({LARGE});
            for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 255;
            const n = demo.messages.length;
            demo.ws.send(data.buffer);
            await demo.until(n + 1, 20000);
            const got = new Uint8Array(demo.messages[n]);
            let same = got.length === data.length;
            for (let i = 0; same && i < got.length; i++) same = got[i] === data[i];
            const binary = demo.messages[n] instanceof ArrayBuffer;
            return {{length: got.length, same: same, binary: binary}};
        }})()""",
    )
    assert check == {"length": LARGE, "same": True, "binary": True}

    # Many small messages arrive complete and in order.
    order = devtools.evaluate(
        page,
        f"""(async () => {{
            const n = demo.messages.length;
            for (let i = 0; i < {SMALL_COUNT}; i++) demo.ws.send("m" + i);
            await demo.until(n + {SMALL_COUNT}, 20000);
            const got = demo.messages.slice(n, n + {SMALL_COUNT});
            return got.every((m, i) => m === "m" + i) ? got.length : got.slice(0, 5);
        }})()""",
    )
    assert order == SMALL_COUNT

    # The page's own form: type, submit, and the message shows up in the list.
    shown = devtools.evaluate(
        page,
        """(async () => {
            const n = demo.messages.length;
            document.getElementById("text").value = "typed in the box";
            document.getElementById("send").click();
            await demo.until(n + 1);
            const items = [...document.querySelectorAll("#log li.received")];
            return items[items.length - 1].textContent;
        })()""",
    )
    assert shown == "typed in the box"

    # A second tab gets what the first one sends (broadcast).
    other = devtools.open_page(url)
    devtools.evaluate(other, "demo.until(1)")  # its own Ping came back
    devtools.evaluate(page, "demo.ws.send('to everyone'); true")
    got = devtools.evaluate(
        other,
        """(async () => {
            for (let i = 0; i < 400; i++) {
                if (demo.messages.includes("to everyone")) return "to everyone";
                await new Promise((resolve) => setTimeout(resolve, 25));
            }
            return demo.messages;
        })()""",
    )
    assert got == "to everyone"

    # Close with a code and a reason: the server logs both and answers with the code.
    closed = devtools.evaluate(page, "demo.ws.close(4321, 'bye ünïcödé'); demo.closing")
    assert closed["code"] == 4321
    assert closed["wasClean"] is True
    wait_for(log, r"disconnect 127\.0\.0\.1:\d+ code=4321 reason='bye ünïcödé'", 5)

    # Stopping the server closes the other tab with 1001 and exits cleanly.
    assert stop(process, signal.SIGTERM) == 0
    closed = devtools.evaluate(other, "demo.closing")
    assert closed["code"] == 1001
    assert "stopped" in log.read_text(encoding="utf-8")
