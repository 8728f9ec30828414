"""The command line: ``python -m wsmachine demo | serve | client``, run as a user would."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect as ws_connect

from wsmachine.__main__ import main
from wsmachine.adapters.selector import Handler, Peer, Server

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(path: Path, pattern: str, timeout: float = 15) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, path.read_text(encoding="utf-8", errors="replace"))
        if match:
            return match
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not in:\n{path.read_text(errors='replace')}")


def start_server(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path, int]:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "wsmachine", "serve", "--port", str(port), *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=ENV,
        )
    wait_for(log, rf"serving http://127\.0\.0\.1:{port}/")
    return process, log, port


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> int:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    process, log, port = start_server(tmp_path)
    try:
        yield process, log, port
    finally:
        stop(process)


def http_get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_demo_runs_in_memory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    assert "closing handshake" in capsys.readouterr().out


def test_serve_serves_the_page_and_404(
    serve: tuple[subprocess.Popen[bytes], Path, int],
) -> None:
    _, _, port = serve
    page = http_get(port, "/")
    assert page.startswith(b"HTTP/1.1 200 ")
    assert b"text/html" in page
    assert b"new WebSocket(" in page
    assert http_get(port, "/missing").startswith(b"HTTP/1.1 404 ")


def test_serve_broadcasts_and_logs(serve: tuple[subprocess.Popen[bytes], Path, int]) -> None:
    process, log, port = serve
    url = f"ws://127.0.0.1:{port}/ws"
    with ws_connect(url) as first, ws_connect(url) as second:
        first.send("hello, everyone")
        assert first.recv(5) == "hello, everyone"
        assert second.recv(5) == "hello, everyone"
        first.close(4000, "leaving")
    wait_for(log, r"disconnect 127\.0\.0\.1:\d+ code=4000 reason='leaving'")
    assert len(re.findall(r"connect    127\.0\.0\.1:\d+ path=/ws", log.read_text())) == 2
    assert stop(process) == 0
    assert "stopped" in log.read_text()


def test_serve_refuses_foreign_origins(serve: tuple[subprocess.Popen[bytes], Path, int]) -> None:
    _, _, port = serve
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nOrigin: http://evil.example\r\n\r\n"
        )
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 403 ")
    assert b"evil.example" in answer


def test_serve_echo_mode(tmp_path: Path) -> None:
    process, _, port = start_server(tmp_path, "--echo")
    try:
        url = f"ws://127.0.0.1:{port}/ws"
        with ws_connect(url) as first, ws_connect(url) as second:
            first.send("just me")
            assert first.recv(5) == "just me"
            with pytest.raises(TimeoutError):
                second.recv(0.3)
    finally:
        assert stop(process, signal.SIGTERM) == 0


def test_serve_reports_a_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "wsmachine", "serve", "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            timeout=30,
            env=ENV,
            check=False,
        )
    assert result.returncode == 1
    assert b"cannot listen" in result.stderr


class Echo(Handler):
    def on_message(self, peer: Peer, message: str | bytes) -> None:
        peer.send(message)
        if message == "binary please":
            peer.send(b"\x01\x02")


def test_client_with_pipes() -> None:
    server = Server(Echo())
    server.start()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "wsmachine", "client", f"ws://127.0.0.1:{server.port}/"],
            cwd=ROOT,
            input="first line\nsecond ünïcode line\nbinary please\n".encode(),
            capture_output=True,
            timeout=30,
            env=ENV,
            check=False,
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines == [
        "first line",
        "second ünïcode line",
        "binary please",
        "[binary, 2 bytes] 0102",
    ]
    assert b"connected to" in result.stderr


def test_client_reports_a_refusal() -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "wsmachine", "client", f"ws://127.0.0.1:{port}/"],
        cwd=ROOT,
        input=b"",
        capture_output=True,
        timeout=30,
        env=ENV,
        check=False,
    )
    assert result.returncode == 1
    assert b"cannot connect" in result.stderr


def test_client_ends_when_the_server_leaves(tmp_path: Path) -> None:
    process, _, port = start_server(tmp_path)
    client = subprocess.Popen(
        [sys.executable, "-m", "wsmachine", "client", f"ws://127.0.0.1:{port}/ws"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        assert client.stdin is not None
        client.stdin.write(b"hi\n")
        client.stdin.flush()
        assert client.stdout is not None
        assert client.stdout.readline() == b"hi\n"
        assert stop(process) == 0  # the server closes with 1001; stdin stays open
        _, err = client.communicate(timeout=15)
        assert b"received 1001" in err
        assert client.returncode == 0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(5)
        stop(process)
