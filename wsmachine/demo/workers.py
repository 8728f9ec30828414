"""Several server processes on one port (``python -m wsmachine serve --workers N``).

Each worker is a forked process with its own selector loop and its own listening socket,
bound with ``SO_REUSEPORT``: the kernel spreads new connections across them. Where the
option does not exist, the workers share one listening socket made before the fork. The
parent keeps the port bound (not listening) so that ``--port 0`` picks one port for all,
forwards SIGINT and SIGTERM to the workers, and waits for them.

Workers share no memory: the chat reaches across them only through a relay
(:mod:`wsmachine.demo.relay`), which is why the command line asks for ``--redis``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable

__all__ = ["REUSE_PORT", "listening_socket", "run_workers"]

#: Whether this system can give each worker a socket of its own on the same port.
REUSE_PORT = hasattr(socket, "SO_REUSEPORT")


def listening_socket(
    host: str, port: int, *, reuse_port: bool, listen: bool = True
) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (``SO_REUSEPORT`` if asked), listening if
    asked.

    :raises OSError: the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def run_workers(count: int, host: str, port: int, work: Callable[[int, socket.socket], int]) -> int:
    """Run ``work(number, listening_socket)`` in ``count`` forked processes (numbered from 1)
    on one port; return 0 once all exited with 0, else 1.

    :raises OSError: the address cannot be bound.
    """
    if count < 1:
        raise ValueError(f"at least one worker is needed, not {count}")
    if not hasattr(os, "fork"):
        raise OSError("--workers needs os.fork(), which this system lacks")
    # Bound, not listening: it holds the port (and fixes it when port is 0) without taking
    # a share of the connections.
    holder = listening_socket(host, port, reuse_port=REUSE_PORT, listen=not REUSE_PORT)
    port = holder.getsockname()[1]
    children: list[int] = []
    try:
        for number in range(1, count + 1):
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the worker
                status = 1
                try:
                    if REUSE_PORT:
                        holder.close()
                        sock = listening_socket(host, port, reuse_port=True)
                    else:
                        sock = holder
                    status = work(number, sock)
                except BaseException as exc:  # a worker reports and exits; never returns here
                    print(f"worker {number}: {type(exc).__name__}: {exc}", file=sys.stderr)
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(status)
            children.append(pid)
    except BaseException:
        _signal_all(children, signal.SIGTERM)
        _wait_all(children)
        holder.close()
        raise

    def forward(signum: int, frame: object) -> None:
        _signal_all(children, signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        statuses = _wait_all(children)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        holder.close()
    return 0 if all(status == 0 for status in statuses) else 1


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, sig)


def _wait_all(pids: list[int]) -> list[int]:
    statuses = []
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        statuses.append(os.waitstatus_to_exitcode(status))
    return statuses
