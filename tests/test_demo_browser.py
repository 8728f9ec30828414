"""A real browser against the demo: headless Chromium opens the page that
``python -m wsmachine serve`` serves, and talks to the server with ``new WebSocket(...)``.

Chromium is driven over its DevTools protocol, itself a WebSocket: the test's client is
wsmachine's own blocking adapter, so no driver package and no browser download are needed.
Debian's ``chromium`` package provides the browser (``.ci/run`` installs it). Without it the
test is skipped, except under ``CI`` where it must run.

The page's own controls are used as a person would: clicks at the centre of each control
(so a control pushed off the screen or covered fails), typed text and Enter, at a phone's
width (390 px) and a desktop's (1,280 px). Screenshots go to ``$WSMACHINE_SCREENSHOTS`` when
set (to look at them), else to the test's temporary directory.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wsmachine import HTTPRequest
from wsmachine.adapters import HTTPResponse
from wsmachine.adapters.blocking import WebSocket, connect
from wsmachine.adapters.selector import Handler, Peer, Server
from wsmachine.demo.page import PAGE

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
    "--hide-scrollbars",
    "--remote-debugging-port=0",
]

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip(
        "Chromium is not installed (apt-get install -y chromium); under CI this test must run",
        allow_module_level=True,
    )


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
        #: The events that arrived between answers: (session id, method, params).
        self.events: list[tuple[str | None, str, dict[str, Any]]] = []
        #: The tab last brought to the front, if any was.
        self.front: str | None = None

    def call(
        self, method: str, session: str | None = None, timeout: float = 30.0, **params: Any
    ) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        for _ in range(100_000):  # events arrive between the answers; keep them
            left = deadline - time.monotonic()
            if left <= 0:
                break
            answer = json.loads(self.ws.recv(timeout=left))
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise AssertionError(f"{method} failed: {answer['error']}")
                result: dict[str, Any] = answer["result"]
                return result
            if "method" in answer and len(self.events) < 20_000:
                self.events.append(
                    (answer.get("sessionId"), answer["method"], answer.get("params", {}))
                )
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

    def wait(self, session: str, condition: str, timeout: float = 10.0) -> None:
        """Wait until the JavaScript ``condition`` holds in the page."""
        tries = int(timeout / 0.025)
        held = self.evaluate(
            session,
            f"""(async () => {{
                for (let i = 0; i < {tries}; i++) {{
                    if ({condition}) return true;
                    await new Promise((resolve) => setTimeout(resolve, 25));
                }}
                return false;
            }})()""",
            timeout=timeout + 10,
        )
        if not held:
            state = self.evaluate(session, "document.getElementById('status').textContent")
            raise AssertionError(f"{condition} did not hold within {timeout} s (status: {state})")

    def open_page(
        self, url: str, width: int = 1280, height: int = 800, greeted: bool = True
    ) -> str:
        """Open a tab at ``width`` x ``height`` CSS pixels on ``url``; return its session id
        once the demo's socket is open (and the server's greeting arrived)."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):  # before the page loads
            self.call(f"{domain}.enable", session)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=width < 600,
        )
        self.call("Page.navigate", session, url=url)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(AssertionError):  # the document is being replaced
                if self.evaluate(session, "typeof demo === 'object' && demo.ws !== null"):
                    break
            time.sleep(0.05)
        else:
            raise AssertionError("the page did not load its script")
        assert self.evaluate(session, "demo.opened").startswith("ws://")
        if greeted:
            self.wait(session, "demo.json")
        return session

    def click(self, session: str, selector: str) -> None:
        """Click the centre of an element with the mouse, as a person would: it must be
        on the screen and not covered."""
        where = self.evaluate(
            session,
            f"""(() => {{
                const element = document.querySelector({json.dumps(selector)});
                element.scrollIntoView({{block: "nearest"}});
                const box = element.getBoundingClientRect();
                const x = box.left + box.width / 2, y = box.top + box.height / 2;
                const hit = document.elementFromPoint(x, y);
                return {{x: x, y: y, hit: hit === element || element.contains(hit),
                         inside: box.left >= 0 && box.right <= innerWidth}};
            }})()""",
        )
        assert where["hit"] and where["inside"], f"{selector} cannot be clicked: {where}"
        for kind in ("mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                session,
                type=kind,
                x=where["x"],
                y=where["y"],
                button="left",
                clickCount=1,
            )

    def type(self, session: str, selector: str, text: str, enter: bool = False) -> None:
        """Click into a field, replace its text with ``text``, and press Enter if asked."""
        self.click(session, selector)
        self.evaluate(session, f"document.querySelector({json.dumps(selector)}).select()")
        self.call("Input.insertText", session, text=text)
        if enter:
            for kind in ("keyDown", "keyUp"):
                self.call(
                    "Input.dispatchKeyEvent",
                    session,
                    type=kind,
                    key="Enter",
                    code="Enter",
                    windowsVirtualKeyCode=13,
                    **({"text": "\r"} if kind == "keyDown" else {}),
                )

    def bring_to_front(self, session: str) -> None:
        self.call("Page.bringToFront", session)
        self.front = session

    def screenshot(self, session: str, path: Path) -> None:
        """Save a tab as PNG. A tab in the background draws no frames, and Chromium
        (156.0.8078.114) then waits forever for one: the tab comes to the front for the
        shot, and the tab that was in front goes back."""
        front = self.front
        self.bring_to_front(session)
        data = self.call("Page.captureScreenshot", session, format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        if front is not None:
            self.bring_to_front(front)

    def problems(self, session: str) -> list[str]:
        """The console errors, uncaught exceptions and failed HTTP answers of a tab."""
        found = []
        for owner, method, params in self.events:
            if owner != session:
                continue
            if method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"{params['entry'].get('url', '')} {params['entry']['text']}")
            elif method == "Runtime.exceptionThrown":
                found.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
                found.append(str(params["args"]))
            elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
                found.append(f"{params['response']['status']} {params['response']['url']}")
        return found


def start_server(log: Path, port: int = 0) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "wsmachine", "serve", "--port", str(port)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[tuple[str, Path, list[subprocess.Popen[bytes]]]]:
    """The demo server on a port the OS picks; its URL, log, and the processes started (a
    test may add a restarted server: every one is stopped)."""
    log = tmp_path / "server.log"
    processes = [start_server(log)]
    try:
        url = wait_for(log, r"serving (http://\S+/)", 15).group(1)
        yield url, log, processes
    finally:
        for process in processes:
            stop(process)


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    chosen = os.environ.get("WSMACHINE_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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
#: Page state, in JavaScript: whether the message box and Send are disabled, the label of
#: the Close button, the name.
DISABLED = "[document.getElementById('text').disabled, document.getElementById('send').disabled]"
CLOSE_LABEL = "document.getElementById('close').textContent"
NAME = "document.getElementById('name').value"


def chat(devtools: DevTools, session: str) -> list[dict[str, Any]]:
    """The chat messages a tab received (the server's JSON), in order."""
    result: list[dict[str, Any]] = devtools.evaluate(
        session,
        """demo.messages.filter((m) => typeof m === "string").map((m) => JSON.parse(m))
            .filter((m) => m.type === "message")""",
    )
    return result


def test_browser_chats_with_the_demo_server(
    demo_server: tuple[str, Path, list[subprocess.Popen[bytes]]], devtools: DevTools
) -> None:
    url, log, processes = demo_server
    page = devtools.open_page(url)
    wait_for(log, r"connect\s+127\.0\.0\.1:\d+ path=/ws name=guest-1 \(1 connected\)", 5)

    # Chromium offers permessage-deflate and the demo accepts it: all below is compressed.
    assert "permessage-deflate" in devtools.evaluate(page, "demo.ws.extensions")
    # The server greeted the tab, and only the tab; nothing was broadcast.
    welcome = devtools.evaluate(page, "JSON.parse(demo.messages[0])")
    assert welcome == {"type": "welcome", "id": 1, "name": "guest-1", "online": 1}

    # Text with non-ASCII characters, astral ones included, round-trips intact, with a name.
    echoed = devtools.evaluate(
        page,
        f"""(async () => {{
            const n = demo.messages.length;
            const text = {json.dumps(TEXT)};
            demo.ws.send(JSON.stringify({{type: "message", name: "Zoë ✓", text: text}}));
            await demo.until(n + 1);
            return JSON.parse(demo.messages[n]);
        }})()""",
    )
    assert echoed == {"type": "message", "id": 1, "from": "Zoë ✓", "text": TEXT}

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
            const got = demo.messages.slice(n, n + {SMALL_COUNT}).map((m) => JSON.parse(m).text);
            return got.every((m, i) => m === "m" + i) ? got.length : got.slice(0, 5);
        }})()""",
    )
    assert order == SMALL_COUNT

    # A second tab: greeted alone (the first tab gets nothing), then it gets what the first
    # one sends, with the sender's name.
    before = devtools.evaluate(page, "demo.messages.length")
    other = devtools.open_page(url)
    wait_for(log, r"name=guest-2 \(2 connected\)", 5)
    assert devtools.evaluate(other, "JSON.parse(demo.messages[0]).online") == 2
    devtools.evaluate(
        page,
        """demo.ws.send(JSON.stringify({type: "message", name: "Zoë", text: "to everyone"}));
        true""",
    )
    devtools.wait(other, "demo.messages.length >= 2")
    assert chat(devtools, other)[-1] == {
        "type": "message",
        "id": 1,
        "from": "Zoë",
        "text": "to everyone",
    }
    assert devtools.evaluate(page, "demo.messages.length") == before + 1  # its own message

    # Close with a code and a reason: the server logs both and answers with the code; the
    # page shows what it sent and does not reconnect.
    closed = devtools.evaluate(page, "demo.ws.close(4321, 'bye ünïcödé'); demo.closing")
    assert closed["code"] == 4321
    assert closed["wasClean"] is True
    assert closed["sent"] == {"code": 4321, "reason": "bye ünïcödé"}
    status = devtools.evaluate(page, "document.getElementById('status').textContent")
    assert "code 4321, reason \u201cbye ünïcödé\u201d" in status
    assert "press Connect" in status
    wait_for(log, r"disconnect 127\.0\.0\.1:\d+ code=4321 reason='bye ünïcödé' by=client", 5)

    # Stopping the server closes the other tab with 1001 and exits cleanly; the tab says it
    # reconnects, and does so once a server listens on the port again.
    assert stop(processes[0], signal.SIGTERM) == 0
    closed = devtools.evaluate(other, "demo.closing")
    assert closed["code"] == 1001
    assert "stopped" in log.read_text(encoding="utf-8")
    status = devtools.evaluate(other, "document.getElementById('status').textContent")
    assert "code 1001" in status
    assert "reconnecting in 1 s" in status
    assert devtools.evaluate(other, "document.getElementById('text').disabled") is True
    devtools.wait(other, "demo.attempts >= 2", timeout=15)  # the first retry failed
    assert devtools.evaluate(other, "demo.retryIn") == 2000  # the delay doubles
    port = int(url.rsplit(":", 1)[1].strip("/"))
    processes.append(start_server(log, port))
    devtools.wait(other, "demo.json && demo.ws.readyState === WebSocket.OPEN", timeout=20)
    assert devtools.evaluate(other, "demo.attempts") == 0
    assert devtools.evaluate(page, "demo.ws.readyState") == 3  # the closed tab stayed closed


@pytest.mark.parametrize("width", [390, 1280])
def test_every_page_action(
    demo_server: tuple[str, Path, list[subprocess.Popen[bytes]]],
    devtools: DevTools,
    screenshots: Path,
    width: int,
) -> None:
    url, log, _ = demo_server
    page = devtools.open_page(url, width, 844 if width < 600 else 800)
    other = devtools.open_page(url, width, 844 if width < 600 else 800)
    devtools.bring_to_front(page)

    def layout_fits(session: str) -> None:
        """Nothing sticks out sideways: no horizontal scrolling, every control on screen."""
        fits = devtools.evaluate(
            session,
            """(() => {
                const width = document.documentElement.clientWidth;
                const out = [...document.querySelectorAll("input, button, #log, #status")]
                    .filter((e) => { const b = e.getBoundingClientRect();
                                     return b.left < 0 || b.right > width; })
                    .map((e) => e.id);
                return {scroll: document.documentElement.scrollWidth <= width, out: out};
            })()""",
        )
        assert fits == {"scroll": True, "out": []}, f"at {width} px: {fits}"

    def status(session: str) -> str:
        text: str = devtools.evaluate(session, "document.getElementById('status').textContent")
        return text

    def lines(session: str) -> list[str]:
        found: list[str] = devtools.evaluate(
            session, "[...document.querySelectorAll('#log li')].map((li) => li.textContent)"
        )
        return found

    layout_fits(page)
    # Each tab was greeted alone: the first tab saw nothing of the second one's greeting.
    assert lines(page) == ["you joined: nobody else here"]
    assert lines(other) == ["you joined: 1 other here"]

    # The name field comes with a generated name; change it.
    assert re.fullmatch(
        r"guest-\d{4}", devtools.evaluate(page, "document.getElementById('name').value")
    )
    devtools.type(page, "#name", "Ada")

    # Send with the button, then with Enter: each message shows once, with the sender.
    devtools.type(page, "#text", "hello from Ada")
    devtools.click(page, "#send")
    devtools.wait(page, "document.querySelectorAll('#log li.own').length === 1")
    devtools.type(page, "#text", "a longer message that must wrap on a narrow screen " * 3, True)
    devtools.wait(page, "document.querySelectorAll('#log li.own').length === 2")
    assert devtools.evaluate(page, "document.getElementById('text').value") == ""
    own = lines(page)[1:]
    assert own[0] == "Ada (you): hello from Ada"
    assert sum("hello from Ada" in line for line in own) == 1
    devtools.wait(other, "document.querySelectorAll('#log li').length === 3")
    assert lines(other)[1] == "Ada: hello from Ada"
    layout_fits(page)
    devtools.screenshot(page, screenshots / f"chat-{width}.png")
    devtools.screenshot(other, screenshots / f"chat-other-{width}.png")

    # Close with a typed reason: the page shows it, disables the input, and stays closed.
    devtools.type(page, "#reason", "bye from Ada")
    devtools.click(page, "#close")
    devtools.wait(page, "demo.ws.readyState === WebSocket.CLOSED")
    assert "code 1000, reason \u201cbye from Ada\u201d" in status(page)
    assert "bye from Ada" in lines(page)[-1]
    wait_for(log, r"code=1000 reason='bye from Ada' by=client", 5)
    assert devtools.evaluate(page, f"[{DISABLED}, {CLOSE_LABEL}, demo.retryIn]") == [
        [True, True],
        "Connect",
        None,
    ]
    layout_fits(page)
    devtools.screenshot(page, screenshots / f"closed-{width}.png")

    # Connect again with the button; the name stays.
    devtools.click(page, "#close")
    devtools.wait(page, f"demo.json && !{DISABLED}[0]")
    assert devtools.evaluate(page, f"[{NAME}, {CLOSE_LABEL}]") == ["Ada", "Close"]

    # The server closes the connection (a message over its 1 MiB limit: 1009): the page says
    # so, disables the input, and reconnects by itself.
    devtools.evaluate(page, "demo.ws.send('x'.repeat(2 << 20)); true")
    devtools.wait(page, "demo.retryIn !== null")
    assert re.search(r"code 1009.*reconnecting in 1 s \(attempt 1\)", status(page))
    assert devtools.evaluate(page, DISABLED) == [True, True]
    layout_fits(page)
    devtools.screenshot(page, screenshots / f"reconnecting-{width}.png")
    wait_for(log, r"code=1009 reason='[^']*' by=server", 5)
    devtools.wait(page, f"demo.json && !{DISABLED}[0]", timeout=10)
    assert "connected to" in status(page)
    assert lines(page)[-1] == "you joined: 1 other here"

    # No console errors, no failed requests (the icon is inline), on either tab.
    assert devtools.problems(page) == []
    assert devtools.problems(other) == []


class PlainChat(Handler):
    """A server of plain text (as the asyncio how-to's): the page, and a broadcast."""

    def __init__(self) -> None:
        self.server: Server | None = None

    def on_http(self, request: HTTPRequest) -> HTTPResponse:
        return HTTPResponse(200, [("content-type", "text/html; charset=utf-8")], PAGE.encode())

    def on_message(self, peer: Peer, message: str | bytes) -> None:
        assert self.server is not None
        self.server.broadcast(message)


def test_the_page_with_a_server_of_plain_text(devtools: DevTools) -> None:
    handler = PlainChat()
    with Server(handler, "127.0.0.1", 0) as server:
        handler.server = server
        server.start()
        page = devtools.open_page(f"http://127.0.0.1:{server.port}/", greeted=False)
        # No greeting comes, so the page sends plain text and shows what comes back once.
        devtools.type(page, "#text", "plain hello", enter=True)
        devtools.wait(page, "demo.messages.length === 1")
        assert devtools.evaluate(page, "demo.json") is False
        items = devtools.evaluate(
            page, "[...document.querySelectorAll('#log li')].map((li) => li.textContent)"
        )
        assert items == ["plain hello"]


def _docs_chat_program() -> str:
    """The asyncio chat server of docs/howto/asyncio.rst, as printed there."""
    text = (ROOT / "docs" / "howto" / "asyncio.rst").read_text(encoding="utf-8")
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text)
    (program,) = [b for b in blocks if "def chat_server" in b]
    return "\n".join(line[4:] for line in program.splitlines()) + "\n"


def test_the_page_with_the_asyncio_chat_of_the_docs(tmp_path: Path, devtools: DevTools) -> None:
    """The chat server of the asyncio how-to, as written, with the page in Chromium: it
    greets each tab alone, passes messages on with the sender's name, and on SIGINT closes
    every tab with 1001 (the adapter's Chromium interop test)."""
    program = tmp_path / "chat.py"
    program.write_text(_docs_chat_program(), encoding="utf-8")
    log = tmp_path / "chat.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-u", str(program), "0"],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    try:
        url = wait_for(log, r"serving (http://\S+/)", 15).group(1)
        first = devtools.open_page(url)
        assert "permessage-deflate" in devtools.evaluate(first, "demo.ws.extensions")
        welcome = devtools.evaluate(first, "JSON.parse(demo.messages[0])")
        assert welcome["type"] == "welcome" and welcome["online"] == 1
        second = devtools.open_page(url, width=390)
        assert devtools.evaluate(second, "JSON.parse(demo.messages[0]).online") == 2
        assert devtools.evaluate(first, "demo.messages.length") == 1  # not told of the second

        devtools.type(first, "#name", "Ada")
        devtools.type(first, "#text", "hello from asyncio ✓", enter=True)
        devtools.wait(second, "demo.messages.length >= 2")
        said = chat(devtools, second)[-1]
        assert (said["from"], said["text"]) == ("Ada", "hello from asyncio ✓")
        devtools.wait(first, "demo.messages.length >= 2")  # the sender gets it once
        assert chat(devtools, first) == [said]
        assert devtools.problems(first) == [] and devtools.problems(second) == []

        for page in (first, second):  # this socket's; the page's reconnect makes another
            devtools.evaluate(page, "window.ending = demo.closing; true")
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
        for page in (first, second):
            assert devtools.evaluate(page, "window.ending")["code"] == 1001
        assert "stopped: every client got 1001" in log.read_text(encoding="utf-8")
    finally:
        stop(process)
