"""The documentation: every program in docs/examples/ runs, and the Sphinx build is clean.

The servers among the examples are started on 127.0.0.1 port 0, talked to by real clients over
TCP (the client example, a client written here on ClientConnection, and a raw HTTP request),
then stopped. The build runs with warnings as errors, like CI.
"""

from __future__ import annotations

import ast
import os
import queue
import re
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from wsmachine import (
    Accepted,
    Binary,
    ClientConnection,
    Close,
    CloseInfo,
    Event,
    Pong,
    State,
    Text,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
TIMEOUT = 60.0  # seconds for any one example process or network wait

#: Examples that serve until stopped; each prints "listening on ws://HOST:PORT/" first.
SERVERS = ("echo_server.py", "asyncio_server.py")
#: Examples that need a server; they are run against each of SERVERS.
CLIENTS = ("echo_client.py",)
#: Every other example runs on its own and must exit with status 0.
STANDALONE = sorted(
    path.name for path in EXAMPLES.glob("*.py") if path.name not in SERVERS + CLIENTS
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT,
        env=_env(),
        cwd=ROOT,
        check=False,
    )


# --------------------------------------------------------------------------------------------
# Examples that run on their own
# --------------------------------------------------------------------------------------------


def test_every_example_is_covered() -> None:
    names = {path.name for path in EXAMPLES.glob("*.py")}
    assert set(SERVERS + CLIENTS) <= names
    assert STANDALONE, "expected standalone examples such as sansio_pair.py"
    assert "sansio_pair.py" in STANDALONE


@pytest.mark.parametrize("name", STANDALONE)
def test_standalone_example_runs(name: str) -> None:
    result = run_example(name)
    assert result.returncode == 0, f"{name} failed:\n{result.stderr}"
    assert result.stdout.strip(), f"{name} printed nothing"


def test_sansio_pair_closes_tcp_from_the_server() -> None:
    lines = run_example("sansio_pair.py").stdout.splitlines()
    assert "client got Text: 'HELLO, SERVER'" in lines
    assert "server should_close: True" in lines
    assert lines[-1] == "client should_close: True"


# --------------------------------------------------------------------------------------------
# Server examples on real sockets
# --------------------------------------------------------------------------------------------


@pytest.fixture(params=SERVERS)
def server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Start a server example on 127.0.0.1 port 0; yield its ws:// URL; stop it."""
    process = subprocess.Popen(
        [sys.executable, "-u", str(EXAMPLES / request.param), "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=_env(),
        cwd=ROOT,
    )
    try:
        lines: queue.Queue[str] = queue.Queue()
        stdout = process.stdout
        assert stdout is not None
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=TIMEOUT)
        except queue.Empty:
            pytest.fail(f"{request.param} did not report its address within {TIMEOUT} s")
        if not line.startswith("listening on ws://127.0.0.1:"):
            process.kill()
            _, err = process.communicate(timeout=TIMEOUT)
            pytest.fail(f"{request.param} did not start: {line!r}\n{err}")
        yield line.split()[-1]
        assert process.poll() is None, f"{request.param} exited while serving"
    finally:
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def test_client_example_talks_to_server(server_url: str) -> None:
    result = run_example("echo_client.py", server_url, "Hello", "ünïcode ✓", "")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n") == ["Hello", "ünïcode ✓", "", ""]


def _receive(sock: socket.socket, conn: ClientConnection) -> list[Event]:
    data = sock.recv(65536)
    return conn.receive_data(data) if data else conn.receive_eof()


def test_server_example_speaks_websocket(server_url: str) -> None:
    conn = ClientConnection(urlsplit(server_url).netloc, "/")
    with socket.create_connection(_address(server_url), timeout=TIMEOUT) as sock:
        sock.sendall(conn.data_to_send())
        events: list[Event] = []
        while not any(isinstance(e, Accepted) for e in events):
            events += _receive(sock, conn)

        conn.send_text("hello")
        conn.send_binary(b"\x00\xff" * 40_000)
        conn.send_text("frag", final=False)
        conn.send_text("mented")
        conn.ping(b"are you there")
        sock.sendall(conn.data_to_send())
        expected = [
            Text(data="hello"),
            Binary(data=b"\x00\xff" * 40_000),
            Text(data="fragmented"),
            Pong(payload=b"are you there"),
        ]
        events = []
        while len(events) < len(expected):
            events += _receive(sock, conn)
        assert sorted(map(repr, events)) == sorted(map(repr, expected))  # Pong may come first

        conn.close(1000, "bye")
        sock.sendall(conn.data_to_send())
        events = []
        while not events:
            events += _receive(sock, conn)
        assert events == [Close(code=1000)]
        assert conn.state is State.CLOSED
        assert not conn.should_close(), "a client waits for the server to close TCP"
        # RFC 6455 §7.1.1: the server closes TCP first; the client sees the end of the stream.
        assert sock.recv(1) == b""
        assert conn.receive_eof() == []
        assert conn.should_close()


def test_server_example_replies_to_a_message_sent_with_the_close(server_url: str) -> None:
    # The Text and the Close are written together, so they usually arrive in one read: the
    # server is then REMOTE_CLOSING while it handles the Text, may still reply (can_send),
    # and its reply precedes the echo of the Close, as if they had come in two reads.
    conn = ClientConnection(urlsplit(server_url).netloc, "/")
    with socket.create_connection(_address(server_url), timeout=TIMEOUT) as sock:
        sock.sendall(conn.data_to_send())
        events: list[Event] = []
        while not any(isinstance(e, Accepted) for e in events):
            events += _receive(sock, conn)
        conn.send_text("last words")
        conn.close(1000, "bye")
        sock.sendall(conn.data_to_send())
        events = []
        while not any(isinstance(e, Close) for e in events):
            events += _receive(sock, conn)
        assert events == [Text(data="last words"), Close(code=1000)]
        assert conn.close_received == CloseInfo(1000, "")
        assert sock.recv(1) == b""  # then the server closes TCP


def test_server_example_answers_a_too_big_message_with_1009(server_url: str) -> None:
    # The server fails on the frame header while most of the 2 MiB are still on their way.
    # It must linger (end its stream, drain ours): closing with unread bytes resets the
    # connection, the sendall below fails and the 1009 is lost (a browser reports 1006).
    conn = ClientConnection(urlsplit(server_url).netloc, "/")
    with socket.socket() as sock:
        # A small send buffer keeps most of the message out of the kernel when the server
        # fails, as on a real network.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        sock.settimeout(TIMEOUT)
        sock.connect(_address(server_url))
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
        assert sock.recv(1) == b""  # then the server ends its stream


def test_server_example_answers_plain_http(server_url: str) -> None:
    with socket.create_connection(_address(server_url), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    status = response.split(b"\r\n", 1)[0]
    assert status in (b"HTTP/1.1 200 OK", b"HTTP/1.1 426 Upgrade Required"), response


def test_server_example_with_an_independent_client(server_url: str) -> None:
    sync_client = pytest.importorskip("websockets.sync.client")
    with sync_client.connect(server_url, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        ws.send("from websockets")
        assert ws.recv(timeout=TIMEOUT) == "from websockets"
        ws.send(b"\x01\x02")
        assert ws.recv(timeout=TIMEOUT) == b"\x01\x02"


# --------------------------------------------------------------------------------------------
# Snippets in the pages
# --------------------------------------------------------------------------------------------

#: Pages whose Python blocks are whole programs: each block imports or defines every name it
#: uses, and its imports work (a renamed or removed name, like the old ``same_origin``, fails).
SELF_CONTAINED = ("howto/adapters.rst", "tutorial-browser.rst", "index.rst")


#: Undefined names only, whatever the project's ruff settings.
RUFF_F821 = (sys.executable, "-m", "ruff", "check", "--isolated", "--select", "F821")


def python_blocks(page: str) -> list[str]:
    """The ``code-block:: python`` blocks of a page, dedented."""
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = re.findall(
        r"^\.\. code-block:: python\n\n((?:(?:[ ]+.*)?\n)+)", text, flags=re.MULTILINE
    )
    return [textwrap.dedent(block).strip("\n") + "\n" for block in blocks]


@pytest.mark.parametrize("page", SELF_CONTAINED)
def test_page_snippets_import_what_they_use(page: str) -> None:
    pytest.importorskip("ruff", reason="ruff is not installed (pip install wsmachine[test])")
    blocks = python_blocks(page)
    assert blocks, f"no Python blocks in {page}"
    for block in blocks:
        undefined = subprocess.run(
            [*RUFF_F821, "--output-format", "concise", "--stdin-filename", "snippet.py", "-"],
            input=block,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert undefined.returncode == 0, f"{page}:\n{undefined.stdout}\n{block}"
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.Import | ast.ImportFrom):
                statement = ast.unparse(node)
                try:
                    exec(statement, {})  # the page's own import line, alone
                except ImportError as exc:
                    pytest.fail(f"{page}: {statement!r} fails: {exc}")


# --------------------------------------------------------------------------------------------
# The Sphinx build
# --------------------------------------------------------------------------------------------


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    pytest.importorskip(
        "sphinx.cmd.build", reason="sphinx is not installed (pip install wsmachine[docs])"
    )
    # In a child process: autodoc (autodoc_preserve_defaults) rewrites the __defaults__ of
    # the functions it documents, which would change wsmachine for the tests that follow.
    args = ["-W", "--keep-going", "-b", "html", "-q", str(DOCS), str(tmp_path / "html")]
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "html" / "explanation" / "state-machine.html").is_file()
