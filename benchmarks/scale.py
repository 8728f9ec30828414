"""Scale: memory per idle connection, and broadcast to many clients, through real servers.

Usage::

    python -m benchmarks.scale [--connections 10000] [--clients 1000] [--repeat 3]
                               [--broadcasts 100] [--profile N] [--json FILE]

Three servers, each in its own process on a free loopback port (127.0.0.1):

- ``selector``: ``wsmachine.adapters.selector.Server`` with a :class:`Handler` that does
  nothing;
- ``asyncio``: ``wsmachine.adapters.asyncio.serve`` with a handler that awaits the end of the
  connection;
- ``websockets``: ``websockets.asyncio.server.serve``, the same handler (the reference).

Keepalive pings are off everywhere and no compression is negotiated (the clients offer none).

(1) Idle connections: one client process opens ``--connections`` WebSocket connections to a
    server (raw non-blocking sockets sending a fixed upgrade request and checking the 101) and
    holds them. The figure is the growth of the server's VmRSS (``/proc/PID/status``) from
    before the first connection to after all are open and idle for a moment, divided by their
    count. Target for the two wsmachine servers: at most 4 KiB per connection.
(2) Broadcast: each server holds ``--clients`` connections from its own client process, which
    reads everything and keeps it. Inside the server, ``--broadcasts`` 125 B text messages
    (each with its sequence number) are sent, and the time runs until every write buffer is
    empty; the figure is broadcasts per second. Two modes: ``paced``, one broadcast per
    event-loop iteration (each is written out before the next, as when every broadcast
    answers its own event), and ``burst``, all of them in one iteration. Every client's bytes
    are then compared with the frames expected, in order. The asyncio adapter
    uses ``broadcast(connections, message)``, websockets ``websockets.asyncio.server.broadcast``
    and the selector adapter ``Server.broadcast(message)``. Target: the asyncio adapter at least
    1.5x websockets (the median of the per-turn ratios; turns interleave the servers).

``--profile N`` also opens N idle connections to each wsmachine server under ``tracemalloc``
and lists the allocation sites that grew the most. The machine is driven by the parent over
the children's stdin and stdout (one JSON line per answer); every wait is bounded and every
child process is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import queue
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .machine import facts, load_average, stop_server

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("selector", "asyncio", "websockets")
REFERENCE = "websockets"
#: Bytes of RSS per idle connection the wsmachine servers should stay under.
MEMORY_TARGET = 4096
#: Broadcasts per second of the asyncio adapter over websockets'.
BROADCAST_TARGET = 1.5
#: Servers held to the targets.
MEMORY_TARGETS = ("selector", "asyncio")
BROADCAST_TARGETS = ("asyncio",)
#: How the broadcasts of a run follow each other: one per event-loop iteration (each written
#: out before the next), or all in one iteration.
MODES = ("paced", "burst")
MESSAGE_SIZE = 125
#: A server's 125 B text frame: FIN + text opcode, unmasked length 125, payload.
FRAME_HEADER = b"\x81\x7d"
FRAME_SIZE = len(FRAME_HEADER) + MESSAGE_SIZE
#: RFC 6455's example key and its accept value.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = b"s3pplmbitxaq9kygzzhzrbk+xoo="  # compared lowercased
#: Handshakes a client keeps under way at once (asyncio's listen backlog is 100).
WINDOW = 64
#: File descriptors a process needs besides its connections.
FD_MARGIN = 256
#: Seconds the connections stay idle before the RSS is read.
SETTLE = 1.0
LISTEN_BACKLOG = 1024


def message(index: int) -> str:
    """Broadcast number ``index``: 125 ASCII characters, starting with the number."""
    return f"broadcast {index:09d} ".ljust(MESSAGE_SIZE, "x")


def expected_stream(first: int, count: int) -> bytes:
    """What a client receives for broadcasts ``first`` .. ``first + count - 1``."""
    return b"".join(FRAME_HEADER + message(i).encode() for i in range(first, first + count))


def raise_nofile(needed: int) -> str | None:
    """Raise the soft RLIMIT_NOFILE to ``needed`` (up to the hard limit); why not, or None."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        return f"RLIMIT_NOFILE hard limit {hard} < {needed} file descriptors needed"
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return None


def vm_rss(pid: int) -> int:
    """The resident set size of process ``pid`` in bytes (``VmRSS`` of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _reply(answer: dict[str, Any]) -> None:
    print(json.dumps(answer), flush=True)


# -- the servers (each runs in a child process) ---------------------------------------------


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


class Tracer:
    """The ``snapshot`` and ``top`` commands: tracemalloc growth between two snapshots."""

    def __init__(self) -> None:
        self.base: Any = None

    def snapshot(self) -> dict[str, Any]:
        import tracemalloc

        if not tracemalloc.is_tracing():
            return {"error": "the server does not trace (--trace)"}
        self.base = tracemalloc.take_snapshot()
        return {"ok": True}

    def top(self, limit: int, per: int) -> dict[str, Any]:
        """The ``limit`` tracebacks that grew most since :meth:`snapshot`, per connection."""
        import linecache
        import tracemalloc

        if self.base is None:
            return {"error": "no snapshot to compare with"}
        ignore = [
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
        ]
        now = tracemalloc.take_snapshot().filter_traces(ignore)
        base = self.base.filter_traces(ignore)
        stats = now.compare_to(base, "traceback")
        total = sum(s.size_diff for s in stats)
        sites = [
            {
                "bytes_per_connection": round(s.size_diff / per, 1),
                "blocks_per_connection": round(s.count_diff / per, 2),
                # Innermost frame first, with its line of code.
                "traceback": [f"{Path(f.filename).name}:{f.lineno}" for f in s.traceback][:-7:-1],
                "line": linecache.getline(s.traceback[-1].filename, s.traceback[-1].lineno).strip(),
            }
            for s in stats[:limit]
        ]
        return {"traced_per_connection": round(total / per, 1), "sites": sites}


def _command_thread(run: Callable[[list[str]], dict[str, Any]]) -> threading.Thread:
    """Read commands from stdin, answer each with ``run``'s JSON; exit the process at EOF."""

    def loop() -> None:
        for line in sys.stdin:
            words = line.split()
            if words:
                try:
                    answer = run(words)
                except Exception as exc:  # report it to the parent rather than hang it
                    answer = {"error": f"{type(exc).__name__}: {exc}"}
                _reply(answer)
        os._exit(0)

    thread = threading.Thread(target=loop, name="scale-commands", daemon=True)
    thread.start()
    return thread


def serve_selector(tracer: Tracer) -> None:
    from wsmachine.adapters.selector import Handler, Server

    server = Server(Handler(), sock=_listening_socket())

    def broadcast(
        first: int, count: int, paced: bool, done: Callable[[dict[str, Any]], None]
    ) -> None:
        """``count`` broadcasts, one per loop iteration (``paced``) or all in one; done when
        every write buffer is empty."""
        messages = [message(i) for i in range(first, first + count)]
        state = {"next": 0, "sent": 0}
        start = time.perf_counter()

        def step() -> None:
            if state["next"] < count:
                for text in messages[state["next"] : state["next"] + 1 if paced else count]:
                    state["sent"] += server.broadcast(text)
                    state["next"] += 1
                server.call_later(0, step)
            elif any(peer.buffered for peer in server.peers):
                server.call_later(0.0005, step)
            else:
                done({"seconds": time.perf_counter() - start, "sent": state["sent"]})

        step()

    def run(words: list[str]) -> dict[str, Any]:
        answers: queue.Queue[dict[str, Any]] = queue.Queue()
        command = words[0]
        if command == "count":
            server.call_soon_threadsafe(
                lambda: answers.put({"open": sum(1 for p in server.peers if p.open)})
            )
        elif command == "broadcast":
            first, count, paced = int(words[1]), int(words[2]), words[3] == "paced"
            server.call_soon_threadsafe(lambda: broadcast(first, count, paced, answers.put))
        elif command == "snapshot":
            server.call_soon_threadsafe(lambda: answers.put(tracer.snapshot()))
        elif command == "top":
            limit, per = int(words[1]), int(words[2])
            server.call_soon_threadsafe(lambda: answers.put(tracer.top(limit, per)))
        else:
            return {"error": f"unknown command {command!r}"}
        return answers.get(timeout=300)

    print(server.port, flush=True)
    _command_thread(run)
    server.serve_forever()


async def _serve_asyncio(name: str, tracer: Tracer) -> None:
    """The asyncio adapter's server or websockets', answering commands until stdin ends."""
    loop = asyncio.get_running_loop()
    sock = _listening_socket()
    if name == "asyncio":
        from wsmachine.adapters.asyncio import WebSocket, broadcast, serve

        async def wait(ws: WebSocket) -> None:
            await ws.wait_closed()

        server: Any = serve(wait, sock=sock)

        def send_all(connections: list[Any], text: str) -> int:
            return broadcast(connections, text)

        def buffered(ws: Any) -> int:
            transport = ws._transport
            return 0 if transport is None else transport.get_write_buffer_size()
    else:
        from websockets.asyncio.server import ServerConnection
        from websockets.asyncio.server import broadcast as ws_broadcast
        from websockets.asyncio.server import serve as ws_serve

        async def wait_ws(ws: ServerConnection) -> None:
            await ws.wait_closed()

        server = ws_serve(wait_ws, sock=sock, compression=None, ping_interval=None)

        def send_all(connections: list[Any], text: str) -> int:
            ws_broadcast(connections, text)
            return len(connections)

        def buffered(ws: Any) -> int:
            return ws.transport.get_write_buffer_size()

    async def do_broadcast(first: int, count: int, paced: bool) -> dict[str, Any]:
        connections = list(server.connections)
        messages = [message(i) for i in range(first, first + count)]
        sent = 0
        start = time.perf_counter()
        for text in messages:
            sent += send_all(connections, text)
            if paced:
                await asyncio.sleep(0)  # one broadcast per loop iteration: its writes go out
        waiting = [ws for ws in connections if buffered(ws)]
        while waiting:
            await asyncio.sleep(0.0005)
            waiting = [ws for ws in waiting if buffered(ws)]
        return {"seconds": time.perf_counter() - start, "sent": sent}

    async def command(words: list[str]) -> dict[str, Any]:
        name = words[0]
        if name == "count":
            return {"open": len(server.connections)}
        if name == "broadcast":
            return await do_broadcast(int(words[1]), int(words[2]), words[3] == "paced")
        if name == "snapshot":
            return tracer.snapshot()
        if name == "top":
            return tracer.top(int(words[1]), int(words[2]))
        return {"error": f"unknown command {name!r}"}

    def run(words: list[str]) -> dict[str, Any]:
        return asyncio.run_coroutine_threadsafe(command(words), loop).result(300)

    async with server:
        print(sock.getsockname()[1], flush=True)
        _command_thread(run)
        await asyncio.Event().wait()  # until the parent ends the process


def serve(name: str, fds: int, trace: bool) -> None:
    """Run server ``name`` until stdin ends or it is terminated (in the child process)."""
    problem = raise_nofile(fds)
    if problem:
        print(f"SKIP: {problem}", flush=True)
        return
    tracer = Tracer()
    if trace:
        import tracemalloc

        tracemalloc.start(10)
    if name == "selector":
        serve_selector(tracer)
    elif name in ("asyncio", "websockets"):
        asyncio.run(_serve_asyncio(name, tracer))
    else:
        raise SystemExit(f"unknown server {name!r}")


# -- the client process -----------------------------------------------------------------------


def open_connections(port: int, count: int, deadline: float) -> list[tuple[socket.socket, bytes]]:
    """Open ``count`` WebSocket connections, ``WINDOW`` handshakes at a time; each socket
    with what arrived after its 101."""
    request = (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    selector = selectors.DefaultSelector()
    opened: list[tuple[socket.socket, bytes]] = []
    started = 0
    try:
        while len(opened) < count:
            while started < count and started - len(opened) < WINDOW:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                error = sock.connect_ex(("127.0.0.1", port))
                if error not in (0, errno.EINPROGRESS):
                    sock.close()
                    raise OSError(error, f"connect: {os.strerror(error)}")
                selector.register(sock, selectors.EVENT_WRITE, [sock, bytearray(), False])
                started += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(opened)} of {count} connections opened in time")
            for key, _ in selector.select(1.0):
                sock, head, sent = key.data
                if not sent:  # connected (or failed)
                    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if error:
                        raise OSError(error, f"connect: {os.strerror(error)}")
                    sock.send(request)  # small enough for an empty socket buffer
                    key.data[2] = True
                    selector.modify(sock, selectors.EVENT_READ, key.data)
                    continue
                data = sock.recv(4096)
                if not data:
                    raise ConnectionError("the server closed a connection during the handshake")
                head += data
                end = head.find(b"\r\n\r\n")
                if end < 0:
                    continue
                response = bytes(head[:end]).lower()
                if not response.startswith(b"http/1.1 101") or ACCEPT not in response:
                    raise ConnectionError(f"not a valid 101: {bytes(head[:end])[:200]!r}")
                selector.unregister(sock)
                opened.append((sock, bytes(head[end + 4 :])))
    except BaseException:
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        for sock, _ in opened:
            sock.close()
        raise
    finally:
        selector.close()
    return opened


def run_client(port: int, count: int, timeout: float) -> None:
    """Hold ``count`` connections to ``port``, read and keep everything they receive, and
    answer ``expect FIRST COUNT SECONDS`` (check the broadcasts) and ``quit`` on stdin."""
    problem = raise_nofile(count + FD_MARGIN)
    if problem:
        _reply({"error": f"SKIP: {problem}"})
        return
    start = time.monotonic()
    try:
        pairs = open_connections(port, count, start + timeout)
    except Exception as exc:
        _reply({"error": f"{type(exc).__name__}: {exc}"})
        return
    socks = [sock for sock, _ in pairs]
    buffers = [bytearray(rest) for _, rest in pairs]
    eof = [False] * count
    selector = selectors.DefaultSelector()
    for index, sock in enumerate(socks):
        selector.register(sock, selectors.EVENT_READ, index)
    stdin = sys.stdin.fileno()
    selector.register(stdin, selectors.EVENT_READ, None)
    _reply({"ready": count, "seconds": time.monotonic() - start})

    pending = b""
    expecting: tuple[int, int, float] | None = None  # first, count, deadline
    while True:
        for key, _ in selector.select(0.2):
            index = key.data
            if index is None:
                chunk = os.read(stdin, 4096)
                if not chunk:
                    return  # the parent is gone
                pending += chunk
                continue
            try:
                data = socks[index].recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                buffers[index] += data
            else:
                eof[index] = True
                selector.unregister(socks[index])
        while b"\n" in pending:
            line, _, pending = pending.partition(b"\n")
            words = line.decode().split()
            if not words:
                continue
            if words[0] == "quit":
                for sock in socks:  # reset: no TIME_WAIT left behind
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    sock.close()
                return
            if words[0] == "expect":
                first, number = int(words[1]), int(words[2])
                expecting = (first, number, time.monotonic() + float(words[3]))
            else:
                _reply({"error": f"unknown command {words[0]!r}"})
        if expecting is not None:
            first, number, deadline = expecting
            size = number * FRAME_SIZE
            complete = sum(1 for b in buffers if len(b) >= size)
            if complete == count or time.monotonic() > deadline or all(eof):
                stream = expected_stream(first, number)
                bad = [i for i, b in enumerate(buffers) if b != stream]
                detail = None
                if bad:
                    got = buffers[bad[0]]
                    detail = f"connection {bad[0]}: {len(got)} bytes, expected {len(stream)}" + (
                        " (closed)" if eof[bad[0]] else ""
                    )
                _reply({"complete": count - len(bad), "bad": len(bad), "detail": detail})
                for b in buffers:
                    b.clear()
                expecting = None


# -- the parent: driving the children -------------------------------------------------------


class Child:
    """A child process answering one JSON line per command; reads are bounded in time."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.scale", *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        with contextlib.suppress(ValueError, OSError):
            for line in self.process.stdout:
                self.lines.put(line)
        self.lines.put(None)

    def line(self, timeout: float) -> str:
        """The next line the child prints."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no answer from {self.describe()} in {timeout:.0f} s") from None
        if line is None:
            self.lines.put(None)
            raise RuntimeError(f"{self.describe()} ended (status {self.process.poll()})")
        return line

    def answer(self, timeout: float) -> dict[str, Any]:
        """The next JSON answer; an ``error`` in it is raised."""
        answer: dict[str, Any] = json.loads(self.line(timeout))
        if "error" in answer:
            raise RuntimeError(f"{self.describe()}: {answer['error']}")
        return answer

    def ask(self, command: str, timeout: float = 60) -> dict[str, Any]:
        """Send ``command`` and return its answer."""
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.answer(timeout)

    def describe(self) -> str:
        return " ".join(self.process.args[3:])  # type: ignore[index]

    def stop(self) -> None:
        """Close its stdin (it exits) and end it, as :func:`~benchmarks.machine.stop_server`."""
        with contextlib.suppress(OSError, ValueError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        stop_server(self.process)


def start_server(name: str, connections: int, trace: bool = False) -> tuple[Child, int]:
    """Server ``name`` in a child process, ready for ``connections``; and its port."""
    args = ["--serve", name, "--fds", str(connections + FD_MARGIN)]
    child = Child([*args, "--trace"] if trace else args)
    try:
        line = child.line(60).strip()
        if not line.isdigit():
            raise RuntimeError(f"the {name} server did not start: {line!r}")
        return child, int(line)
    except BaseException:
        child.stop()
        raise


def start_client(port: int, count: int, timeout: float) -> Child:
    """A client process holding ``count`` connections to ``port``, once they are open."""
    child = Child(["--client", str(port), "--count", str(count), "--timeout", str(timeout)])
    try:
        child.answer(timeout + 30)
        return child
    except BaseException:
        child.stop()
        raise


def wait_open(server: Child, count: int, timeout: float) -> None:
    """Wait until the server counts ``count`` open connections."""
    deadline = time.monotonic() + timeout
    while (seen := server.ask("count")["open"]) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the server has {seen} of {count} connections open")
        time.sleep(0.1)


def stop_all(children: Iterable[Child]) -> None:
    for child in children:
        with contextlib.suppress(Exception):
            child.stop()


def measure_idle(name: str, count: int, timeout: float) -> dict[str, Any]:
    """One idle run: RSS before and after ``count`` connections to server ``name``."""
    children: list[Child] = []
    try:
        server, port = start_server(name, count)
        children.append(server)
        server.ask("count")  # up and answering: its command thread exists
        time.sleep(0.5)
        before = vm_rss(server.pid)
        start = time.monotonic()
        children.insert(0, start_client(port, count, timeout))
        wait_open(server, count, timeout)
        opened = time.monotonic() - start
        time.sleep(SETTLE)
        after = vm_rss(server.pid)
        return {
            "rss_before": before,
            "rss_after": after,
            "bytes_per_connection": (after - before) / count,
            "open_seconds": round(opened, 2),
        }
    finally:
        stop_all(children)


def profile(name: str, count: int, timeout: float, limit: int = 12) -> dict[str, Any]:
    """tracemalloc growth in server ``name`` over ``count`` idle connections, top sites."""
    children: list[Child] = []
    try:
        server, port = start_server(name, count, trace=True)
        children.append(server)
        server.ask("snapshot")
        before = vm_rss(server.pid)
        children.insert(0, start_client(port, count, timeout))
        wait_open(server, count, timeout)
        time.sleep(SETTLE)
        after = vm_rss(server.pid)
        top = server.ask(f"top {limit} {count}", timeout=120)
        return {"connections": count, "rss_per_connection": (after - before) / count, **top}
    finally:
        stop_all(children)


class Broadcasts:
    """Every server with its client process, and a sequence number per server."""

    def __init__(self, names: list[str], clients: int, timeout: float) -> None:
        self.clients = clients
        self.timeout = timeout
        self.servers: dict[str, Child] = {}
        self.client_processes: dict[str, Child] = {}
        self.next: dict[str, int] = {}
        self.errors: dict[str, str] = {}
        for name in names:
            try:
                server, port = start_server(name, clients)
                self.servers[name] = server
                self.client_processes[name] = start_client(port, clients, timeout)
                wait_open(server, clients, timeout)
                self.next[name] = 0
            except Exception as exc:
                self.errors[name] = f"ERROR: {type(exc).__name__}: {exc}"

    def run(self, name: str, count: int, mode: str) -> float:
        """``count`` broadcasts from server ``name``, checked at every client; per second."""
        first = self.next[name]
        self.next[name] += count
        done = self.servers[name].ask(f"broadcast {first} {count} {mode}", timeout=self.timeout)
        check = self.client_processes[name].ask(
            f"expect {first} {count} {self.timeout}", timeout=self.timeout + 30
        )
        if check["bad"] or done["sent"] != count * self.clients:
            raise AssertionError(
                f"{check['bad']} of {self.clients} clients did not get every broadcast "
                f"({done['sent']} sent of {count * self.clients}): {check['detail']}"
            )
        return float(count / done["seconds"])

    def close(self) -> None:
        for child in self.client_processes.values():
            with contextlib.suppress(Exception):
                assert child.process.stdin is not None
                child.process.stdin.write("quit\n")
                child.process.stdin.flush()
        stop_all([*self.servers.values(), *self.client_processes.values()])


def rotated(names: list[str], turn: int) -> list[str]:
    shift = turn % len(names) if names else 0
    return names[shift:] + names[:shift]


def spread(values: list[float]) -> str:
    return f"{min(values):,.0f}-{max(values):,.0f}" if values else ""


def run_idle(
    names: list[str], count: int, repeat: int, timeout: float
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    errors: dict[str, str] = {}
    for turn in range(repeat):
        for name in rotated(names, turn):
            if name in errors:
                continue
            print(f"  idle: {name}, {count} connections ...", file=sys.stderr, flush=True)
            try:
                samples[name].append(measure_idle(name, count, timeout))
            except Exception as exc:
                errors[name] = f"ERROR: {type(exc).__name__}: {exc}"
    return samples, errors


def run_broadcast(
    names: list[str], clients: int, count: int, repeat: int, timeout: float
) -> tuple[dict[str, dict[str, list[float]]], dict[str, str]]:
    """Samples[mode][server], servers interleaved turn by turn; and why servers have none."""
    print(f"  broadcast: {clients} clients per server ...", file=sys.stderr, flush=True)
    runs = Broadcasts(names, clients, timeout)
    samples: dict[str, dict[str, list[float]]] = {m: {n: [] for n in names} for m in MODES}
    try:
        live = [n for n in names if n not in runs.errors]
        for name in live:  # warm up, checked too
            try:
                for mode in MODES:
                    runs.run(name, max(count // 10, 1), mode)
            except Exception as exc:
                runs.errors[name] = f"ERROR: {type(exc).__name__}: {exc}"
        for turn in range(repeat):
            for mode in MODES:
                for name in rotated(live, turn):
                    if name in runs.errors:
                        continue
                    try:
                        samples[mode][name].append(runs.run(name, count, mode))
                    except Exception as exc:
                        runs.errors[name] = f"ERROR: {type(exc).__name__}: {exc}"
    finally:
        runs.close()
    for mode in MODES:
        for name in runs.errors:
            samples[mode][name] = []
    return samples, runs.errors


# -- the report -----------------------------------------------------------------------------


def idle_rows(
    samples: dict[str, list[dict[str, Any]]], notes: dict[str, str]
) -> list[dict[str, Any]]:
    rows = []
    for name in SERVERS:
        if name not in samples and name not in notes:
            continue
        values = [s["bytes_per_connection"] for s in samples.get(name, [])]
        median = statistics.median(values) if values else None
        target = MEMORY_TARGET if name in MEMORY_TARGETS else None
        rows.append(
            {
                "server": name,
                "bytes_per_connection": median,
                "samples": samples.get(name, []),
                "target_max_bytes": target,
                "met": None if target is None or median is None else median <= target,
                "note": notes.get(name),
            }
        )
    return rows


def broadcast_rows(
    samples: dict[str, dict[str, list[float]]], notes: dict[str, str]
) -> list[dict[str, Any]]:
    rows = []
    for mode, name in ((m, n) for m in MODES for n in SERVERS):
        if name not in samples.get(mode, {}) and name not in notes:
            continue
        reference = samples.get(mode, {}).get(REFERENCE, [])
        values = samples.get(mode, {}).get(name, [])
        # Per-turn ratios: turn i of this server against turn i of the reference.
        ratios = [v / r for v, r in zip(values, reference, strict=False) if r]
        median_ratio = statistics.median(ratios) if ratios else None
        target = BROADCAST_TARGET if name in BROADCAST_TARGETS else None
        rows.append(
            {
                "server": name,
                "mode": mode,
                "broadcasts_per_second": statistics.median(values) if values else None,
                "samples": values,
                "ratio": median_ratio,
                "ratios": ratios,
                "target_min_ratio": target,
                "met": None if target is None or median_ratio is None else median_ratio >= target,
                "note": notes.get(name),
            }
        )
    return rows


def table(rows: list[list[str]], left: tuple[int, ...] = (0,)) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_idle(rows: list[dict[str, Any]], count: int) -> str:
    out = [["server", "B/connection", "min-max", "RSS growth", "target"]]
    for row in rows:
        if row["bytes_per_connection"] is None:
            out.append([row["server"], "n/a", "", "", (row["note"] or "")[:70]])
            continue
        values = [s["bytes_per_connection"] for s in row["samples"]]
        growth = statistics.median(s["rss_after"] - s["rss_before"] for s in row["samples"])
        target = ""
        if row["target_max_bytes"] is not None:
            verdict = "met" if row["met"] else f"NOT MET ({row['bytes_per_connection']:,.0f} B)"
            target = f"<= {row['target_max_bytes']:,} B: {verdict}"
        out.append(
            [
                row["server"],
                f"{row['bytes_per_connection']:,.0f}",
                spread(values),
                f"{growth / 2**20:,.1f} MiB",
                target,
            ]
        )
    return f"(1) {count:,} idle connections per server: VmRSS growth / connections\n" + table(
        out, left=(0, 4)
    )


def format_broadcast(rows: list[dict[str, Any]], clients: int, count: int) -> str:
    out = [
        ["server", "mode", "broadcasts/s", "min-max", f"ratio to {REFERENCE}", "min-max", "target"]
    ]
    for row in rows:
        if row["broadcasts_per_second"] is None:
            out.append([row["server"], row["mode"], "n/a", "", "", "", (row["note"] or "")[:70]])
            continue
        ratio = row["ratio"]
        target = ""
        if row["target_min_ratio"] is not None and ratio is not None:
            verdict = "met" if row["met"] else f"NOT MET ({ratio:.2f}x)"
            target = f">= {row['target_min_ratio']:.1f}x: {verdict}"
        ratios = row["ratios"]
        out.append(
            [
                row["server"],
                row["mode"],
                f"{row['broadcasts_per_second']:,.0f}",
                spread(row["samples"]),
                "-" if ratio is None else f"{ratio:.2f}x",
                f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "",
                target,
            ]
        )
    return (
        f"(2) broadcast of a 125 B text to {clients:,} clients, {count} broadcasts per run, "
        "every client checked; paced: one broadcast per loop iteration, burst: all in one\n"
        + table(out, left=(0, 1, 6))
    )


def format_profile(name: str, result: dict[str, Any]) -> str:
    lines = [
        f"tracemalloc, {name} server, {result['connections']:,} idle connections: "
        f"{result['rss_per_connection']:,.0f} B RSS, {result['traced_per_connection']:,.0f} B "
        "traced per connection; top sites (bytes and blocks per connection; innermost frame first):"
    ]
    for site in result["sites"]:
        lines.append(
            f"  {site['bytes_per_connection']:>10,.1f} B {site['blocks_per_connection']:>6.2f}  "
            + " < ".join(site["traceback"])
        )
        lines.append(f"{'':22}{site['line']}")
    return "\n".join(lines)


def available(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """The servers whose packages are installed; why the others are not."""
    notes = {}
    try:
        import websockets  # noqa: F401
    except ImportError:
        notes[REFERENCE] = "SKIPPED: websockets is not installed (pip install websockets)"
    return [n for n in names if n not in notes], notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--connections", type=int, default=10000, help="idle connections")
    parser.add_argument("--clients", type=int, default=1000, help="broadcast clients")
    parser.add_argument("--broadcasts", type=int, default=100, help="broadcasts per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per server")
    parser.add_argument("--only", choices=("idle", "broadcast"), help="one of the two parts")
    parser.add_argument(
        "--profile", type=int, metavar="N", help="tracemalloc over N idle connections"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="bound of every wait")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--fds", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.fds, args.trace)
        return 0
    if args.client:
        run_client(args.client, args.count, args.timeout)
        return 0
    return report(args)


def report(args: argparse.Namespace) -> int:
    """Measure, print the tables, write the JSON; 1 when a server failed."""
    env: dict[str, Any] = facts()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    env.update(
        connections=args.connections,
        clients=args.clients,
        broadcasts=args.broadcasts,
        repeat=args.repeat,
        rlimit_nofile=[soft, hard],
    )
    print(
        f"Machine: {env['cpu']}, {env['usable_cpus']} usable of {env['logical_cpus']} CPUs; "
        f"{env['os']}; {env['python']}; {env['date']}"
    )
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v))
    print(
        f"RLIMIT_NOFILE: soft {soft}, hard {hard}; load average at start: "
        f"{env['load_average_start']}"
    )
    print(f"{args.repeat} runs per server, servers interleaved (the order rotates); medians\n")
    names, unavailable = available(list(SERVERS))
    result: dict[str, Any] = {"environment": env}
    status = 0

    if args.only in (None, "idle"):
        problem = raise_nofile(args.connections + FD_MARGIN)
        if problem:
            notes = {n: f"SKIPPED: {problem}" for n in SERVERS}
            samples: dict[str, list[dict[str, Any]]] = {}
        else:
            samples, errors = run_idle(names, args.connections, args.repeat, args.timeout)
            status |= bool(errors)
            notes = {**unavailable, **errors}
        rows = idle_rows(samples, notes)
        text = format_idle(rows, args.connections)
        print(text)
        for name, note in notes.items():
            print(f"  {name}: {note}")
        print()
        result["idle"] = {"rows": rows, "table": text, "notes": notes}

    if args.only in (None, "broadcast"):
        problem = raise_nofile(args.clients + FD_MARGIN)
        if problem:
            notes = {n: f"SKIPPED: {problem}" for n in SERVERS}
            rates: dict[str, dict[str, list[float]]] = {}
        else:
            rates, errors = run_broadcast(
                names, args.clients, args.broadcasts, args.repeat, args.timeout
            )
            status |= bool(errors)
            notes = {**unavailable, **errors}
        rows_b = broadcast_rows(rates, notes)
        text = format_broadcast(rows_b, args.clients, args.broadcasts)
        print(text)
        for name, note in notes.items():
            print(f"  {name}: {note}")
        print()
        result["broadcast"] = {"rows": rows_b, "table": text, "notes": notes}

    if args.profile:
        result["profile"] = {}
        for name in MEMORY_TARGETS:
            print(f"  profile: {name} ...", file=sys.stderr, flush=True)
            try:
                found = profile(name, args.profile, args.timeout)
            except Exception as exc:
                print(f"profile of {name}: ERROR: {type(exc).__name__}: {exc}\n")
                status = 1
                continue
            result["profile"][name] = found
            print(format_profile(name, found) + "\n")

    env["load_average_end"] = load_average()
    print(f"Load average at end: {env['load_average_end']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
            handle.write("\n")
        print(f"results written to {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main())
