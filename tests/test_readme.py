"""The README's and the docs' front-page snippets run as written, against real clients.

Each Python snippet is taken from README.md (and the one of docs/index.rst) exactly as it is
printed, with one change: its port, 8765, becomes 0 so the operating system picks a free one.
It runs in a child process and must print ``listening on ws://127.0.0.1:PORT/`` first; then
real clients talk to it over loopback, and the process is stopped.
"""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from websockets.sync.client import connect as ws_connect

from wsmachine import Accepted, ClientConnection, Close, Event, Text
from wsmachine.testing import FrameBuilder

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30.0  # seconds for any one start or network wait
PORT = "8765"  # the port the snippets print; each must name it exactly once


def readme_snippets() -> list[str]:
    """Every fenced ``python`` block of README.md, as printed."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def index_snippet() -> str:
    """The one ``code-block:: python`` of docs/index.rst, dedented."""
    text = (ROOT / "docs" / "index.rst").read_text(encoding="utf-8")
    blocks = re.findall(
        r"^\.\. code-block:: python\n\n((?:(?:   .*)?\n)+)", text, flags=re.MULTILINE
    )
    assert len(blocks) == 1, "docs/index.rst should have one Python snippet"
    return textwrap.dedent(blocks[0]).strip("\n") + "\n"


def blocking_snippets() -> dict[str, str]:
    """The sans-IO echo servers on a blocking socket, by where they are printed."""
    found = {f"README.md #{n}": s for n, s in enumerate(readme_snippets()) if "recv(" in s}
    assert len(found) == 1, "README.md should have one sans-IO socket snippet"
    return {**found, "docs/index.rst": index_snippet()}


def test_every_readme_snippet_is_run_here() -> None:
    snippets = readme_snippets()
    assert len(snippets) == 2, "a new README snippet needs a test in this file"
    assert sum("recv(" in s for s in snippets) == 1
    assert sum("wsmachine.adapters.asyncio" in s for s in snippets) == 1


@contextmanager
def _run(snippet: str, tmp_path: Path) -> Iterator[str]:
    """Run the snippet on port 0; yield its ws:// URL; stop it."""
    assert snippet.count(PORT) == 1, f"the snippet should name port {PORT} once"
    script = tmp_path / "snippet.py"
    script.write_text(snippet.replace(PORT, "0"), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8"}
    process = subprocess.Popen(
        [sys.executable, "-u", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    try:
        lines: queue.Queue[str] = queue.Queue()
        stdout = process.stdout
        assert stdout is not None
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=TIMEOUT)
        except queue.Empty:
            pytest.fail(f"the snippet did not print its address within {TIMEOUT} s")
        if not line.startswith("listening on ws://127.0.0.1:"):
            process.kill()
            _, err = process.communicate(timeout=TIMEOUT)
            pytest.fail(f"the snippet did not start: {line!r}\n{err}")
        yield line.split()[-1]
        assert process.poll() is None, "the snippet exited while serving"
    finally:
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@pytest.fixture(params=sorted(blocking_snippets()))
def sansio_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with _run(blocking_snippets()[request.param], tmp_path) as url:
        yield url


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def _receive(sock: socket.socket, conn: ClientConnection) -> list[Event]:
    data = sock.recv(65536)
    return conn.receive_data(data) if data else conn.receive_eof()


def test_snippet_echoes_and_closes_cleanly(sansio_url: str) -> None:
    with ws_connect(sansio_url, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        ws.send("héllo")
        assert ws.recv(TIMEOUT) == "héllo"
        ws.send(b"\x00\xff" * 40_000)
        assert ws.recv(TIMEOUT) == b"\x00\xff" * 40_000
        ws.ping(b"ping").wait(TIMEOUT)
    assert ws.close_code == 1000


def test_snippet_answers_plain_http(sansio_url: str) -> None:
    # A browser or curl visiting the port gets an answer and the end of the stream.
    with socket.create_connection(_address(sansio_url), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 426 "), response
    assert response.endswith(b"This is a WebSocket echo server.\n")


def test_snippet_handles_a_frame_sent_with_the_handshake(sansio_url: str) -> None:
    # The frame arrives in the same read as the request: accept() returns its event.
    conn = ClientConnection(urlsplit(sansio_url).netloc, "/")
    with socket.create_connection(_address(sansio_url), timeout=TIMEOUT) as sock:
        sock.sendall(conn.data_to_send() + FrameBuilder(client=True).text("early bird"))
        events: list[Event] = []
        while not any(isinstance(e, Text) for e in events):
            events += _receive(sock, conn)
    assert isinstance(events[0], Accepted)
    assert Text(data="early bird") in events


def test_snippet_answers_a_too_big_message_with_1009(sansio_url: str) -> None:
    conn = ClientConnection(urlsplit(sansio_url).netloc, "/")
    with socket.socket() as sock:
        # A small send buffer keeps most of the 2 MiB out of the kernel when the server
        # fails on the frame header: without the snippet's linger, the reset loses the 1009.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        sock.settimeout(TIMEOUT)
        sock.connect(_address(sansio_url))
        sock.sendall(conn.data_to_send())
        events: list[Event] = []
        while not any(isinstance(e, Accepted) for e in events):
            events += _receive(sock, conn)
        conn.send_binary(b"x" * (2 << 20))
        sock.sendall(conn.data_to_send())
        events = []
        while not any(isinstance(e, Close) for e in events):
            events += _receive(sock, conn)
    closes = [e for e in events if isinstance(e, Close)]
    assert closes[0].code == 1009, closes


def test_readme_asyncio_snippet_echoes(tmp_path: Path) -> None:
    (snippet,) = (s for s in readme_snippets() if "wsmachine.adapters.asyncio" in s)
    with _run(snippet, tmp_path) as url:
        with ws_connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
            ws.send("over asyncio")
            assert ws.recv(TIMEOUT) == "over asyncio"
        assert ws.close_code == 1000
