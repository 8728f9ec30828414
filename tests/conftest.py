"""Shared test setup: the Hypothesis profiles and connections brought to a given state.

``CI=1`` loads the ``ci`` profile: derandomized (the same examples on every run, so a red
build is reproducible) and without deadlines (shared runners have noisy timing).
``HYPOTHESIS_PROFILE=thorough`` runs many more examples, to hunt for bugs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from wsmachine import ClientConnection, Handshake, ServerConnection
from wsmachine.handshake import accept_key
from wsmachine.testing import ConnectionPair

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=150,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100)
settings.register_profile("thorough", max_examples=3000, deadline=None)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)

#: The upgrade request of RFC 6455 §1.2/§1.3, with the key whose answer §1.3 gives.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def _upgrade_request(key: str = RFC_KEY) -> bytes:
    return (
        "GET /chat HTTP/1.1\r\n"
        "Host: server.example.com\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "\r\n"
    ).encode("ascii")


def _key_of(request: bytes) -> str:
    for line in request.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            return value.strip().decode("ascii")
    raise AssertionError(f"no Sec-WebSocket-Key in {request!r}")


@pytest.fixture
def open_server() -> Callable[..., ServerConnection]:
    """Make an OPEN server from raw bytes: a hand-written upgrade request, then ``accept``.

    The 101 is read and discarded, so ``data_to_send()`` starts empty.
    """

    def make(**settings: Any) -> ServerConnection:
        server = ServerConnection(**settings)
        (request,) = server.receive_data(_upgrade_request())
        assert isinstance(request, Handshake)
        assert server.accept(request) == []
        assert server.data_to_send().startswith(b"HTTP/1.1 101 ")
        return server

    return make


@pytest.fixture
def open_client() -> Callable[..., ClientConnection]:
    """Make an OPEN client from raw bytes: its request is answered by a hand-written 101.

    The request is read and discarded, so ``data_to_send()`` starts empty.
    """

    def make(**settings: Any) -> ClientConnection:
        client = ClientConnection("server.example.com", "/chat", **settings)
        key = _key_of(client.data_to_send())
        response = (
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(key)}\r\n"
            "\r\n"
        ).encode("ascii")
        assert len(client.receive_data(response)) == 1
        return client

    return make


@pytest.fixture
def make_pair() -> Callable[..., ConnectionPair]:
    """Make a :class:`ConnectionPair` whose opening handshake is done."""

    def make(
        *, client: Mapping[str, Any] | None = None, server: Mapping[str, Any] | None = None
    ) -> ConnectionPair:
        pair = ConnectionPair(client=client, server=server)
        pair.handshake()
        return pair

    return make


@pytest.fixture
def pair(make_pair: Callable[..., ConnectionPair]) -> ConnectionPair:
    """An OPEN client and server with default settings."""
    result: ConnectionPair = make_pair()
    return result


# -- the Autobahn counts in the terminal summary ----------------------------------------------
# tests/test_autobahn.py writes one table per adapter and case set, with the counts of both
# roles, to reports/autobahn/summary-ADAPTER-CASESET.txt; printing them here puts the counts
# in CI's output whether the tests passed or failed (pytest hides a passing test's output).

AUTOBAHN_TABLES = Path("reports") / "autobahn"
_SESSION_START = pytest.StashKey[float]()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_SESSION_START] = time.time()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    started = config.stash.get(_SESSION_START, None)
    folder = config.rootpath / AUTOBAHN_TABLES
    if started is None or not folder.is_dir():
        return
    for path in sorted(folder.glob("summary-*.txt")):
        if path.stat().st_mtime >= started:
            adapter, _, case_set = path.stem.removeprefix("summary-").partition("-")
            terminalreporter.section(
                f"Autobahn TestSuite (kosoku): {adapter} adapter, cases {case_set}"
            )
            terminalreporter.write_line(path.read_text(encoding="utf-8"))


# -- the pure-Python path ---------------------------------------------------------------------
# `pytest --pure-python` runs the tests as on a machine where the optional C extension was not
# built: wsmachine.frames then uses its Python versions. CI runs the core tests this way too.


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--pure-python",
        action="store_true",
        help="use wsmachine's pure-Python frame parsing and masking, not the C extension",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--pure-python"):
        from wsmachine import frames

        frames.apply_mask = frames._py_apply_mask
        frames.unmask = frames._py_unmask
        frames.masked_frame = frames._py_masked_frame
        frames.parse_frames = frames._py_parse_frames
        frames.parse_span = frames._py_parse_span
        frames.unmask_inplace = frames._py_unmask_inplace
        frames.join_unmask = frames._py_join_unmask


# -- the receive-into path --------------------------------------------------------------------


@pytest.fixture
def receive_paths(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count how OPEN connections (any thread) take their input: ``buffer_updated()`` after a
    read into the machine's own buffer (``into``, ``into_bytes``), or ``receive_data()``."""
    from wsmachine import Connection, State

    counts = {"into": 0, "into_bytes": 0, "data": 0}
    buffer_updated, receive_data = Connection.buffer_updated, Connection.receive_data

    def into(self: Connection, nbytes: int) -> list[Any]:
        if self.state is State.OPEN:
            counts["into"] += 1
            counts["into_bytes"] += nbytes
        return buffer_updated(self, nbytes)

    def data(self: Connection, data: bytes | bytearray | memoryview) -> list[Any]:
        if self.state is State.OPEN:
            counts["data"] += 1
        return receive_data(self, data)

    monkeypatch.setattr(Connection, "buffer_updated", into)
    monkeypatch.setattr(Connection, "receive_data", data)
    return counts
