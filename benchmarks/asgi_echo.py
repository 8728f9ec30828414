"""Pipelined loopback echo: uvicorn's WebSocket classes, and asyncio WebSocket servers.

Usage::

    python -m benchmarks.asgi_echo [--seconds 1.0] [--repeat 3] [--depth 64] [--quick]
                                   [--only NAME[,NAME...]] [--json FILE]

Two groups of servers, each server in its own process on a free loopback port:

(a) uvicorn (``http="httptools"``, ``lifespan="off"``, ``log_level="warning"``, its default
    event loop: uvloop when installed) running one minimal ASGI echo application, with each
    ``ws=`` class: wsmachine's ``WSMachineProtocol``, ``websockets-sansio`` (uvicorn's
    default), ``websockets`` (legacy) and ``wsproto``. Reference: ``websockets-sansio``.
(b) plain asyncio servers: wsmachine's adapter (``wsmachine.adapters.asyncio.serve``),
    websockets' (``websockets.asyncio.server.serve``), aiohttp's and picows' (each when
    installed), and wsmachine's and websockets' again on uvloop (when installed).
    Reference: websockets on the standard loop.

One client, the same for every server and run in this process: the bare wsmachine
``ClientConnection`` on a non-blocking socket with ``TCP_NODELAY``, keeping ``--depth``
binary messages in flight: it sends until ``depth`` are outstanding, reads whatever echoes
arrive, sends again. The number is the round trips completed during a timed run, divided by
its length. Every echo is compared with the message. Sizes 16 B, 1 KiB and 64 KiB; every
measurement is repeated ``--repeat`` times, servers interleaved (the order rotates); the
tables show medians and the ratio to the group's reference, next to the issue's targets.
Keepalive pings are off everywhere and no compression is negotiated (the client offers none).
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
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from wsmachine import Accepted, Binary, ClientConnection, Ping, Pong

from .machine import facts, load_average, start_server, stop_server

SIZES = {"16 B": 16, "1 KiB": 1024, "64 KiB": 64 * 1024}
ROOT = Path(__file__).resolve().parent.parent
MAX_MESSAGE = 1 << 20

#: uvicorn's ``ws=`` for each server of group (a).
UVICORN_WS = {
    "uvicorn+wsmachine": "wsmachine.integrations.uvicorn:WSMachineProtocol",
    "uvicorn+websockets-sansio": "websockets-sansio",
    "uvicorn+websockets": "websockets",
    "uvicorn+wsproto": "wsproto",
}
GROUPS: dict[str, dict[str, Any]] = {
    "uvicorn": {
        "title": "(a) uvicorn + minimal ASGI echo app, by ws= class",
        "servers": list(UVICORN_WS),
        "reference": "uvicorn+websockets-sansio",
        # server -> {size label: minimum ratio to the reference}
        "targets": {"uvicorn+wsmachine": {"16 B": 1.5, "1 KiB": 1.5, "64 KiB": 1.2}},
    },
    "asyncio": {
        "title": "(b) asyncio servers",
        "servers": [
            "wsmachine",
            "websockets",
            "aiohttp",
            "picows",
            "wsmachine+uvloop",
            "websockets+uvloop",
        ],
        "reference": "websockets",
        "targets": {"wsmachine": {"16 B": 2.0, "1 KiB": 2.0}},
    },
}
#: What each server needs installed, besides wsmachine.
REQUIRES = {
    **{name: ("uvicorn", "httptools") for name in UVICORN_WS},
    "uvicorn+websockets-sansio": ("uvicorn", "httptools", "websockets"),
    "uvicorn+websockets": ("uvicorn", "httptools", "websockets"),
    "uvicorn+wsproto": ("uvicorn", "httptools", "wsproto"),
    "wsmachine": (),
    "websockets": ("websockets",),
    "aiohttp": ("aiohttp",),
    "picows": ("picows",),
    "wsmachine+uvloop": ("uvloop",),
    "websockets+uvloop": ("websockets", "uvloop"),
}
REPORTED_VERSIONS = ("uvicorn", "httptools", "uvloop", "aiohttp", "picows", "aiofastnet")


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

    class Echo(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type in (WSMsgType.BINARY, WSMsgType.TEXT):
                transport.send(frame.msg_type, frame.get_payload_as_memoryview())
            elif frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()

    async def main() -> None:
        sock = _listening_socket()
        server = await ws_create_server(lambda request: Echo(), sock=sock)
        _announce(sock)
        await server.serve_forever()

    asyncio.run(main())


def serve(name: str) -> None:
    """Run server ``name`` until terminated (in the child process)."""
    if name in UVICORN_WS:
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
        events: list[object] = []
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
        so the next run starts on a quiet connection.
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
            if not progressed:
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
    for dist in REQUIRES[name]:
        try:
            version(dist)
        except PackageNotFoundError:
            return f"{dist} is not installed (pip install {dist})"
    return None


def measure(
    servers: list[str], seconds: float, repeat: int, depth: int
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
                clients[name].round_trips(b"w" * 1024, 0.2, depth)  # warm up
            except Exception as exc:
                errors[name] = f"ERROR: {type(exc).__name__}: {exc}"
                clients.pop(name, None)
        live = [n for n in servers if n in clients]
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
        for client in clients.values():
            client.close()
    finally:
        for process in processes.values():
            stop_server(process)
    return samples, errors


# -- the report -----------------------------------------------------------------------------


def group_rows(
    group: dict[str, Any], samples: dict[str, dict[str, list[float]]], unavailable: dict[str, str]
) -> list[dict[str, Any]]:
    reference = group["reference"]
    rows = []
    for name in group["servers"]:
        for label in SIZES:
            values = samples.get(name, {}).get(label)
            ref_values = samples.get(reference, {}).get(label)
            median = statistics.median(values) if values else None
            ref = statistics.median(ref_values) if ref_values else None
            ratio = median / ref if median and ref else None
            target = group["targets"].get(name, {}).get(label)
            rows.append(
                {
                    "server": name,
                    "size": label,
                    "median": median,
                    "samples": values or [],
                    "ratio": ratio,
                    "target": target,
                    "met": None if target is None or ratio is None else ratio >= target,
                    "note": unavailable.get(name),
                }
            )
    return rows


def format_rows(group: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    header = ["server", "size", "round trips/s", f"ratio to {group['reference']}", "target"]
    table = [header]
    for row in rows:
        if row["median"] is None:
            table.append([row["server"], row["size"], "n/a", "", (row["note"] or "")[:60]])
            continue
        target = ""
        if row["target"] is not None:
            target = f">= {row['target']:.1f}x: " + ("met" if row["met"] else "NOT MET")
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        table.append([row["server"], row["size"], f"{row['median']:,.0f}", ratio, target])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for index, row in enumerate(table):
        cells = [
            c.ljust(w) if i in (0, 4) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.asgi_echo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timed run")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per size and server")
    parser.add_argument("--depth", type=int, default=64, help="messages kept in flight")
    parser.add_argument("--quick", action="store_true", help="0.3 s runs, once each")
    parser.add_argument("--only", help="comma-separated groups or servers (substring match)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    seconds, repeat = (0.3, 1) if args.quick else (args.seconds, args.repeat)
    wanted = [w.strip() for w in (args.only or "").split(",") if w.strip()]

    env: dict[str, Any] = facts()
    for dist in REPORTED_VERSIONS:
        try:
            env["versions"][dist] = version(dist)
        except PackageNotFoundError:
            env["versions"][dist] = None
    # uvicorn's loop="auto" picks uvloop when it is installed.
    env["uvicorn_loop"] = "uvloop" if env["versions"]["uvloop"] else "asyncio"
    env.update(seconds=seconds, repeat=repeat, depth=args.depth, sizes=SIZES)
    print(
        f"Machine: {env['cpu']}, {env['usable_cpus']} usable of {env['logical_cpus']} CPUs; "
        f"{env['os']}; {env['python']}; {env['date']}"
    )
    print("Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v))
    print(f'uvicorn\'s event loop: {env["uvicorn_loop"]} (its loop="auto")')
    print(f"Load average at start: {env['load_average_start']}")
    print(
        f"{repeat} x {seconds} s per server and size, {args.depth} messages in flight, "
        "servers interleaved; medians\n"
    )

    exit_status = 0
    report: dict[str, Any] = {"environment": env, "groups": {}}
    for key, group in GROUPS.items():
        servers = [
            s for s in group["servers"] if not wanted or any(w in s or w == key for w in wanted)
        ]
        if not servers:
            continue
        unavailable = {s: m for s in servers if (m := missing_requirement(s))}
        print(f"  measuring {key}: {', '.join(servers)} ...", file=sys.stderr, flush=True)
        runnable = [s for s in servers if s not in unavailable]
        samples, errors = measure(runnable, seconds, repeat, args.depth)
        if errors:
            exit_status = 1
        notes = {**{s: f"SKIPPED: {m}" for s, m in unavailable.items()}, **errors}
        shown = {**group, "servers": servers}
        rows = group_rows(shown, samples, notes)
        table = format_rows(shown, rows)
        print(group["title"])
        print(table)
        for name, note in notes.items():
            print(f"  {name}: {note}")
        print()
        report["groups"][key] = {
            "title": group["title"],
            "reference": group["reference"],
            "rows": rows,
            "notes": notes,
            "table": table,
        }
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
