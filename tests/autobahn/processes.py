"""Our Autobahn peers in processes of their own, as a user deploys them.

``python -m tests.autobahn.processes server ADAPTER [--deflate]`` starts the adapter's echo
server (:data:`.common.StartEchoServer`) on 127.0.0.1 and a port the OS picks, prints
``URL <url>``, and serves until its stdin is closed; it then stops the server and prints
``ERRORS <json list>`` (what went wrong, empty when it stopped cleanly).

``python -m tests.autobahn.processes client ADAPTER URL --workers N --seconds S
--case-timeout T [--deflate]`` runs the case client (:class:`.common.CaseClient`) against the
fuzzing server at ``URL`` until it is done, ``S`` seconds have passed or its stdin is closed,
and prints ``STATS <json>`` (its :class:`.common.ClientStats`).

Why processes: kosoku's cases are Python code that holds the GIL. With our peers in the same
process as kosoku, a peer could wait long enough behind them that a case with a 0.5 s budget
(6.*) saw no echo in time: a failure of the harness, not of the adapter.
:func:`start_server` and :func:`run_client` are what :mod:`.run` uses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from wsmachine.extensions import PerMessageDeflate

from .adapters import ADAPTERS, load
from .common import CaseClient, ClientStats, EchoServer, PeerSettings

__all__ = ["client_settings", "main", "run_client", "server_settings", "start_server"]

#: Seconds the child gives its server to stop (the parent waits a little longer for it).
CHILD_STOP_SECONDS = 10.0
#: Seconds the parent waits for a child to exit once it was told to stop.
EXIT_SECONDS = 30.0


def server_settings(*, deflate: bool) -> PeerSettings:
    """The echo server's settings: permessage-deflate accepted for the 12.*/13.* cases."""
    return PeerSettings(extensions=(PerMessageDeflate(),) if deflate else ())


def client_settings(*, deflate: bool) -> PeerSettings:
    """The case client's settings: 13.2/13.5/13.6 need ``client_no_context_takeover`` in the
    offer."""
    offer = PerMessageDeflate(client_no_context_takeover=True)
    return PeerSettings(extensions=(offer,) if deflate else ())


def _spawn(arguments: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", __name__, *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _finish(child: subprocess.Popen[str], tag: str, timeout: float) -> tuple[str | None, str]:
    """Close the child's stdin (its signal to stop), wait at most ``timeout`` seconds, and
    return the JSON after its ``tag`` line (``None`` if there was none) and what went wrong."""
    try:
        out, _ = child.communicate(timeout=timeout)  # closes stdin first
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        return None, f"the {tag} process did not exit within {timeout:.0f} s: killed"
    for line in out.splitlines():
        if line.startswith(f"{tag} "):
            problem = (
                f"the {tag} process exited with {child.returncode}" if child.returncode else ""
            )
            return line.split(" ", 1)[1], problem
    return None, f"the {tag} process printed no {tag} line (exit {child.returncode})"


def start_server(adapter: str, *, deflate: bool, timeout: float) -> EchoServer:
    """Start ``adapter``'s echo server in a child process; blocks until it listens, at most
    ``timeout`` seconds (then the child is killed).

    :raises RuntimeError: the child exited, did not listen in time, or printed something
        else than its URL.
    """
    child = _spawn(["server", adapter] + (["--deflate"] if deflate else []))
    assert child.stdout is not None
    killer = threading.Timer(timeout, child.kill)
    killer.start()
    try:
        first = child.stdout.readline()  # "" once the timer killed the child
    finally:
        killer.cancel()
    if not first.startswith("URL "):
        child.kill()
        child.wait()
        raise RuntimeError(f"the echo server process printed {first!r}, exit {child.returncode}")

    def stop(timeout: float) -> list[str]:
        found, problem = _finish(child, "ERRORS", max(timeout, CHILD_STOP_SECONDS + 2.0))
        errors: list[str] = json.loads(found) if found is not None else []
        return errors + ([problem] if problem else [])

    return EchoServer(first.split(" ", 1)[1].strip(), stop)


def run_client(
    adapter: str,
    url: str,
    *,
    deflate: bool,
    workers: int,
    seconds: float,
    case_timeout: float,
    stop: threading.Event,
) -> ClientStats:
    """Run the case client in a child process against the fuzzing server at ``url``; blocks
    until it is done or ``stop`` is set (then it is told to stop)."""
    child = _spawn(
        ["client", adapter, url, "--workers", str(workers), "--seconds", str(seconds)]
        + ["--case-timeout", str(case_timeout)]
        + (["--deflate"] if deflate else [])
    )
    end = time.monotonic() + seconds + case_timeout
    while child.poll() is None and not stop.is_set() and time.monotonic() < end:
        stop.wait(0.1)
    found, problem = _finish(child, "STATS", EXIT_SECONDS)
    stats = ClientStats(**json.loads(found)) if found is not None else ClientStats()
    if problem:
        stats.errors.append(problem)
    return stats


def _serve(adapter: str, deflate: bool) -> None:
    server = load(adapter).start_echo_server(server_settings(deflate=deflate))
    print(f"URL {server.url}", flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or dies)
    print(f"ERRORS {json.dumps(server.stop(CHILD_STOP_SECONDS))}", flush=True)


def _run_cases(adapter: str, url: str, args: argparse.Namespace) -> None:
    client = CaseClient(
        load(adapter).session,
        url,
        client_settings(deflate=args.deflate),
        case_timeout=args.case_timeout,
    )

    def watch_stdin() -> None:
        sys.stdin.read()
        client.stop.set()

    threading.Thread(target=watch_stdin, name="autobahn-stdin", daemon=True).start()
    stats = client.run_all(deadline=time.monotonic() + args.seconds, workers=args.workers)
    print(f"STATS {json.dumps(dataclasses.asdict(stats))}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one peer; see the module's docstring."""
    parser = argparse.ArgumentParser(prog="python -m tests.autobahn.processes")
    roles = parser.add_subparsers(dest="role", required=True)
    server = roles.add_parser("server")
    server.add_argument("adapter", choices=ADAPTERS)
    server.add_argument("--deflate", action="store_true")
    client = roles.add_parser("client")
    client.add_argument("adapter", choices=ADAPTERS)
    client.add_argument("url")
    client.add_argument("--deflate", action="store_true")
    client.add_argument("--workers", type=int, default=1)
    client.add_argument("--seconds", type=float, required=True)
    client.add_argument("--case-timeout", type=float, required=True)
    args = parser.parse_args(argv)
    if args.role == "server":
        _serve(args.adapter, args.deflate)
    else:
        _run_cases(args.adapter, args.url, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
