"""What the per-adapter peers share: their settings, the shape of an echo server and of a
client session, and the case client that drives a fuzzing server through any adapter.

An adapter module (:mod:`.peer_selector`, :mod:`.peer_blocking`, :mod:`.peer_trio`) provides
``PEERS``, two functions written with that adapter's public API only: its echo server (a
:data:`StartEchoServer`) and one client connection (a :class:`Session`). Everything around
them (which URLs to open in which order, workers, deadlines, statistics) is here, once.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from wsmachine.extensions import Extension

__all__ = [
    "AGENT",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "POLL_SECONDS",
    "AdapterPeers",
    "CaseClient",
    "ClientStats",
    "EchoServer",
    "Limits",
    "PeerSettings",
    "Session",
    "SessionResult",
    "StartEchoServer",
    "in_thread",
]

#: The agent name reported to the fuzzing server.
AGENT = "wsmachine"
#: Autobahn 9.* sends messages of up to 16 MiB; leave room above that.
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
#: How often a waiting session wakes to look at its deadline and the stop flag.
POLL_SECONDS = 0.5
#: The longest the ``/updateReports`` connection may take.
UPDATE_REPORTS_SECONDS = 20.0


@dataclass(frozen=True)
class PeerSettings:
    """The settings of our side, passed to every adapter as its own keyword arguments.

    :param max_message_size: largest incoming message (and, by the adapters' default,
        frame); 9.* needs 16 MiB, and 9.3/9.4's 65,536 fragments fit the machine's default
        fragment budget for this size.
    :param extensions: offered by a client, accepted by a server (permessage-deflate).
    :param open_timeout: seconds for the opening handshake.
    :param close_timeout: seconds for the closing handshake.
    """

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    extensions: tuple[Extension, ...] = ()
    open_timeout: float = 30.0
    close_timeout: float = 5.0

    def options(self) -> dict[str, Any]:
        """The keyword arguments every adapter takes, in both roles."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class EchoServer:
    """A running echo server: where it listens and how to stop it.

    ``stop(timeout)`` closes the connections, waits at most about ``timeout`` seconds for
    the server's threads and returns what went wrong (empty when it stopped cleanly).
    """

    url: str
    stop: Callable[[float], list[str]]


#: Starts an echo server on 127.0.0.1, a port chosen by the OS, with these settings.
StartEchoServer = Callable[[PeerSettings], EchoServer]


@dataclass(frozen=True)
class Limits:
    """When a session must give up: a ``time.monotonic()`` deadline, or ``stop`` set."""

    deadline: float
    stop: threading.Event

    def left(self) -> float:
        """Seconds left; 0 once the deadline passed or ``stop`` is set."""
        if self.stop.is_set():
            return 0.0
        return max(self.deadline - time.monotonic(), 0.0)


@dataclass
class SessionResult:
    """How a session ended (``"closed"`` or ``"deadline"``) and, when it was not echoing,
    the messages it received."""

    ending: str
    received: list[str | bytes] = field(default_factory=list)


class Session(Protocol):
    """One client connection through an adapter's public API.

    Opens ``url``, then either echoes every message (``echo=True``) or keeps them (for
    ``/getCaseCount``), until the connection is closed or ``limits`` run out.

    :raises Exception: the connection could not be opened (refused upgrade, TCP error).
    """

    def __call__(
        self, url: str, settings: PeerSettings, *, echo: bool, limits: Limits
    ) -> SessionResult: ...


@dataclass(frozen=True)
class AdapterPeers:
    """What an adapter module provides: its echo server and its client session."""

    start_echo_server: StartEchoServer
    session: Session


class _ThreadedServer(Protocol):
    """The selector and blocking servers: ``start()`` runs them in a thread of their own."""

    @property
    def port(self) -> int: ...
    def start(self) -> threading.Thread: ...
    def stop(self, timeout: float | None = None) -> None: ...


def in_thread(server: _ThreadedServer) -> EchoServer:
    """Start ``server`` in its own thread; its :class:`EchoServer` stops it and reports a
    thread that outlived the stop."""
    thread = server.start()

    def stop(timeout: float) -> list[str]:
        server.stop(timeout)
        return [f"thread {thread.name} still runs after stop()"] if thread.is_alive() else []

    return EchoServer(f"ws://127.0.0.1:{server.port}", stop)


@dataclass
class ClientStats:
    """What the case client saw: cases run, sessions by how they ended, exceptions."""

    case_count: int = 0
    cases_run: int = 0
    endings: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class CaseClient:
    """Runs the Autobahn case protocol against ``base_url`` (a fuzzing server) through one
    adapter's :class:`Session`: ``/getCaseCount``, then ``/runCase?case=N&agent=AGENT`` for
    each case (``workers`` at a time, each echoing until the server closes), then
    ``/updateReports?agent=AGENT``.

    :param case_timeout: the longest one case (one connection) may take, in seconds.
    """

    def __init__(
        self,
        session: Session,
        base_url: str,
        settings: PeerSettings,
        *,
        agent: str = AGENT,
        case_timeout: float = 120.0,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.settings = settings
        self.agent = agent
        self.case_timeout = case_timeout
        self.stats = ClientStats()
        #: Set to end the run early; open sessions notice it within :data:`POLL_SECONDS`.
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def _open(
        self, path: str, *, echo: bool, deadline: float, stop: threading.Event | None = None
    ) -> SessionResult:
        stop = self.stop if stop is None else stop
        limits = Limits(min(deadline, time.monotonic() + self.case_timeout), stop)
        result = self.session(f"{self.base_url}{path}", self.settings, echo=echo, limits=limits)
        with self._lock:
            self.stats.endings[result.ending] = self.stats.endings.get(result.ending, 0) + 1
        return result

    def _run_cases(self, count: int, workers: int, deadline: float) -> None:
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
                    self._open(
                        f"/runCase?case={number}&agent={self.agent}", echo=True, deadline=deadline
                    )
                except Exception:  # one broken case must not end the run
                    with self._lock:
                        self.stats.errors.append(f"case {number}:\n{traceback.format_exc()}")
                with self._lock:
                    self.stats.cases_run += 1

        threads = [
            threading.Thread(target=worker, name=f"autobahn-case-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0) + self.case_timeout)
        if any(thread.is_alive() for thread in threads):
            with self._lock:
                self.stats.errors.append("a case worker did not stop")

    def run_all(self, *, deadline: float, workers: int = 1) -> ClientStats:
        """Run every case and then update the reports (unless :attr:`stop` was set).

        Stops starting cases at ``deadline`` (a ``time.monotonic()`` value). Exceptions
        are recorded in :attr:`stats` rather than raised.
        """
        try:
            first = self._open("/getCaseCount", echo=False, deadline=deadline).received
            if not first or not isinstance(first[0], str):
                raise RuntimeError(f"/getCaseCount sent no Text message: {first[:1]!r}")
            self.stats.case_count = int(first[0])
            self._run_cases(self.stats.case_count, workers, deadline)
            if not self.stop.is_set():
                # Even after the deadline: this is what makes the server report. Not cut by
                # :attr:`stop`, which is set as soon as the server reported, maybe before
                # this connection is over.
                self._open(
                    f"/updateReports?agent={self.agent}",
                    echo=False,
                    deadline=time.monotonic() + UPDATE_REPORTS_SECONDS,
                    stop=threading.Event(),
                )
        except Exception:  # reported by the caller
            with self._lock:
                self.stats.errors.append(traceback.format_exc())
        return self.stats
