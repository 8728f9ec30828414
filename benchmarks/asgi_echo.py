"""Pipelined loopback echo: uvicorn's WebSocket classes, event-loop servers, trio servers.

Usage::

    python -m benchmarks.asgi_echo [--seconds 1.0] [--repeat 3] [--depth 64] [--quick]
                                   [--check] [--only NAME[,NAME...]] [--json FILE]

Three groups of servers, each server in its own process on a free loopback port:

(a) uvicorn (``http="httptools"``, ``lifespan="off"``, ``log_level="warning"``, its default
    event loop: uvloop when installed) running one minimal ASGI echo application, with each
    ``ws=`` class: wsmachine's ``WSMachineProtocol``, ``websockets-sansio`` (uvicorn's
    default), ``websockets`` (legacy) and ``wsproto``. Reference: ``websockets-sansio``.
(b) servers on one event loop: wsmachine's asyncio adapter
    (``wsmachine.adapters.asyncio.serve``) and selector adapter
    (``wsmachine.adapters.selector.Server``), websockets' (``websockets.asyncio.server.serve``),
    aiohttp's and picows' (each when installed), and wsmachine's and websockets' again on
    uvloop (when installed). Reference: websockets on the standard loop; both wsmachine
    adapters are also held against picows.
(c) trio servers: wsmachine's trio adapter (``wsmachine.adapters.trio.serve``) and
    trio-websocket's ``serve_websocket`` (the reference).

One client, the same for every server and run in this process: the bare wsmachine
``ClientConnection`` on a non-blocking socket with ``TCP_NODELAY``, keeping ``--depth``
binary messages in flight: it sends until ``depth`` are outstanding, reads whatever echoes
arrive, sends again. The number is the round trips completed during a timed run, divided by
its length. Every echo is compared with the message; a wrong echo, an unexpected event, a
closed connection or a server that stops answering fails that server. Sizes 16 B, 1 KiB and
64 KiB; every measurement is repeated ``--repeat`` times, servers interleaved (the order
rotates); the tables show medians and the ratios to the references that targets name.
Keepalive pings are off everywhere and no compression is negotiated (the client offers none).

``--check`` is the correctness run for CI: every server, 0.1 s per size, once; the exit
status is 1 when a server failed (a server whose package is missing is SKIPPED).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from wsmachine import Accepted, Binary, ClientConnection, Ping, Pong

from .machine import facts, load_average, start_server, stop_server

SIZES = {"16 B": 16, "1 KiB": 1024, "64 KiB": 64 * 1024}
ROOT = Path(__file__).resolve().parent.parent
MAX_MESSAGE = 1 << 20
#: A server that moves no byte for this long during a run has failed.
STALL_SECONDS = 10.0

#: uvicorn's ``ws=`` for each server of group (a).
UVICORN_WS = {
    "uvicorn+wsmachine": "wsmachine.integrations.uvicorn:WSMachineProtocol",
    "uvicorn+websockets-sansio": "websockets-sansio",
    "uvicorn+websockets": "websockets",
    "uvicorn+wsproto": "wsproto",
}
#: Issue 13's targets for each wsmachine event-loop adapter: reference -> size -> ratio.
LOOP_TARGETS = {
    "websockets": {"16 B": 2.5, "1 KiB": 2.5, "64 KiB": 2.5},
    "picows": {"16 B": 0.8, "1 KiB": 0.8, "64 KiB": 1.0},
}
#: Each group: its servers, the reference of its ratio column, and its targets as
#: server -> reference -> size label -> the minimum ratio of the server's median to the
#: reference's (a target's reference must be one of the group's servers).
GROUPS: dict[str, dict[str, Any]] = {
    "uvicorn": {
        "title": "(a) uvicorn + minimal ASGI echo app, by ws= class",
        "servers": list(UVICORN_WS),
        "reference": "uvicorn+websockets-sansio",
        # Issue 11's targets.
        "targets": {
            "uvicorn+wsmachine": {
                "uvicorn+websockets-sansio": {"16 B": 1.5, "1 KiB": 1.5, "64 KiB": 1.2}
            }
        },
    },
    "loop": {
        "title": "(b) servers on one event loop (asyncio, uvloop, the selector adapter)",
        "servers": [
            "wsmachine",
            "wsmachine-selector",
            "websockets",
            "aiohttp",
            "picows",
            "wsmachine+uvloop",
            "websockets+uvloop",
        ],
        "reference": "websockets",
        # Issue 13's targets.
        "targets": {"wsmachine": LOOP_TARGETS, "wsmachine-selector": LOOP_TARGETS},
    },
    "trio": {
        "title": "(c) trio servers",
        "servers": ["wsmachine-trio", "trio-websocket"],
        "reference": "trio-websocket",
        # Issue 13's target.
        "targets": {
            "wsmachine-trio": {"trio-websocket": {"16 B": 1.5, "1 KiB": 1.5, "64 KiB": 1.5}}
        },
    },
}
#: What each server needs installed, besides wsmachine.
REQUIRES = {
    **{name: ("uvicorn", "httptools") for name in UVICORN_WS},
    "uvicorn+websockets-sansio": ("uvicorn", "httptools", "websockets"),
    "uvicorn+websockets": ("uvicorn", "httptools", "websockets"),
    "uvicorn+wsproto": ("uvicorn", "httptools", "wsproto"),
    "wsmachine": (),
    "wsmachine-selector": (),
    "websockets": ("websockets",),
    "aiohttp": ("aiohttp",),
    "picows": ("picows",),
    "wsmachine+uvloop": ("uvloop",),
    "websockets+uvloop": ("websockets", "uvloop"),
    "wsmachine-trio": ("trio",),
    "trio-websocket": ("trio", "trio-websocket"),
}
REPORTED_VERSIONS = (
    "uvicorn",
    "httptools",
    "uvloop",
    "aiohttp",
    "picows",
    "aiofastnet",
    "trio",
    "trio-websocket",
)


# -- the servers (each runs in a child process) ---------------------------------------------


def _listening_socket() -> socket.socket:
    """A listening loopback socket on a free port; its port goes to the parent on stdout."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _announce(sock: socket.socket) -> None:
    print(sock.getsockname()[1], flush=True)


async def asgi_echo(scope: dict[str, Any], receive: Callable[..., Any], send: Any) -> None:
    """The minimal ASGI echo application of group (a)."""
    if scope["type"] != "websocket":
        return
    message = await receive()
    assert message["type"] == "websocket.connect", message
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        data = message.get("bytes")
        if data is not None:
            await send({"type": "websocket.send", "bytes": data})
        else:
            await send({"type": "websocket.send", "text": message["text"]})


def serve_uvicorn(name: str) -> None:
    import warnings

    import uvicorn

    # ws="websockets" warns that the legacy class is deprecated; it is measured on purpose.
    warnings.filterwarnings("ignore", message="The `websockets` implementation is deprecated")

    sock = _listening_socket()
    config = uvicorn.Config(
        asgi_echo,
        http="httptools",
        ws=UVICORN_WS[name],
        log_level="warning",
        lifespan="off",
        ws_ping_interval=None,
        ws_max_size=MAX_MESSAGE,
    )
    _announce(sock)
    uvicorn.Server(config).run(sockets=[sock])


def _run(main: Callable[[], Any], uvloop: bool) -> None:
    if uvloop:
        import uvloop as uvloop_module

        uvloop_module.run(main())
    else:
        asyncio.run(main())


def serve_wsmachine(uvloop: bool) -> None:
    from wsmachine.adapters.asyncio import WebSocket, serve

    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        sock = _listening_socket()
        async with serve(echo, sock=sock, max_message_size=MAX_MESSAGE) as server:
            _announce(sock)
            await server.serve_forever()

    _run(main, uvloop)


def serve_websockets(uvloop: bool) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        sock = _listening_socket()
        async with serve(
            echo, sock=sock, compression=None, max_size=MAX_MESSAGE, ping_interval=None
        ) as server:
            _announce(sock)
            await server.serve_forever()

    _run(main, uvloop)


def serve_aiohttp() -> None:
    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, autoping=True, heartbeat=None)
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                await ws.send_bytes(message.data)
            elif message.type == WSMsgType.TEXT:
                await ws.send_str(message.data)
        return ws

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/", echo)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = _listening_socket()
        await web.SockSite(runner, sock).start()
        _announce(sock)
        await asyncio.Event().wait()

    asyncio.run(main())


def serve_picows() -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    class Echo(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type in (WSMsgType.BINARY, WSMsgType.TEXT):
                transport.send(frame.msg_type, frame.get_payload_as_memoryview())
            elif frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()

    async def main() -> None:
        sock = _listening_socket()
        server = await ws_create_server(
            lambda request: Echo(), sock=sock, max_frame_size=MAX_MESSAGE
        )
        _announce(sock)
        await server.serve_forever()

    asyncio.run(main())


def serve_selector() -> None:
    from wsmachine.adapters.selector import Handler, Peer, Server

    class Echo(Handler):
        def on_message(self, peer: Peer, message: str | bytes) -> None:
            peer.send(message)

    sock = _listening_socket()
    with Server(Echo(), sock=sock, max_message_size=MAX_MESSAGE) as server:
        _announce(sock)
        server.serve_forever()


def serve_wsmachine_trio() -> None:
    import trio

    from wsmachine.adapters.trio import Server, WebSocket

    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            # The adapter binds the port itself (it takes no socket); port 0 picks a free one.
            server = Server(echo, "127.0.0.1", 0, max_message_size=MAX_MESSAGE)
            await nursery.start(server.run)
            print(server.port, flush=True)

    trio.run(main)


def serve_trio_websocket() -> None:
    import trio
    from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

    async def echo(request: WebSocketRequest) -> None:
        ws = await request.accept()
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.send_message(await ws.get_message())

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            # trio-websocket sends no keepalive pings (only WebSocketConnection.ping) and
            # negotiates no extension; its other settings are its defaults.
            server = await nursery.start(
                partial(serve_websocket, max_message_size=MAX_MESSAGE),
                echo,
                "127.0.0.1",
                0,
                None,
            )
            print(server.port, flush=True)

    trio.run(main)


#: The servers that are not recognised by their name's prefix.
SERVE: dict[str, Callable[[], None]] = {
    "wsmachine-selector": serve_selector,
    "wsmachine-trio": serve_wsmachine_trio,
    "trio-websocket": serve_trio_websocket,
}


def serve(name: str) -> None:
    """Run server ``name`` until terminated (in the child process)."""
    if name in SERVE:
        SERVE[name]()
    elif name in UVICORN_WS:
        serve_uvicorn(name)
    elif name.startswith("wsmachine"):
        serve_wsmachine(uvloop=name.endswith("+uvloop"))
    elif name.startswith("websockets"):
        serve_websockets(uvloop=name.endswith("+uvloop"))
    elif name == "aiohttp":
        serve_aiohttp()
    elif name == "picows":
        serve_picows()
    else:
        raise SystemExit(f"unknown server {name!r}")


# -- the client -----------------------------------------------------------------------------


class PipelinedClient:
    """The bare machine on a non-blocking socket, ``depth`` messages in flight."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = ClientConnection(f"127.0.0.1:{port}", "/", max_message_size=MAX_MESSAGE)
        self.sock.sendall(self.conn.data_to_send())
        events: Sequence[object] = []
        while not events:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection during the handshake")
            events = self.conn.receive_data(data)
        assert isinstance(events[0], Accepted), events
        self.sock.setblocking(False)
        self.poller = select.poll()
        self.poller.register(self.sock.fileno(), select.POLLIN)

    def round_trips(self, payload: bytes, seconds: float, depth: int) -> float:
        """Echo ``payload`` with ``depth`` in flight for ``seconds``; return round trips/s.

        When the time is up, sending stops and the outstanding echoes are drained (untimed),
        so the next run starts on a quiet connection. Raises when an echo differs from
        ``payload``, another event than an echo, Ping or Pong arrives, the server closes the
        connection, or nothing moves for ``STALL_SECONDS``.
        """
        conn, sock, poller = self.conn, self.sock, self.poller
        send_binary, data_to_send, receive_data = (
            conn.send_binary,
            conn.data_to_send,
            conn.receive_data,
        )
        fd, size = sock.fileno(), len(payload)
        out = bytearray()
        in_flight = done = 0
        sending = True
        start = time.perf_counter()
        end = start + seconds
        elapsed, counted = 0.0, 0
        idle_since: float | None = None
        while sending or in_flight or out:
            if sending:
                while in_flight < depth:
                    send_binary(payload)
                    in_flight += 1
                out += data_to_send()
            progressed = False
            if out:
                try:
                    sent = sock.send(out)
                except BlockingIOError:
                    sent = 0
                if sent:
                    del out[:sent]
                    progressed = True
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                data = None
            if data is not None:
                if not data:
                    raise ConnectionError("the server closed the connection")
                progressed = True
                for event in receive_data(data):
                    if isinstance(event, Binary):
                        if len(event.data) != size or event.data != payload:
                            raise AssertionError(f"wrong echo of {len(event.data)} bytes")
                        in_flight -= 1
                        done += 1
                    elif not isinstance(event, Ping | Pong):  # a Pong goes out with `out`
                        raise AssertionError(f"unexpected event: {event!r:.80}")
                out += data_to_send()
            if sending:
                now = time.perf_counter()
                if now >= end:
                    sending = False
                    elapsed, counted = now - start, done
            if progressed:
                idle_since = None
            else:
                # The clock is read only on this idle path, so the busy loop pays nothing.
                idle_since = idle_since or time.perf_counter()
                if time.perf_counter() - idle_since > STALL_SECONDS:
                    raise TimeoutError(
                        f"nothing moved for {STALL_SECONDS:.0f} s ({in_flight} echoes missing)"
                    )
                poller.modify(fd, select.POLLIN | (select.POLLOUT if out else 0))
                poller.poll(1000)
        return counted / elapsed

    def close(self) -> None:
        self.sock.setblocking(True)
        self.conn.close()
        with contextlib.suppress(OSError):
            self.sock.sendall(self.conn.data_to_send())
        self.sock.close()


# -- running the servers --------------------------------------------------------------------


def missing_requirement(name: str) -> str | None:
    """Why server ``name`` cannot run here (a package it needs is missing), or None."""
    for dist in REQUIRES[name]:
        try:
            version(dist)
        except PackageNotFoundError:
            return f"{dist} is not installed (pip install {dist})"
    return None


def measure(
    servers: list[str], seconds: float, repeat: int, depth: int, warmup: float = 0.2
) -> tuple[dict[str, dict[str, list[float]]], dict[str, str]]:
    """Samples[server][size label], servers interleaved; and why servers have none."""
    errors: dict[str, str] = {}
    processes: dict[str, subprocess.Popen[str]] = {}
    clients: dict[str, PipelinedClient] = {}
    samples: dict[str, dict[str, list[float]]] = {}
    try:
        for name in servers:
            try:
                process, port = start_server("benchmarks.asgi_echo", name)
                processes[name] = process
                clients[name] = PipelinedClient(port)
                clients[name].round_trips(b"w" * 1024, warmup, depth)
            except Exception as exc:
                errors[name] = f"ERROR: {type(exc).__name__}: {exc}"
        live = [n for n in servers if n not in errors]
        for label, size in SIZES.items():
            payload = os.urandom(size)
            for turn in range(repeat):
                shift = turn % len(live) if live else 0
                for name in live[shift:] + live[:shift]:
                    if name in errors:
                        continue
                    try:
                        rate = clients[name].round_trips(payload, seconds, depth)
                    except Exception as exc:
                        errors[name] = f"ERROR at {label}: {type(exc).__name__}: {exc}"
                        continue
                    samples.setdefault(name, {}).setdefault(label, []).append(rate)
        for name, client in clients.items():
            if name in errors:  # its connection may be in any state: just drop it
                client.sock.close()
            else:
                client.close()
    finally:
        for process in processes.values():
            stop_server(process)
    for name in errors:  # a failed server has no figures, even from the sizes before
        samples.pop(name, None)
    return samples, errors


# -- the report -----------------------------------------------------------------------------


def references(group: dict[str, Any]) -> list[str]:
    """The group's reference, then every other server a target is stated against."""
    found = [group["reference"]]
    for per_reference in group["targets"].values():
        found += [r for r in per_reference if r not in found]
    return found


def with_references(group: dict[str, Any], chosen: list[str]) -> list[str]:
    """``chosen`` and the references its servers' targets need, in the group's order."""
    needed = set(chosen)
    if needed:
        needed.add(group["reference"])
    for name in chosen:
        needed.update(group["targets"].get(name, {}))
    return [s for s in group["servers"] if s in needed]


def group_rows(
    group: dict[str, Any], samples: dict[str, dict[str, list[float]]], notes: dict[str, str]
) -> list[dict[str, Any]]:
    """One row per server and size: median, ratios to the references, the targets' checks."""

    def median(name: str, label: str) -> float | None:
        values = samples.get(name, {}).get(label)
        return statistics.median(values) if values else None

    rows = []
    for name in group["servers"]:
        for label in SIZES:
            mine = median(name, label)
            ratios: dict[str, float | None] = {}
            for reference in references(group):
                theirs = median(reference, label)
                ratios[reference] = mine / theirs if mine and theirs else None
            checks = []
            for reference, bounds in group["targets"].get(name, {}).items():
                if label in bounds:
                    ratio = ratios[reference]
                    checks.append(
                        {
                            "against": reference,
                            "bound": bounds[label],
                            "ratio": ratio,
                            "met": None if ratio is None else ratio >= bounds[label],
                        }
                    )
            verdicts = [c["met"] for c in checks]
            rows.append(
                {
                    "server": name,
                    "size": label,
                    "median": mine,
                    "samples": samples.get(name, {}).get(label, []),
                    "ratio": ratios[group["reference"]],
                    "ratios": ratios,
                    "checks": checks,
                    # False when a target failed; None when none, or one was not measured.
                    "met": False
                    if False in verdicts
                    else (None if not verdicts or None in verdicts else True),
                    "note": notes.get(name),
                }
            )
    return rows


def _check_cell(checks: list[dict[str, Any]]) -> str:
    return ", ".join(
        f">={c['bound']:.1f}x {c['against']} "
        + {True: "met", False: "NOT MET", None: "n/a"}[c["met"]]
        for c in checks
    )


def format_rows(group: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The group's table: the ratio to its reference, a column per other target reference."""
    others = [r for r in references(group) if r != group["reference"]]
    header = [
        "server",
        "size",
        "round trips/s",
        f"ratio to {group['reference']}",
        *(f"vs {r}" for r in others),
        "target",
    ]
    table = [header]
    for row in rows:
        if row["median"] is None:
            blanks = [""] * (len(header) - 4)
            table.append([row["server"], row["size"], "n/a", *blanks, (row["note"] or "")[:60]])
            continue
        ratios = [
            "-" if row["ratios"][r] is None else f"{row['ratios'][r]:.2f}x"
            for r in (group["reference"], *others)
        ]
        table.append(
            [
                row["server"],
                row["size"],
                f"{row['median']:,.0f}",
                *ratios,
                _check_cell(row["checks"]),
            ]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    left = (0, len(header) - 1)
    lines = []
    for index, texts in enumerate(table):
        cells = [
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(texts, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def status_of(note: str | None) -> str:
    """``ok``, ``SKIPPED`` (a package is missing) or ``FAILED``, from a server's note."""
    if note is None:
        return "ok"
    return "SKIPPED" if note.startswith("SKIPPED") else "FAILED"


def main(argv: list[str] | None = None) -> int:
    """Measure the selected groups, print their tables; 1 when a server failed."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.asgi_echo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timed run")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per size and server")
    parser.add_argument("--depth", type=int, default=64, help="messages kept in flight")
    parser.add_argument("--quick", action="store_true", help="0.3 s runs, once each")
    parser.add_argument(
        "--check", action="store_true", help="correctness only: 0.1 s runs, once each"
    )
    parser.add_argument("--only", help="comma-separated groups or servers (substring match)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    seconds, repeat, warmup = args.seconds, args.repeat, 0.2
    if args.quick:
        seconds, repeat = 0.3, 1
    if args.check:
        seconds, repeat, warmup = 0.1, 1, 0.05
    wanted = [w.strip() for w in (args.only or "").split(",") if w.strip()]

    env: dict[str, Any] = facts()
    for dist in REPORTED_VERSIONS:
        try:
            env["versions"][dist] = version(dist)
        except PackageNotFoundError:
            env["versions"][dist] = None
    # uvicorn's loop="auto" picks uvloop when it is installed.
    env["uvicorn_loop"] = "uvloop" if env["versions"]["uvloop"] else "asyncio"
    env.update(seconds=seconds, repeat=repeat, depth=args.depth, sizes=SIZES, check=args.check)
    print(
        f"Machine: {env['cpu']}, {env['usable_cpus']} usable of {env['logical_cpus']} CPUs; "
        f"{env['os']}; {env['python']}; {env['date']}"
    )
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v))
    print(f'uvicorn\'s event loop: {env["uvicorn_loop"]} (its loop="auto")')
    print(f"Load average at start: {env['load_average_start']}")
    print(
        f"{repeat} x {seconds} s per server and size, {args.depth} messages in flight, "
        "servers interleaved; medians"
        + (" (correctness check: the figures are not measurements)" if args.check else "")
        + "\n"
    )

    exit_status = 0
    report: dict[str, Any] = {"environment": env, "groups": {}}
    status: dict[str, str] = {}
    for key, group in GROUPS.items():
        chosen = [
            s for s in group["servers"] if not wanted or any(w in s or w == key for w in wanted)
        ]
        servers = with_references(group, chosen)
        if not servers:
            continue
        unavailable = {s: m for s in servers if (m := missing_requirement(s))}
        print(f"  measuring {key}: {', '.join(servers)} ...", file=sys.stderr, flush=True)
        runnable = [s for s in servers if s not in unavailable]
        samples, errors = measure(runnable, seconds, repeat, args.depth, warmup)
        if errors:
            exit_status = 1
        notes = {**{s: f"SKIPPED: {m}" for s, m in unavailable.items()}, **errors}
        shown = dict(group)
        shown["servers"] = servers  # the table lists only what ran
        rows = group_rows(shown, samples, notes)
        table = format_rows(shown, rows)
        print(group["title"])
        print(table)
        for name, note in notes.items():
            print(f"  {name}: {note}")
        print()
        status.update({s: status_of(notes.get(s)) for s in servers})
        report["groups"][key] = {
            "title": group["title"],
            "reference": group["reference"],
            "references": references(shown),
            "rows": rows,
            "notes": notes,
            "status": {s: status_of(notes.get(s)) for s in servers},
            "table": table,
        }
    failed = [s for s, v in status.items() if v == "FAILED"]
    skipped = [s for s, v in status.items() if v == "SKIPPED"]
    print(
        f"Correctness: {list(status.values()).count('ok')} servers echoed every message right"
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
        + (f"; SKIPPED (not installed): {', '.join(skipped)}" if skipped else "")
    )
    report["status"] = status
    report["ok"] = exit_status == 0
    env["load_average_end"] = load_average()
    print(f"Load average at end: {env['load_average_end']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
            handle.write("\n")
        print(f"results written to {args.json}")
    return exit_status


if __name__ == "__main__":
    sys.exit(main())
