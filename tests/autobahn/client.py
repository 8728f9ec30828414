"""An Autobahn case client on :class:`wsmachine.ClientConnection`, over blocking sockets.

It drives a fuzzing server (kosoku's) through the Autobahn protocol: ``GET /getCaseCount``
(one Text message), then ``/runCase?case=N&agent=AGENT`` for each case, echoing every message
until the server closes, then ``/updateReports?agent=AGENT``.

Run it alone with ``python -m tests.autobahn.client --port 9001``.
"""

from __future__ import annotations

import argparse
import itertools
import socket
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field

from wsmachine import Binary, ClientConnection, Connection, Rejected, Text
from wsmachine.events import Event
from wsmachine.extensions import Extension

from .echo_server import DEFAULT_MAX_MESSAGE_SIZE, run_connection

__all__ = ["AGENT", "CaseClient", "ClientStats"]

#: The agent name reported to the fuzzing server.
AGENT = "wsmachine"


@dataclass
class ClientStats:
    """What the client saw: cases run, sessions by how they ended, unexpected exceptions."""

    case_count: int = 0
    cases_run: int = 0
    endings: dict[str, int] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class CaseClient:
    """Runs the Autobahn case protocol against ``ws://host:port``.

    :param case_timeout: the longest one case (one connection) may take, in seconds.
    :param close_timeout: how long to wait for the server's part of a closing handshake.
    :param extensions: extensions to offer (e.g. permessage-deflate).
    """

    def __init__(
        self,
        host: str,
        port: int,
        agent: str = AGENT,
        *,
        case_timeout: float = 120.0,
        close_timeout: float = 5.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        extensions: Sequence[Extension] = (),
    ) -> None:
        self.host = host
        self.port = port
        self.agent = agent
        self.extensions = tuple(extensions)
        self.case_timeout = case_timeout
        self.close_timeout = close_timeout
        self.max_message_size = max_message_size
        self.stats = ClientStats()
        #: Set to end the run early; open sessions notice it within half a second.
        self.stop = threading.Event()
        self._run_deadline = float("inf")  # set by run_all()
        self._lock = threading.Lock()

    def _session(
        self, path: str, received: list[str] | None = None, *, timeout: float | None = None
    ) -> str:
        """Open one WebSocket connection to ``path`` and echo until it ends.

        With ``received``, Text messages are collected there instead of echoed. The session
        ends after ``timeout`` seconds (default: :attr:`case_timeout`, cut to the run's
        deadline).
        """
        if timeout is None:
            deadline = min(time.monotonic() + self.case_timeout, self._run_deadline)
        else:
            deadline = time.monotonic() + timeout

        def handle(conn: Connection, events: Sequence[Event]) -> None:
            for event in events:
                if isinstance(event, Rejected):
                    with self._lock:
                        self.stats.rejected.append(f"{path}: {event.status_code} {event.error}")
                elif isinstance(event, Text) and received is not None:
                    received.append(event.data)
                elif received is not None or not conn.can_send:
                    continue  # collecting only, or the server's Close came in the same read
                elif isinstance(event, Text):
                    conn.send_text(event.data)
                elif isinstance(event, Binary):
                    conn.send_binary(event.data)

        conn = ClientConnection(
            f"{self.host}:{self.port}",
            path,
            extensions=self.extensions,
            max_message_size=self.max_message_size,
        )
        with socket.create_connection((self.host, self.port), timeout=self.case_timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reason = run_connection(
                sock,
                conn,
                handle,
                deadline=deadline,
                close_timeout=self.close_timeout,
                stop=self.stop,
            )
        with self._lock:
            self.stats.endings[reason] = self.stats.endings.get(reason, 0) + 1
        return reason

    def get_case_count(self) -> int:
        """Ask the server how many cases it serves."""
        received: list[str] = []
        self._session("/getCaseCount", received)
        if not received:
            raise RuntimeError("/getCaseCount sent no Text message")
        count = int(received[0])
        self.stats.case_count = count
        return count

    def run_case(self, number: int) -> str:
        """Run case ``number`` (1-based), echoing everything; returns how the session ended."""
        reason = self._session(f"/runCase?case={number}&agent={self.agent}")
        with self._lock:
            self.stats.cases_run += 1
        return reason

    def update_reports(self) -> None:
        """Tell the server that the run is over, so it produces its results."""
        # Even after the run's deadline: this is what makes the server report.
        self._session(f"/updateReports?agent={self.agent}", timeout=min(self.case_timeout, 30.0))

    def run_all(self, *, deadline: float, workers: int = 1) -> ClientStats:
        """Run every case (``workers`` at a time) and then update the reports.

        Stops at ``deadline`` (a ``time.monotonic()`` value; cases still open then are cut)
        or when :attr:`stop` is set; reports are updated either way unless stopped.
        Exceptions are recorded in :attr:`stats` rather than raised.
        """
        self._run_deadline = deadline
        try:
            count = self.get_case_count()
            numbers = iter(range(1, count + 1))
            take = threading.Lock()

            def worker() -> None:
                for _ in range(count):
                    if time.monotonic() >= deadline or self.stop.is_set():
                        return
                    with take:
                        number = next(numbers, None)
                    if number is None:
                        return
                    try:
                        self.run_case(number)
                    except Exception:  # one broken case must not end the run
                        with self._lock:
                            self.stats.errors.append(f"case {number}:\n{traceback.format_exc()}")

            threads = [
                threading.Thread(target=worker, name=f"autobahn-client-{i}", daemon=True)
                for i in range(max(1, workers))
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(max(deadline - time.monotonic(), 0.0) + 5.0)
            if not self.stop.is_set():
                self.update_reports()
        except Exception:  # reported by the caller
            with self._lock:
                self.stats.errors.append(traceback.format_exc())
        return self.stats


def main() -> None:
    """Run all cases of a fuzzing server that is already listening."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--agent", default=AGENT)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800.0, help="for the whole run")
    args = parser.parse_args()
    client = CaseClient(args.host, args.port, args.agent)
    stats = client.run_all(deadline=time.monotonic() + args.timeout, workers=args.workers)
    print(f"ran {stats.cases_run}/{stats.case_count} cases; endings {stats.endings}")
    for error in itertools.islice(stats.errors, 10):
        print(error)


if __name__ == "__main__":
    main()
