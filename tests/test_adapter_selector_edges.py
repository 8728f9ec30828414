"""The selector adapter's edges branch coverage found unreached (issue 14): connections that
fail at once or are aborted, an address list tried in turn, the default error report, calls
on a WebSocket that is not open, many cancelled timers, and the loop's lifecycle calls made
twice or out of order. Real loopback sockets, every wait bounded."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from wsmachine.adapters import ConnectionClosed, HTTPResponse
from wsmachine.adapters.blocking import WebSocket
from wsmachine.adapters.blocking import serve as blocking_serve
from wsmachine.adapters.selector import Handler, Loop, Peer, Server, Timer
from wsmachine.events import HTTPRequest

TIMEOUT = 5.0


class Recorder(Handler):
    """Records what happened, for the test thread to check."""

    def __init__(self) -> None:
        self.opened: list[Peer] = []
        self.messages: list[str | bytes] = []
        self.closed: list[ConnectionClosed] = []
        self.errors: list[BaseException] = []
        self.done = threading.Event()

    def on_open(self, peer: Peer) -> None:
        self.opened.append(peer)

    def on_message(self, peer: Peer, message: str | bytes) -> None:
        self.messages.append(message)

    def on_close(self, peer: Peer, closed: ConnectionClosed) -> None:
        self.closed.append(closed)
        self.done.set()

    def on_error(self, peer: Peer, error: BaseException) -> None:
        self.errors.append(error)
        self.done.set()


def wait_until(predicate: Any, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


@contextlib.contextmanager
def started(loop: Loop) -> Iterator[Loop]:
    thread = loop.start()
    try:
        yield loop
    finally:
        loop.stop(timeout=15)
        assert not thread.is_alive()


def echo(ws: WebSocket) -> None:
    for message in ws:
        ws.send(message)


@contextlib.contextmanager
def echo_server(**options: Any) -> Iterator[int]:
    server = blocking_serve(echo, "127.0.0.1", 0, **options)
    thread = server.start()
    try:
        yield server.port
    finally:
        server.stop(timeout=15)
        thread.join(15)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def in_loop(loop: Loop, call: Any) -> Any:
    """Run ``call`` in the loop's thread; return its result."""
    done = threading.Event()
    result: list[Any] = []

    def run() -> None:
        result.append(call())
        done.set()

    loop.call_soon_threadsafe(run)
    assert done.wait(TIMEOUT)
    return result[0]


def test_a_refused_connection_is_reported_once_to_on_error() -> None:
    recorder = Recorder()
    with started(Loop()) as loop:
        peer = in_loop(loop, lambda: loop.connect(f"ws://127.0.0.1:{closed_port()}/", recorder))
        assert recorder.done.wait(TIMEOUT)
        (error,) = recorder.errors
        assert isinstance(error, ConnectionRefusedError)
        assert recorder.opened == [] and recorder.closed == []  # on_error only
        wait_until(lambda: not loop.peers)
        assert peer.done


def test_the_default_on_error_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="wsmachine.adapters.selector")
    with started(Loop()) as loop:
        in_loop(loop, lambda: loop.connect(f"ws://127.0.0.1:{closed_port()}/", Handler()))
        wait_until(lambda: any("Connection refused" in r.getMessage() for r in caplog.records))
    (record,) = caplog.records
    assert record.levelno == logging.WARNING


def test_every_address_of_a_name_is_tried_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    with echo_server() as port, started(Loop()) as loop:
        refused = ("127.0.0.1", closed_port())  # refused once the connection is under way
        unreachable = ("255.255.255.255", port)  # no TCP to a broadcast address: fails at once
        found = [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", address)
            for address in (unreachable, refused, unreachable, ("127.0.0.1", port))
        ]

        def resolve(*args: Any, **kwargs: Any) -> list[Any]:
            return found

        # The name resolves to four addresses: only the last one is the server.
        monkeypatch.setattr(socket, "getaddrinfo", resolve)
        in_loop(loop, lambda: loop.connect(f"ws://server.test:{port}/", recorder))
        monkeypatch.undo()
        wait_until(lambda: recorder.opened or recorder.errors)
        assert recorder.errors == []
        (peer,) = recorder.opened
        assert peer.address == ("127.0.0.1", port)


def test_a_given_socket_that_is_not_connected_fails_on_error() -> None:
    recorder = Recorder()
    with started(Loop()) as loop:
        peer = in_loop(loop, lambda: loop.connect("ws://[::1]:9/", recorder, sock=socket.socket()))
        assert recorder.done.wait(TIMEOUT)
        assert len(recorder.errors) == 1 and isinstance(recorder.errors[0], OSError)
        assert peer.done


def test_abort_while_connecting_and_calls_on_a_websocket_not_open() -> None:
    recorder = Recorder()
    with echo_server() as port, started(Loop()) as loop:

        def connect_then_abort() -> tuple[Peer, bool, str]:
            peer = loop.connect(f"ws://127.0.0.1:{port}/", recorder)
            pinged = peer.ping()  # not open yet
            peer.close()  # no effect before it is open
            shown = repr(peer)
            peer.abort()
            return peer, pinged, shown

        peer, pinged, shown = in_loop(loop, connect_then_abort)
        assert pinged is False
        assert shown.startswith("<Peer client ") and "CONNECTING" in shown
        assert recorder.done.wait(TIMEOUT)
        (error,) = recorder.errors
        assert isinstance(error, ConnectionAbortedError)
        assert recorder.opened == []
        assert peer.closed.code == 1006


def test_abort_of_an_open_websocket_reports_on_close() -> None:
    recorder = Recorder()
    with echo_server() as port, started(Loop()) as loop:
        peer = in_loop(loop, lambda: loop.connect(f"ws://127.0.0.1:{port}/", recorder))
        wait_until(lambda: recorder.opened)
        assert "OPEN" in repr(peer)
        in_loop(loop, lambda: peer.send("ping me back"))
        wait_until(lambda: recorder.messages)
        in_loop(loop, peer.abort)
        assert recorder.done.wait(TIMEOUT)
        (closed,) = recorder.closed
        assert closed.code == 1006
        assert isinstance(closed.error, ConnectionAbortedError)
        assert peer.closed.code == 1006
        assert in_loop(loop, peer.ping) is False


def test_cancelled_timers_never_run_and_the_live_ones_do() -> None:
    loop = Loop()
    ran: list[str] = []
    try:
        timers: list[Timer] = []

        def first() -> None:
            ran.append("first")
            timers[0].cancel()  # due in the same turn, cancelled before its turn

        loop.call_later(0.0, first)
        timers.append(loop.call_later(0.0, lambda: ran.append("second")))
        loop.call_later(0.2, lambda: ran.append("later"))
        # Many cancelled timers behind the live one: the loop drops them from its heap.
        for _ in range(300):
            loop.call_later(60.0, lambda: ran.append("cancelled")).cancel()
        loop.run_once(max_wait=0.0)
        assert ran == ["first"]
        deadline = time.monotonic() + TIMEOUT
        while len(ran) < 2 and time.monotonic() < deadline:
            loop.run_once(max_wait=1.0)
        assert ran == ["first", "later"]
    finally:
        loop.close()
        loop.close()  # twice: no effect
    with pytest.raises(RuntimeError, match="closed"):
        loop.run_once(max_wait=0.0)


def test_shutdown_aborts_a_client_still_connecting_and_a_second_call_does_nothing() -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=1)  # accepts, never answers
    recorder = Recorder()
    try:
        loop = Loop()
        peer = loop.connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/", recorder)
        loop.shutdown()
        loop.shutdown(4000, "ignored")
        with started(loop):
            assert recorder.done.wait(TIMEOUT)
        (error,) = recorder.errors
        assert isinstance(error, ConnectionAbortedError)
        assert "shutting down" in str(error)
        assert peer.done
    finally:
        listener.close()


def test_shutdown_drops_a_peer_that_never_answers_the_close() -> None:
    recorder = Recorder()
    with Server(recorder, "127.0.0.1", 0, close_timeout=0.2, linger_timeout=0.1) as server:
        thread = server.start()
        # A raw client: it opens, then never reads or answers the Close.
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 101 ")
        wait_until(lambda: recorder.opened)
        with pytest.raises(RuntimeError, match="already started"):
            server.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    (closed,) = recorder.closed
    assert closed.remote is None  # the client's Close never came
    sock.close()


def test_stop_without_start_closes_the_loop() -> None:
    loop = Loop()
    loop.stop()
    with pytest.raises(RuntimeError, match="closed"):
        loop.connect("ws://127.0.0.1:9/", Handler())


class BrokenPages(Recorder):
    def on_http(self, request: HTTPRequest) -> HTTPResponse | None:
        raise RuntimeError("page broke")


def test_an_on_http_that_raises_is_answered_500_and_reported_to_on_error() -> None:
    handler = BrokenPages()
    server = Server(handler, "127.0.0.1", 0)
    with started(server):
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        wait_until(lambda: handler.errors)
    assert answer.startswith(b"HTTP/1.1 500 ")
    (error,) = handler.errors
    assert isinstance(error, RuntimeError) and str(error) == "page broke"


def test_a_failing_loop_callback_is_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("callback broke")

    with started(Loop()) as loop:
        loop.call_soon_threadsafe(broken)
        loop.call_soon_threadsafe(lambda: ran.append("next"))
        wait_until(lambda: ran)
    (record,) = [r for r in caplog.records if "failed" in r.getMessage()]
    assert record.exc_info is not None and str(record.exc_info[1]) == "callback broke"


def test_closing_a_server_never_run_closes_its_listener() -> None:
    server = Server(Recorder(), "127.0.0.1", 0)
    port = server.port
    server.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
