"""The demo chat server (:mod:`wsmachine.demo`) over real sockets on 127.0.0.1: its HTTP
answers (the page, the icon, 400 / 404 / 426 for what is no valid upgrade at ``/ws``), the
room's JSON and plain-text protocols, and its log lines."""

from __future__ import annotations

import io
import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from wsmachine.adapters import ConnectionClosed
from wsmachine.adapters.blocking import WebSocket, connect
from wsmachine.adapters.selector import Server
from wsmachine.demo import ChatHandler, chat_server

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
#: Every wait in these tests ends within this many seconds.
TIMEOUT = 5.0


class Demo:
    """A running demo server, its handler and its log."""

    def __init__(self, server: Server, handler: ChatHandler, out: io.StringIO) -> None:
        self.server = server
        self.handler = handler
        self.out = out
        self.port = server.port

    def url(self, path: str = "/ws?format=json") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def wait_log(self, pattern: str) -> re.Match[str]:
        """Wait until a log line matches ``pattern``."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            match = re.search(pattern, self.out.getvalue())
            if match:
                return match
            time.sleep(0.01)
        raise AssertionError(f"{pattern!r} not in the log:\n{self.out.getvalue()}")


def start(**settings: Any) -> Demo:
    out = io.StringIO()
    server, handler = chat_server("127.0.0.1", 0, out=out, **settings)
    server.start()
    return Demo(server, handler, out)


@pytest.fixture
def demo() -> Iterator[Demo]:
    running = start()
    try:
        yield running
    finally:
        running.server.stop(TIMEOUT)


def http(port: int, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one request; return the status, headers (lower-case names) and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(head)
        data = b""
        for _ in range(1000):  # until the server closes the connection
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head_part, _, body = data.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def get(port: int, path: str, *extra: str) -> tuple[int, dict[str, str], bytes]:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *extra, "", ""]
    return http(port, "\r\n".join(lines).encode())


def upgrade(port: int, path: str, *extra: str) -> tuple[int, dict[str, str], bytes]:
    """A complete upgrade request (and the answer's head; a 101 has no end, so read little)."""
    head = [
        f"GET {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY.decode()}",
        "Sec-WebSocket-Version: 13",
        *extra,
        "",
        "",
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall("\r\n".join(head).encode())
        data = sock.recv(65536)
    status = int(data.split(b" ", 2)[1])
    return status, {}, data


def recv_json(ws: WebSocket) -> dict[str, Any]:
    message = ws.recv(timeout=TIMEOUT)
    assert isinstance(message, str)
    parsed: dict[str, Any] = json.loads(message)
    return parsed


# -- HTTP answers -------------------------------------------------------------------------


def test_plain_get_of_the_endpoint_is_426_with_a_hint(demo: Demo) -> None:
    status, headers, body = get(demo.port, "/ws")
    assert status == 426
    assert headers["upgrade"] == "websocket"
    assert "upgrade" in headers["connection"].lower()
    assert headers["content-type"].startswith("text/plain")
    assert b"WebSocket client" in body


@pytest.mark.parametrize("path", ["/", "/ws", "/elsewhere"])
def test_handshake_without_upgrade_websocket_is_400_not_a_page(demo: Demo, path: str) -> None:
    # Not served as a plain request: the machine fails the handshake (RFC 6455 §4.2.1).
    status, _, body = get(
        demo.port,
        path,
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY.decode()}",
        "Sec-WebSocket-Version: 13",
    )
    assert status == 400
    assert b"Upgrade: websocket" in body
    demo.wait_log(r"refused    127\.0\.0\.1:\d+ 400: request carries Sec-WebSocket-Key")


def test_upgrades_only_at_the_endpoint(demo: Demo) -> None:
    status, _, answer = upgrade(demo.port, "/elsewhere")
    assert status == 404
    assert b"/ws" in answer
    demo.wait_log(r"refused    127\.0\.0\.1:\d+ path=/elsewhere: 404")
    assert upgrade(demo.port, "/ws")[0] == 101
    assert upgrade(demo.port, "/ws?format=json")[0] == 101


def test_the_page_its_icon_and_404(demo: Demo) -> None:
    status, headers, body = get(demo.port, "/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert b"new WebSocket(" in body
    assert b'rel="icon" href="data:image/svg+xml,' in body  # no request for it at all
    status, headers, body = get(demo.port, "/favicon.ico")
    assert status == 200
    assert headers["content-type"] == "image/svg+xml"
    assert body.startswith(b"<svg ")
    assert get(demo.port, "/missing")[0] == 404


# -- the log --------------------------------------------------------------------------------


def test_the_count_is_of_websocket_connections_only(demo: Demo) -> None:
    idle = socket.create_connection(("127.0.0.1", demo.port), timeout=TIMEOUT)  # never upgrades
    try:
        assert get(demo.port, "/")[0] == 200
        with connect(demo.url("/ws")) as first:
            demo.wait_log(r"connect    127\.0\.0\.1:\d+ path=/ws name=guest-1 \(1 connected\)")
            with connect(demo.url("/ws")):
                demo.wait_log(r"name=guest-2 \(2 connected\)")
            demo.wait_log(r"disconnect 127\.0\.0\.1:\d+ code=1000 by=client \(1 connected\)")
            first.close(1000)
        demo.wait_log(r"disconnect .*\(0 connected\)")
    finally:
        idle.close()


def test_disconnect_logs_the_code_sent() -> None:
    small = start(max_message_size=100)
    try:
        ws = connect(small.url("/ws"))
        ws.send("x" * 1000)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
        assert closed.value.code == 1009
        line = small.wait_log(r"disconnect 127\.0\.0\.1:\d+ .*").group(0)
        assert "code=1009" in line
        assert "by=server" in line
        assert "1006" not in line
    finally:
        small.server.stop(TIMEOUT)


def test_disconnect_logs_the_peers_code_and_reason(demo: Demo) -> None:
    with connect(demo.url("/ws")) as ws:
        ws.close(4000, "leaving")
    demo.wait_log(r"disconnect 127\.0\.0\.1:\d+ code=4000 reason='leaving' by=client ")


def test_refused_cross_origin_upgrade_is_logged(demo: Demo) -> None:
    status, _, _ = upgrade(demo.port, "/ws", "Origin: http://evil.example")
    assert status == 403
    line = demo.wait_log(r"refused    127\.0\.0\.1:\d+ 403: .*").group(0)
    assert "evil.example" in line
    assert "connect  " not in demo.out.getvalue()


def test_server_shutdown_is_logged_as_1001_by_the_server(demo: Demo) -> None:
    ws = connect(demo.url("/ws"))
    demo.wait_log(r"\(1 connected\)")
    demo.server.shutdown()
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=TIMEOUT)
    assert closed.value.code == 1001
    demo.wait_log(r"disconnect 127\.0\.0\.1:\d+ code=1001 reason='server shutting down' by=server")


# -- the room ---------------------------------------------------------------------------------


def test_a_new_tab_is_greeted_alone(demo: Demo) -> None:
    with connect(demo.url()) as first:
        welcome = recv_json(first)
        assert welcome == {"type": "welcome", "id": 1, "name": "guest-1", "online": 1}
        with connect(demo.url()) as second:
            assert recv_json(second)["online"] == 2
            with pytest.raises(TimeoutError):
                first.recv(timeout=0.3)  # nothing reached the first tab


def test_names_and_senders(demo: Demo) -> None:
    with connect(demo.url()) as page, connect(demo.url("/ws")) as terminal:
        me = recv_json(page)["id"]
        page.send(json.dumps({"type": "message", "name": " Ada\x07  Lovelace ", "text": "hi"}))
        assert recv_json(page) == {
            "type": "message",
            "id": me,
            "from": "Ada Lovelace",
            "text": "hi",
        }
        assert terminal.recv(timeout=TIMEOUT) == "hi"  # plain text for plain clients
        terminal.send("hello from the terminal")
        got = recv_json(page)
        assert got["from"] == "guest-2"
        assert got["id"] != me
        assert got["text"] == "hello from the terminal"
        assert terminal.recv(timeout=TIMEOUT) == "hello from the terminal"
        # A name too long is cut; none keeps the last one; a line that is no chat message
        # (typed in the console) is sent as text.
        page.send(json.dumps({"type": "message", "name": "n" * 100, "text": "long"}))
        assert recv_json(page)["from"] == "n" * 32
        page.send(json.dumps({"type": "message", "text": "same name"}))
        assert recv_json(page)["from"] == "n" * 32
        page.send("raw {text}")
        assert recv_json(page)["text"] == "raw {text}"
        page.send(b"\x00\x01")
        assert page.recv(timeout=TIMEOUT) == b"\x00\x01"
        assert terminal.recv(timeout=TIMEOUT) == "long"


def test_echo_mode_answers_the_sender_only() -> None:
    echo = start(echo=True)
    try:
        with connect(echo.url()) as page, connect(echo.url()) as other:
            recv_json(page)
            recv_json(other)
            page.send(json.dumps({"type": "message", "name": "me", "text": "just me"}))
            assert recv_json(page)["text"] == "just me"
            with pytest.raises(TimeoutError):
                other.recv(timeout=0.3)
    finally:
        echo.server.stop(TIMEOUT)
