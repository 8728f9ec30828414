"""The command line: ``python -m wsmachine demo | serve | client``, run as a user would."""

from __future__ import annotations

import ast
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


def run_cli(
    *args: str, stdin: bytes = b"", timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m wsmachine ARGS`` to its end, with a bound on the time."""
    return subprocess.run(
        [sys.executable, "-m", "wsmachine", *args],
        cwd=ROOT,
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The error on stderr, checked to be one line and no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines


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
        result = run_cli("serve", "--port", str(port))
    assert result.returncode == 1
    (line,) = one_line_error(result)
    assert line.startswith(f"cannot listen on 127.0.0.1:{port}: ")
    assert line.count(str(port)) == 1, "the address once"
    assert "try --port 0" in line


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
        last = err.decode().splitlines()[-1]
        assert last.startswith("the server closed the connection: 1001 (going away)"), err
        assert client.returncode == 1  # only 1000 is a normal end
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(5)
        stop(process)


# --------------------------------------------------------------------------------------------
# The first ten minutes: help, usage errors, messages, exit status (issue 12)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [(), ("serve",), ("client",), ("demo",)])
def test_help_is_plain_text(command: tuple[str, ...]) -> None:
    result = run_cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: python -m wsmachine" in result.stdout
    for markup in ("``", ":class:", ":mod:", ":meth:", ":data:", ":rfc:", "~wsmachine"):
        assert markup not in result.stdout, markup


def test_serve_help_shows_the_defaults() -> None:
    out = run_cli("serve", "--help").stdout
    assert "(default: 127.0.0.1)" in out
    assert "(default: 12345; 0: any free port)" in out


def test_client_help_documents_marks_and_exit_status() -> None:
    out = " ".join(run_cli("client", "--help").stdout.split())
    assert 'received lines start with "< "' in out
    assert "Exit status: 0 when the connection ends with 1000" in out
    assert "(default: 10.0)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("serve", "--port", "-1"), "port -1 is not in 0-65535"),
        (("serve", "--port", "70000"), "port 70000 is not in 0-65535"),
        (("serve", "--port", "http"), "not a port number: 'http'"),
        (("serve", "--colour"), "unrecognized arguments: --colour"),
        ((), "required: COMMAND"),
        (("client",), "required: url"),
        (("client", "http://127.0.0.1/"), "not a ws:// or wss:// URL"),
        (("client", "ws://127.0.0.1:99999/"), "bad port"),
        (("client", "ws://127.0.0.1/", "--timeout", "-3"), "not a duration"),
    ],
)
def test_usage_errors_are_one_line_and_status_2(args: tuple[str, ...], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    (line,) = one_line_error(result)
    assert line.startswith("python -m wsmachine")
    assert message in line


def test_serve_reports_a_bad_host_in_one_line() -> None:
    result = run_cli("serve", "--host", "no-such-host.invalid", "--port", "0")
    assert result.returncode == 1
    (line,) = one_line_error(result)
    assert line.startswith("cannot listen on no-such-host.invalid:0: ")
    assert line.endswith("; check --host")


def test_client_hints_at_ws_when_the_server_does_not_speak_tls() -> None:
    server = Server(Echo())
    server.start()
    try:
        result = run_cli("client", f"wss://127.0.0.1:{server.port}/ws")
    finally:
        server.stop()
    assert result.returncode == 1
    (line,) = one_line_error(result)
    assert "WRONG_VERSION_NUMBER" not in line
    assert "the server does not speak TLS" in line
    assert line.endswith(f"try ws://127.0.0.1:{server.port}/ws")


def test_client_refused_is_one_line() -> None:
    result = run_cli("client", f"ws://127.0.0.1:{free_port()}/")
    assert result.returncode == 1
    (line,) = one_line_error(result)
    assert line.startswith("cannot connect to ")
    assert "[Errno" not in line


class Closer(Handler):
    """Echoes, and closes with the code a message names: ``close 1009``."""

    def on_message(self, peer: Peer, message: str | bytes) -> None:
        if isinstance(message, str) and message.startswith("close "):
            peer.close(int(message.split()[1]), "as asked")
        else:
            peer.send(message)


@pytest.mark.parametrize(("code", "status"), [(1000, 0), (1001, 1), (1009, 1), (4000, 1)])
def test_client_exit_status_follows_the_close_code(code: int, status: int) -> None:
    server = Server(Closer())
    server.start()
    try:
        result = run_cli(
            "client", f"ws://127.0.0.1:{server.port}/", stdin=f"hi\nclose {code}\n".encode()
        )
    finally:
        server.stop()
    assert result.returncode == status, result.stderr
    assert result.stdout == "hi\n"
    last = result.stderr.splitlines()[-1]
    assert last.startswith(f"the server closed the connection: {code}")
    assert last.endswith("'as asked'")
    if code == 1009:
        assert "1009 (message too big)" in last


def test_client_closing_at_the_end_of_input_is_status_0() -> None:
    server = Server(Echo())
    server.start()
    try:
        result = run_cli("client", f"ws://127.0.0.1:{server.port}/", stdin=b"hi\n")
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "closed: 1000 (normal closure)"


def test_client_warns_when_no_subprotocol_was_chosen() -> None:
    server = Server(Echo())  # offers no subprotocol
    server.start()
    try:
        result = run_cli(
            "client", f"ws://127.0.0.1:{server.port}/", "--subprotocol", "chat", stdin=b"hi\n"
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    warning = "warning: the server chose none of the subprotocols offered (chat)"
    assert warning in result.stderr.splitlines()


def test_client_marks_received_lines_on_a_terminal() -> None:
    server = Server(Echo())
    server.start()
    controller, terminal = os.openpty()
    try:
        client = subprocess.Popen(
            [sys.executable, "-m", "wsmachine", "client", f"ws://127.0.0.1:{server.port}/"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=terminal,
            stderr=subprocess.PIPE,
            env=ENV,
        )
        os.close(terminal)
        try:
            _, err = client.communicate(b"typed\nbinary please\n", timeout=30)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait(5)
        shown = b""
        while True:  # the terminal's output, up to the client's exit (EIO: no writer left)
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)
        server.stop()
    assert client.returncode == 0, err
    assert shown.decode().splitlines() == ["< typed", "< binary please", "< [binary, 2 bytes] 0102"]


def test_demo_cuts_long_lines_cleanly() -> None:
    result = run_cli("demo")
    assert result.returncode == 0, result.stderr
    cut = 0
    for line in result.stdout.splitlines():
        shown = re.sub(r"^  (?:-> |<- ) *\d+ bytes  |^  (?:server|client) sees ", "", line)
        if shown == line:
            continue  # a heading or a summary line
        if "..." in shown:
            cut += 1
            # With the ellipses out, what is left is a whole expression: no half a string,
            # no unclosed bracket.
            ast.parse(shown.replace("...", ""), mode="eval")
            if len(line) > 100:  # over the width only when the short fields alone are
                assert "=(...)" in shown, line
        else:
            ast.parse(shown, mode="eval")
            assert len(line) <= 100, line
    assert cut >= 3, result.stdout


def test_tutorial_shows_the_real_output(tmp_path: Path) -> None:
    # The tutorial's console blocks, with the time and the port made general, match what
    # ``serve`` and ``client`` really print.
    tutorial = (ROOT / "docs" / "tutorial-browser.rst").read_text(encoding="utf-8")

    def pattern(line: str) -> str:
        text = re.escape(line.strip())
        return text.replace("12:00:00", r"\d\d:\d\d:\d\d").replace("12345", r"\d+")

    serving = [line for line in tutorial.splitlines() if line.startswith("    12:00:00 ")]
    assert len(serving) == 2, serving
    process, log, port = start_server(tmp_path)
    try:
        for line in serving:
            wait_for(log, pattern(line))
        connected = next(line for line in tutorial.splitlines() if "connected to ws://" in line)
        result = run_cli("client", f"ws://127.0.0.1:{port}/ws")
        assert re.fullmatch(pattern(connected), result.stderr.splitlines()[0]), result.stderr
    finally:
        stop(process)
