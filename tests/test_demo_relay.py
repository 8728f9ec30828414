"""The demo chat across processes through Redis pub/sub (``serve --redis``, ``--workers``).

Every test starts its own ``redis-server`` (Debian's ``redis-server`` package; ``.ci/run``
installs it) on a port the OS picked, bound to 127.0.0.1, without persistence, and stops it
by its PID. Without redis-server or redis-py the tests are skipped, except under ``CI``
where they must run.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wsmachine.adapters.blocking import WebSocket, connect
from wsmachine.demo.room import Member, Room, Said

ROOT = Path(__file__).resolve().parent.parent
REDIS_SERVER = shutil.which("redis-server")

try:
    import redis
except ImportError:  # pragma: no cover - the test extra installs it
    redis = None  # type: ignore[assignment]

if (REDIS_SERVER is None or redis is None) and not os.environ.get("CI"):
    pytest.skip(
        "redis-server and redis-py are needed (apt-get install redis-server; "
        "pip install 'wsmachine[redis]'); under CI these tests must run",
        allow_module_level=True,
    )

from wsmachine.demo import chat_server  # noqa: E402
from wsmachine.demo.relay import (  # noqa: E402
    Backoff,
    Envelope,
    RelayError,
    check,
    decode,
    encode,
    shown_url,
)

# -- helpers, also used by the browser test --------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it is true; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s: {what}")


class RedisServer:
    """A redis-server of this test's own, on a free loopback port."""

    def __init__(self, directory: Path, *extra: str) -> None:
        assert REDIS_SERVER is not None, "redis-server is needed: apt-get install redis-server"
        self.port = free_port()
        self.directory = directory
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with (self.directory / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    REDIS_SERVER,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                    *self.extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = self.client()
        try:
            until(lambda: self._answers(client), 10, f"redis-server answering on {self.port}")
        finally:
            client.close()

    def _answers(self, client: Any) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, (self.directory / "redis.log").read_text()
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    def client(self) -> Any:
        return redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=5)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A running redis-server, stopped (by PID) after the test."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class ChatProcess:
    """``python -m wsmachine serve --redis ...`` in a process, with its log."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "wsmachine", "serve", *args],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        match = self.wait_for(r"serving http://127\.0\.0\.1:(\d+)/")
        self.port = int(match.group(1))
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.http_url = f"http://127.0.0.1:{self.port}/"

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, pattern: str, timeout: float = 15.0, count: int = 1) -> re.Match[str]:
        def found() -> list[re.Match[str]] | None:
            assert self.process.poll() is None or count == 0, self.text()
            matches = list(re.finditer(pattern, self.text()))
            return matches if len(matches) >= count else None

        try:
            return until(found, timeout, pattern)[count - 1]  # type: ignore[no-any-return]
        except AssertionError:
            raise AssertionError(f"{pattern!r} (x{count}) not in the log:\n{self.text()}") from None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


@pytest.fixture
def chat_processes(tmp_path: Path) -> Iterator[Callable[..., ChatProcess]]:
    """Start chat server processes (``start(*args)``); every one is stopped after the test."""
    started: list[ChatProcess] = []

    def start(*args: str) -> ChatProcess:
        process = ChatProcess(tmp_path / f"server-{len(started) + 1}.log", *args)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.process.pid, signal.SIGCONT)  # a test may have stopped it
            process.stop()


def messages(
    ws: WebSocket, count: int, timeout: float = 10.0, online: list[int] | None = None
) -> list[dict[str, Any]]:
    """The next ``count`` chat messages a JSON client receives; the presence notes between
    them go to ``online`` if given."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"{len(got)} of {count} messages within {timeout} s: {got[-3:]}"
        data = ws.recv(timeout=left)
        assert isinstance(data, str)
        message = json.loads(data)
        if message["type"] == "message":
            got.append(message)
        elif message["type"] == "presence" and online is not None:
            online.append(message["online"])
    return got


def presence(ws: WebSocket, online: int, timeout: float = 10.0) -> None:
    """Read a JSON client's messages until it is told ``online`` are connected."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no presence of {online} within {timeout} s; seen {seen}"
        message = json.loads(ws.recv(timeout=left))
        if message["type"] in ("presence", "welcome"):
            seen.append(message["online"])
            if message["online"] == online:
                return


def say(ws: WebSocket, name: str, text: str) -> None:
    ws.send(json.dumps({"type": "message", "name": name, "text": text}))


# -- the pieces, without processes -----------------------------------------------------------


def test_envelopes_round_trip_and_refuse_what_is_not_ours() -> None:
    for envelope in (
        Envelope("abcd", 7, Said('{"type":"message"}', "héllo ✓")),
        Envelope("abcd", 8, Said(b"\x00\xff binary", b"\x00\xff binary")),
        Envelope("abcd", 0, None),
    ):
        assert decode(encode(envelope)) == envelope
    for junk in (b"hello", b"{}", b'{"node": 1, "seq": 2}', b'{"node":"a","seq":1,"json":3}'):
        with pytest.raises(ValueError, match="not a chat envelope"):
            decode(junk)


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(0.1, 1.0)
    delays = [backoff.next() for _ in range(8)]
    for delay, ceiling in zip(delays, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next() <= 0.1
    with pytest.raises(ValueError, match="0 < first <= cap"):
        Backoff(0, 1)


def test_a_room_with_a_node_tag_keeps_ids_unique_and_counts_elsewhere() -> None:
    room = Room("qmxa")
    member = room.join(json=True)
    assert (member.id, member.name) == ("qmxa.1", "guest-qmxa.1")
    room.elsewhere = 3
    assert json.loads(room.welcome(member) or "")["online"] == 4
    assert json.loads(room.presence()) == {"type": "presence", "online": 4}
    said = room.say(member, json.dumps({"type": "message", "text": "hi"}))
    assert said is not None
    assert json.loads(str(said.json))["id"] == "qmxa.1"
    # Without a tag, nothing changes.
    plain = Room().join(json=True)
    assert (plain.id, plain.name) == (1, "guest-1")
    assert isinstance(plain, Member)


def test_a_password_never_reaches_a_log_line() -> None:
    assert shown_url("redis://:secret@host:6379/0") == "redis://:***@host:6379/0"
    assert shown_url("redis://user:secret@host/1") == "redis://user:***@host/1"
    assert shown_url("redis://host:6379/0") == "redis://host:6379/0"


def test_check_says_what_is_wrong_in_one_line() -> None:
    with pytest.raises(RelayError, match=r"cannot reach Redis at redis://127\.0\.0\.1:\d+/0: "):
        check(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RelayError, match="not a Redis URL"):
        check("http://example.invalid/")


# -- the command line ------------------------------------------------------------------------


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsmachine", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_workers_without_redis_is_a_usage_error() -> None:
    result = run_cli("serve", "--port", "0", "--workers", "2")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "--workers 2 needs --redis URL" in result.stderr
    for bad, said in (
        (["--workers", "0"], "at least 1"),
        (["--redis", "http://x/"], "not a redis://HOST:PORT/DB URL"),
        (["--redis", "redis://127.0.0.1:1/0", "--echo"], "--echo and --redis do not mix"),
    ):
        result = run_cli("serve", "--port", "0", *bad)
        assert (result.returncode, result.stderr.count("\n")) == (2, 1), result.stderr
        assert said in result.stderr


def test_redis_unreachable_at_start_is_one_line_and_status_1() -> None:
    port = free_port()
    result = run_cli("serve", "--port", "0", "--redis", f"redis://127.0.0.1:{port}/0")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert f"cannot reach Redis at redis://127.0.0.1:{port}/0: " in result.stderr
    assert "is redis-server running?" in result.stderr


# -- processes -------------------------------------------------------------------------------


def test_two_processes_share_one_chat(
    redis_server: RedisServer, chat_processes: Callable[..., ChatProcess]
) -> None:
    one = chat_processes("--port", "0", "--redis", redis_server.url, "--channel", "room-1")
    two = chat_processes("--port", "0", "--redis", redis_server.url, "--channel", "room-1")
    json_url = "?format=json"
    a1 = connect(one.ws_url + json_url)
    a2 = connect(one.ws_url + json_url)
    b1 = connect(two.ws_url + json_url)
    plain = connect(two.ws_url)  # a plain-text client, on the other process
    clients = [a1, a2, b1]
    try:
        welcomes = [json.loads(ws.recv(timeout=5)) for ws in clients]
        ids = {welcome["id"] for welcome in welcomes}
        assert len(ids) == 3, welcomes  # unique across processes
        for ws in clients:
            presence(ws, 4)  # everyone, on both processes, plain-text client included

        count = 60
        for i in range(count):  # interleaved senders on both processes
            say(a1, "ann", f"a{i}")
            say(b1, "bob", f"b{i}")
        for ws in clients:
            got = messages(ws, 2 * count)
            by_sender: dict[str, list[str]] = {}
            for message in got:
                by_sender.setdefault(message["from"], []).append(message["text"])
            # In order per sender, once each: a process does not deliver its own twice.
            assert by_sender == {
                "ann": [f"a{i}" for i in range(count)],
                "bob": [f"b{i}" for i in range(count)],
            }
            assert {m["id"] for m in got} == {welcomes[0]["id"], welcomes[2]["id"]}
        lines = [plain.recv(timeout=5) for _ in range(2 * count)]
        assert sorted(lines) == sorted(
            [f"a{i}" for i in range(count)] + [f"b{i}" for i in range(count)]
        )
        # Someone leaves process two: process one's clients are told.
        plain.close()
        presence(a1, 3)
    finally:
        for ws in (*clients, plain):
            with contextlib.suppress(Exception):
                ws.close(timeout=2)
    assert one.stop() == 0
    assert two.stop() == 0
    assert "120 message(s) received" not in one.text()  # its own are not received back
    assert re.search(r"redis: 60 message\(s\) published, 60 received; lost: 0", one.text())


def test_redis_restart_loses_at_most_the_outage_and_traffic_resumes(
    redis_server: RedisServer, chat_processes: Callable[..., ChatProcess]
) -> None:
    one = chat_processes("--port", "0", "--redis", redis_server.url)
    two = chat_processes("--port", "0", "--redis", redis_server.url)
    a = connect(one.ws_url + "?format=json")
    local = connect(one.ws_url + "?format=json")
    b = connect(two.ws_url + "?format=json")
    timeline: dict[str, Any] = {}
    try:
        for ws in (a, local, b):
            presence(ws, 3)
        say(a, "ann", "before")
        assert messages(b, 1)[0]["text"] == "before"

        started = time.monotonic()
        redis_server.stop(signal.SIGKILL)  # a crash: no goodbye to the clients
        one.wait_for(r"redis: connection lost \(")
        two.wait_for(r"redis: connection lost \(")
        timeline["outage detected (s)"] = round(time.monotonic() - started, 3)

        # Meanwhile local delivery goes on; the other process gets nothing.
        lost = 5
        for i in range(lost):
            say(a, "ann", f"during {i}")
        assert [m["text"] for m in messages(local, 1 + lost)][1:] == [
            f"during {i}" for i in range(lost)
        ]
        time.sleep(1.0)
        redis_server.start()
        restarted = time.monotonic()
        timeline["redis down (s)"] = round(restarted - started, 3)
        one.wait_for(r"redis: reconnected after [\d.]+ s; \d+ message")
        two.wait_for(r"redis: reconnected after [\d.]+ s; \d+ message")
        timeline["reconnected after restart (s)"] = round(time.monotonic() - restarted, 3)

        # Traffic resumes across processes; the gap is counted by the receiver.
        say(a, "ann", "after")
        got = messages(b, 1)
        timeline["first relayed message after restart (s)"] = round(time.monotonic() - restarted, 3)
        assert got[0]["text"] == "after"  # the messages of the outage never arrive
        two.wait_for(rf"redis: {lost} message\(s\) of process \w+ never arrived")
        # Presence came back too (Redis lost every key when it restarted).
        say(b, "bob", "back")
        assert [m["text"] for m in messages(a, lost + 3)] == [
            "before",
            *[f"during {i}" for i in range(lost)],
            "after",
            "back",
        ]
    finally:
        for ws in (a, local, b):
            with contextlib.suppress(Exception):
                ws.close(timeout=2)
    assert one.stop() == 0
    assert two.stop() == 0
    # One line per outage and process, not one per attempt.
    assert one.text().count("redis: connection lost") == 1
    assert one.text().count("redis: reconnected") == 1
    summary = re.search(r"lost: (\d+) not published, (\d+) not received, in 1 outage", one.text())
    assert summary is not None and int(summary.group(1)) == lost, one.text()
    summary = re.search(r"lost: (\d+) not published, (\d+) not received, in 1 outage", two.text())
    assert summary is not None and int(summary.group(2)) == lost, two.text()
    timeline["messages lost"] = lost
    print("\noutage timeline:", json.dumps(timeline))


def test_workers_share_one_port(
    redis_server: RedisServer, chat_processes: Callable[..., ChatProcess]
) -> None:
    server = chat_processes("--port", "0", "--redis", redis_server.url, "--workers", "2")
    server.wait_for(r"\[(\w+)\] serving http://127\.0\.0\.1:\d+/ \(.* worker \d/2\)", count=2)
    tags = set(re.findall(r"\[(\w+)\] serving", server.text()))
    assert len(tags) == 2
    clients: list[WebSocket] = []
    try:
        # The kernel spreads connections over the workers by a hash of their addresses.
        homes: set[str] = set()
        for _ in range(40):
            clients.append(connect(server.ws_url + "?format=json"))
            welcome = json.loads(clients[-1].recv(timeout=5))
            homes.add(welcome["id"].split(".")[0])  # ids are "tag.N"
            if len(clients) >= 4 and homes == tags:
                break
        assert homes == tags, "every connection went to one worker"
        for ws in clients:
            presence(ws, len(clients))  # counted across both workers
        say(clients[0], "ann", "to all workers")
        for ws in clients:
            assert messages(ws, 1)[0]["text"] == "to all workers"
    finally:
        for ws in clients:
            with contextlib.suppress(Exception):
                ws.close(timeout=2)
    assert server.stop(signal.SIGTERM) == 0
    assert server.text().count("stopped") == 2


# -- slow clients and bursts -----------------------------------------------------------------


def _handshake_and_never_read(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"GET /ws?format=json HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    return sock


def test_a_slow_client_is_dropped_and_holds_nobody_back(
    redis_server: RedisServer, chat_processes: Callable[..., ChatProcess], tmp_path: Path
) -> None:
    sender = chat_processes("--port", "0", "--redis", redis_server.url, "--no-deflate")
    log = (tmp_path / "in-process.log").open("w", encoding="utf-8")
    server, handler = chat_server(
        out=log,
        deflate=False,
        redis=redis_server.url,
        write_high_water=16 << 10,
        write_limit=256 << 10,
    )
    assert handler.relay is not None
    handler.relay.start()
    thread = server.start()
    slow = _handshake_and_never_read(server.port)
    fast = connect(f"ws://127.0.0.1:{server.port}/ws?format=json")
    writer = connect(sender.ws_url + "?format=json")
    try:
        presence(fast, 3)
        presence(writer, 3)
        count, text = 1000, "x" * 4000  # 4 MB to each client: over the slow one's limit
        for i in range(count):
            say(writer, "ann", f"{i} {text}")
        online: list[int] = []
        got = messages(fast, count, timeout=30, online=online)
        assert [m["text"].split()[0] for m in got] == [str(i) for i in range(count)]
        until(
            lambda: "the peer does not read" in (tmp_path / "in-process.log").read_text(),
            10,
            "the slow client dropped",
        )
        if 2 not in online:
            presence(fast, 2)  # and counted out
    finally:
        slow.close()
        for ws in (fast, writer):
            with contextlib.suppress(Exception):
                ws.close(timeout=2)
        server.stop(timeout=10)
        thread.join(10)
        handler.relay.stop()
        log.close()


def test_a_burst_over_the_pubsub_output_limit_is_survived(
    tmp_path: Path, chat_processes: Callable[..., ChatProcess]
) -> None:
    # Redis drops a subscriber whose output buffer passes the hard limit (32 MB by
    # default); a small one here. The process is stopped while the burst is published.
    redis_server = RedisServer(tmp_path, "--client-output-buffer-limit", "pubsub 256kb 128kb 1")
    redis_server.start()
    publisher = redis_server.client()
    try:
        server = chat_processes("--port", "0", "--redis", redis_server.url, "--no-deflate")
        ws = connect(server.ws_url + "?format=json")
        presence(ws, 1)
        text = "y" * 8000
        burst = 2000  # 16 MB: far over the limit while the process is stopped
        publisher.publish(
            "wsmachine-chat", encode(Envelope("test", 1, Said(_framed(1, "first"), "first")))
        )
        assert messages(ws, 1)[0]["text"] == "first"
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            for seq in range(2, burst + 2):
                said = Said(_framed(seq, text), text)
                publisher.publish("wsmachine-chat", encode(Envelope("test", seq, said)))
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        server.wait_for(r"redis: connection lost \(")
        server.wait_for(r"redis: reconnected after")
        # It delivers what reached it before the cut, then recovers; the rest is counted.
        after = burst + 2
        said = Said(_framed(after, "after the burst"), "after the burst")
        until(
            lambda: publisher.publish("wsmachine-chat", encode(Envelope("test", after, said))),
            10,
            "the server subscribed again",
        )
        texts = []
        deadline = time.monotonic() + 30
        while "after the burst" not in texts and time.monotonic() < deadline:
            texts += [m["text"] for m in messages(ws, 1, timeout=30)]
        assert texts[-1] == "after the burst"
        delivered = len(texts) - 1
        assert delivered < burst
        match = server.wait_for(r"redis: (\d+) message\(s\) of process test never arrived")
        assert int(match.group(1)) == burst - delivered
        ws.close(timeout=2)
        assert server.stop() == 0
    finally:
        publisher.close()
        redis_server.stop()


def _framed(seq: int, text: str) -> str:
    return json.dumps({"type": "message", "id": "test.1", "from": "burst", "text": text})
