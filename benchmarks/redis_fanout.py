"""The demo chat's fan-out through Redis, against one process: what the Redis hop costs.

Usage::

    python -m benchmarks.redis_fanout [--messages 500] [--repeat 3] [--quick]
                                      [--json benchmarks/results/redis_fanout.json]

Two set-ups of ``python -m wsmachine serve --no-deflate``, 400 plain-text clients each:

- **one process**: one server, 400 clients on it (no Redis);
- **two processes + Redis**: two servers with ``--redis`` on a redis-server of the run's own,
  200 clients on each.

The clients run in two load processes (200 connections each, on wsmachine's selector loop);
one connection of each sends ``--messages`` text messages at once. A round ends when every
client received every message: deliveries per second = 400 x messages sent / that time. The
servers' and redis-server's CPU time (``/proc``) gives the CPU cost per message sent and per
delivery. A latency phase sends one message at a time, idle otherwise, and times its arrival
at a client on the same process and, through Redis, on the other.

Everything shares the machine's cores (the report says how many): the load processes, the
servers and redis-server compete for them, as a small deployment's would.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .machine import facts, load_average

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 400
#: A chat line of 32 bytes.
LINE = "m{:07d} " + "x" * 23


# -- a load process: many connections on one selector loop -----------------------------------


def run_load(url: str, connections: int, expect: int, send: int) -> None:
    """Open ``connections`` plain-text clients; print ``ready``; on ``go`` from stdin, send
    ``send`` messages from the first; print ``done <monotonic>`` once each got ``expect``."""
    from wsmachine.adapters.selector import Handler, Loop, Peer

    loop = Loop()
    state = {"open": 0, "complete": 0}
    received: dict[Peer, int] = {}

    class Count(Handler):
        def on_open(self, peer: Peer) -> None:
            received[peer] = 0
            state["open"] += 1
            if state["open"] == connections:
                print("ready", flush=True)

        def on_message(self, peer: Peer, message: str | bytes) -> None:
            received[peer] += 1
            if received[peer] == expect:
                state["complete"] += 1
                if state["complete"] == connections:
                    print(f"done {time.monotonic()}", flush=True)

        def on_error(self, peer: Peer, error: BaseException) -> None:
            print(f"error {error}", flush=True)

    handler = Count()
    port = int(url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])
    peers = []
    for _ in range(connections):
        # Loop.connect's own sockets keep Nagle on: a sender of many small messages then
        # waits for delayed ACKs (tens of ms each), which would measure TCP, not the chat.
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peers.append(loop.connect(url, handler, sock=sock))

    def go() -> None:
        for i in range(send):
            peers[0].send(LINE.format(i))

    def reset() -> None:
        received.update(dict.fromkeys(received, 0))
        state["complete"] = 0

    def commands() -> None:
        for line in sys.stdin:
            if line.strip() == "go":
                loop.call_soon_threadsafe(go)
            elif line.strip() == "reset":
                loop.call_soon_threadsafe(reset)
        loop.shutdown()

    threading.Thread(target=commands, daemon=True).start()
    loop.run_forever()


class Load:
    """A load process (``run_load``) seen from the parent."""

    def __init__(self, url: str, connections: int, expect: int, send: int) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.redis_fanout",
                "--load",
                url,
                str(connections),
                str(expect),
                str(send),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def expect(self, word: str, timeout: float = 120.0) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith(word):
            raise RuntimeError(f"load process: expected {word!r}, got {line!r}")
        return line

    def tell(self, word: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(word + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


# -- processes of the set-ups -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU time of a process (or one of its threads) so far (Linux ``/proc``)."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_split(servers: list[int], redis_pid: int | None) -> dict[str, float]:
    """CPU seconds so far: the servers' loop (main) threads, their other threads (the
    relay's), and redis-server."""
    loops = sum(cpu_seconds(pid, pid) for pid in servers)
    total = sum(cpu_seconds(pid) for pid in servers)
    return {
        "loop threads": loops,
        "relay threads": total - loops,
        "redis-server": cpu_seconds(redis_pid) if redis_pid is not None else 0.0,
    }


def start_chat(*args: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "wsmachine", "serve", "--port", "0", "--no-deflate", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    for _ in range(20):
        line = process.stdout.readline()
        if "serving http://" in line:
            port = int(line.split("serving http://", 1)[1].split("/")[0].rsplit(":", 1)[1])
            # Keep reading its log so that it never blocks on a full pipe.
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process, port
    process.kill()
    raise RuntimeError(f"the chat server did not start: {line!r}")


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def start_redis(directory: Path) -> tuple[subprocess.Popen[str], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is needed: apt-get install redis-server")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start")


# -- measurements ------------------------------------------------------------------------------


def fan_out(
    urls: list[str], messages: int, repeat: int, servers: list[int], redis_pid: int | None = None
) -> dict[str, Any]:
    """Rounds of the fan-out; ``urls`` has one server URL per load process."""
    per_load = CLIENTS // len(urls) if len(urls) > 1 else CLIENTS // 2
    targets = urls if len(urls) > 1 else urls * 2
    sent = messages * len(targets)
    loads = [Load(url, per_load, sent, messages) for url in targets]
    try:
        for load in loads:
            load.expect("ready")
        time.sleep(1.0)  # presence and the log settle
        rounds = []
        for _ in range(repeat):
            split_before = cpu_split(servers, redis_pid)
            load_before = [cpu_seconds(load.process.pid) for load in loads]
            started = time.monotonic()
            for load in loads:
                load.tell("go")
            ended = max(float(load.expect("done").split()[1]) for load in loads)
            took = ended - started
            split = {
                name: seconds - split_before[name]
                for name, seconds in cpu_split(servers, redis_pid).items()
            }
            cpu = sum(split.values())
            load_cpu = sum(cpu_seconds(load.process.pid) for load in loads) - sum(load_before)
            deliveries = sent * CLIENTS
            rounds.append(
                {
                    "seconds": took,
                    "messages sent": sent,
                    "deliveries": deliveries,
                    "deliveries per second": deliveries / took,
                    "server CPU us per message sent": cpu / sent * 1e6,
                    "server CPU us per delivery": cpu / deliveries * 1e6,
                    "server CPU s": cpu,
                    "CPU us per message sent, by part": {
                        name: seconds / sent * 1e6 for name, seconds in split.items()
                    },
                    "load processes CPU s": load_cpu,
                }
            )
            for load in loads:
                load.tell("reset")
            time.sleep(0.5)
    finally:
        for load in loads:
            load.stop()
    best = statistics.median(r["deliveries per second"] for r in rounds)
    return {
        "rounds": rounds,
        "median deliveries per second": best,
        "median server CPU us per message sent": statistics.median(
            r["server CPU us per message sent"] for r in rounds
        ),
        "median CPU us per message sent, by part": {
            name: statistics.median(r["CPU us per message sent, by part"][name] for r in rounds)
            for name in ("loop threads", "relay threads", "redis-server")
        },
    }


def latency(sender_url: str, receiver_url: str, count: int) -> dict[str, float]:
    """Median and 90th percentile, in ms, of one message from a client on ``sender_url`` to
    one on ``receiver_url``, one message at a time."""
    from wsmachine.adapters.blocking import connect

    sender = connect(sender_url)
    receiver = connect(receiver_url)
    try:
        time.sleep(0.3)
        samples = []
        for i in range(count):
            started = time.perf_counter()
            sender.send(LINE.format(i))
            while receiver.recv(timeout=5) != LINE.format(i):
                pass
            samples.append((time.perf_counter() - started) * 1000)
            sender.recv(timeout=5)  # its own copy: every client gets every message
    finally:
        sender.close(timeout=2)
        receiver.close(timeout=2)
    samples.sort()
    return {"median ms": statistics.median(samples), "p90 ms": samples[int(len(samples) * 0.9)]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=500, help="per sender, per round")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pings", type=int, default=200, help="latency samples")
    parser.add_argument("--quick", action="store_true", help="200 messages, 1 round, 50 pings")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--load", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load:
        url, connections, expect, send = args.load
        run_load(url, int(connections), int(expect), int(send))
        return 0
    if args.quick:
        args.messages, args.repeat, args.pings = 200, 1, 50

    import tempfile

    results: dict[str, Any] = {
        "machine": facts(),
        "clients": CLIENTS,
        "messages per sender per round": args.messages,
        "cpus": os.cpu_count(),
        "load average before": load_average(),
    }
    with tempfile.TemporaryDirectory() as scratch:
        single, port = start_chat()
        try:
            url = f"ws://127.0.0.1:{port}/ws"
            results["one process"] = fan_out([url], args.messages, args.repeat, [single.pid])
            results["one process"]["latency"] = latency(url, url, args.pings)
        finally:
            stop(single)
        redis_server, redis_url = start_redis(Path(scratch))
        servers: list[subprocess.Popen[str]] = []
        try:
            ports = []
            for _ in range(2):
                process, port = start_chat("--redis", redis_url)
                servers.append(process)
                ports.append(port)
            urls = [f"ws://127.0.0.1:{port}/ws" for port in ports]
            results["two processes + Redis"] = fan_out(
                urls, args.messages, args.repeat, [p.pid for p in servers], redis_server.pid
            )
            results["two processes + Redis"]["latency"] = {
                "same process": latency(urls[0], urls[0], args.pings),
                "through Redis": latency(urls[0], urls[1], args.pings),
            }
        finally:
            for process in servers:
                stop(process)
            stop(redis_server)

    results["load average after"] = load_average()
    one, two = results["one process"], results["two processes + Redis"]
    hop = two["latency"]["through Redis"]["median ms"] - two["latency"]["same process"]["median ms"]
    results["Redis hop"] = {
        "added latency ms (median)": hop,
        "throughput ratio (two + Redis / one)": two["median deliveries per second"]
        / one["median deliveries per second"],
        "server CPU us per message sent, added": two["median server CPU us per message sent"]
        - one["median server CPU us per message sent"],
    }
    print(
        f"fan-out to {CLIENTS} plain-text clients, {os.cpu_count()} CPUs, "
        f"{args.messages} messages per sender, {args.repeat} round(s), medians"
    )
    for name in ("one process", "two processes + Redis"):
        row = results[name]
        parts = row["median CPU us per message sent, by part"]
        print(
            f"  {name:<22} {row['median deliveries per second']:>10,.0f} deliveries/s   "
            f"CPU per message sent: {row['median server CPU us per message sent']:6.0f} us = "
            f"loops {parts['loop threads']:.0f} + relay threads {parts['relay threads']:.0f}"
            f" + redis-server {parts['redis-server']:.0f}"
        )
    print(
        f"  latency, one process:         {one['latency']['median ms']:.3f} ms median, "
        f"{one['latency']['p90 ms']:.3f} ms p90"
    )
    for where in ("same process", "through Redis"):
        row = two["latency"][where]
        print(
            f"  latency, two + Redis, {where + ':':<14} {row['median ms']:.3f} ms median, "
            f"{row['p90 ms']:.3f} ms p90"
        )
    summary = results["Redis hop"]
    print(
        f"  the Redis hop: +{summary['added latency ms (median)']:.3f} ms per message, "
        f"+{summary['server CPU us per message sent, added']:.1f} us CPU per message sent "
        f"(servers and redis-server), throughput x"
        f"{summary['throughput ratio (two + Redis / one)']:.2f}"
    )
    print(
        f"  load average before / after: {results['load average before']} / "
        f"{results['load average after']} (other work on the machine shares its CPUs)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
