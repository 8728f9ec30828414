"""Resource attacks over real sockets against the selector server, with its default limits.

Each attack runs while :mod:`tracemalloc` watches the whole process (the server thread
included); the attack bytes are built before measuring. Every test checks that the server
answers the attack as documented, stays up, keeps its memory bounded, and goes on serving a
well-behaved client. ``python -m tests.test_resources`` prints the peak of each attack.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator

import pytest

from wsmachine import Accepted, ClientConnection, Close, Event
from wsmachine.adapters.blocking import connect
from wsmachine.adapters.selector import Handler, Peer, Server
from wsmachine.extensions import PerMessageDeflate
from wsmachine.testing import FrameBuilder

MiB = 1 << 20
BUILD = FrameBuilder(client=True)
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
#: What one peer may hold at the defaults: about 3 x max_message_size (see the limits page).
PER_PEER_BOUND = 6 * MiB


class Echo(Handler):
    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def on_message(self, peer: Peer, message: str | bytes) -> None:
        peer.send(message)

    def on_error(self, peer: Peer, error: BaseException) -> None:
        self.errors.append(error)


@contextlib.contextmanager
def serving(**options: object) -> Iterator[Server]:
    server = Server(Echo(), "127.0.0.1", 0, **options)  # type: ignore[arg-type]
    thread = server.start()
    try:
        yield server
    finally:
        server.stop(timeout=15)
        assert not thread.is_alive()


def well_behaved_client_is_served(server: Server) -> None:
    with connect(f"ws://127.0.0.1:{server.port}/", open_timeout=10) as ws:
        ws.send("still there?")
        assert ws.recv(timeout=10) == "still there?"
        ws.send(b"\x00" * 100_000)
        assert ws.recv(timeout=10) == b"\x00" * 100_000


class Attacker:
    """A raw socket that did the handshake with a wsmachine client, then sends anything."""

    def __init__(self, server: Server, deflate: bool = False) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.conn = ClientConnection(
            f"127.0.0.1:{server.port}", extensions=[PerMessageDeflate()] if deflate else []
        )
        self.sock.sendall(self.conn.data_to_send())
        events: list[Event] = []
        while not events:
            events = self.conn.receive_data(self.sock.recv(65536))
        assert isinstance(events[0], Accepted), events

    def send_and_read_close(self, data: bytes) -> int:
        """Send ``data`` (the peer may stop reading), then return the server's close code."""
        with contextlib.suppress(OSError):  # the server may close before all is sent
            self.sock.sendall(data)
        for _ in range(100_000):
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                break
            events = self.conn.receive_data(chunk) if chunk else self.conn.receive_eof()
            for event in events:
                if isinstance(event, Close):
                    return event.code
            if not chunk:
                break
        raise AssertionError("the server did not close the connection")

    def close(self) -> None:
        self.sock.close()


def peak_during(action: Callable[[], object]) -> int:
    """Peak bytes allocated above the starting point while ``action`` runs (all threads)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        action()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


PEAKS: dict[str, int] = {}


def record(name: str, peak: int) -> None:
    PEAKS[name] = peak
    print(f"peak memory, {name}: {peak / MiB:.2f} MiB")


# ------------------------------------------------------------------------------------------------


def test_decompression_bomb() -> None:
    zeros = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = zeros.compress(b"\x00" * (64 * MiB)) + zeros.flush(zlib.Z_SYNC_FLUSH)
    bomb = BUILD.frame(2, payload[:-4], rsv=0x40)  # 64 MiB inflated from about 64 KB
    assert len(bomb) < 100_000
    with serving(extensions=[PerMessageDeflate()]) as server:
        attacker = Attacker(server, deflate=True)
        codes: list[int] = []
        peak = peak_during(lambda: codes.append(attacker.send_and_read_close(bomb)))
        attacker.close()
        assert codes == [1009]
        record("decompression bomb (64 MiB from 64 KB)", peak)
        assert peak < PER_PEER_BOUND
        well_behaved_client_is_served(server)


def test_declared_length_of_2_to_the_40() -> None:
    frame = BUILD.frame(2, b"x" * 1000, length=1 << 40)
    with serving() as server:
        attacker = Attacker(server)
        codes: list[int] = []
        peak = peak_during(lambda: codes.append(attacker.send_and_read_close(frame)))
        attacker.close()
        assert codes == [1009]
        record("frame declaring 2**40 bytes", peak)
        assert peak < MiB
        well_behaved_client_is_served(server)


@pytest.mark.parametrize("size", [0, 1], ids=["empty", "1-byte"])
def test_100_000_tiny_fragments(size: int) -> None:
    piece = b"x" * size
    flood = BUILD.binary(piece, fin=False) + BUILD.continuation(piece, fin=False) * 100_000
    with serving() as server:
        attacker = Attacker(server)
        codes: list[int] = []
        peak = peak_during(lambda: codes.append(attacker.send_and_read_close(flood)))
        attacker.close()
        assert codes == [1009]  # at fragment 4,097 (max_fragments)
        record(f"100,000 {'empty' if not size else '1-byte'} fragments", peak)
        assert peak < PER_PEER_BOUND
        well_behaved_client_is_served(server)


def test_ping_flood_from_a_peer_that_does_not_read() -> None:
    flood = BUILD.ping(b"p" * 125) * 40_000  # 5.3 MB of Pings, 5.1 MB of Pongs owed
    with serving(write_high_water=MiB, write_limit=4 * MiB) as server:
        attacker = Attacker(server)
        attacker.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        attacker.sock.settimeout(0.5)

        def attack() -> None:
            with contextlib.suppress(OSError):  # blocks once the server stops reading
                attacker.sock.sendall(flood)
            well_behaved_client_is_served(server)  # served while the flood waits

        peak = peak_during(attack)
        attacker.close()
        record("40,000 Pings, never reading the Pongs", peak)
        # The Pongs owed stay near write_high_water: the server stops reading the flood.
        assert peak < 4 * MiB
        well_behaved_client_is_served(server)


def test_many_idle_connections() -> None:
    count = 1000
    request = (
        "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    with serving() as server:
        socks: list[socket.socket] = []

        def open_all() -> None:
            for _ in range(count):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                sock.sendall(request)
                socks.append(sock)
            for sock in socks:
                assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")
            deadline = time.monotonic() + 20
            while sum(p.open for p in server.peers) < count:
                assert time.monotonic() < deadline
                time.sleep(0.05)

        try:
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            open_all()
            held = tracemalloc.get_traced_memory()[0] - base
            tracemalloc.stop()
            record(f"{count} idle connections (held)", held)
            print(f"per idle connection, server and test sockets together: {held / count:.0f} B")
            assert held / count < 16 * 1024
            well_behaved_client_is_served(server)
        finally:
            for sock in socks:
                sock.close()


def test_slow_handshakes_are_dropped() -> None:
    with serving(open_timeout=0.5) as server:
        slow = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(50)]
        stop = threading.Event()

        def trickle() -> None:  # one byte of the request line per 50 ms, never finishing
            for i in range(40):
                for sock in slow:
                    with contextlib.suppress(OSError):
                        sock.send(b"GET /slowloris HTTP/1.1\r\n"[i % 24 : i % 24 + 1])
                if stop.wait(0.05):
                    return

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        try:
            well_behaved_client_is_served(server)
            deadline = time.monotonic() + 10
            for sock in slow:
                sock.settimeout(max(0.1, deadline - time.monotonic()))
                with contextlib.suppress(ConnectionResetError):
                    assert sock.recv(4096) == b""  # dropped by the open timeout
        finally:
            stop.set()
            thread.join()
            for sock in slow:
                sock.close()
        deadline = time.monotonic() + 5
        while server.peers:
            assert time.monotonic() < deadline, server.peers
            time.sleep(0.02)
        well_behaved_client_is_served(server)


if __name__ == "__main__":
    for test in (
        test_decompression_bomb,
        test_declared_length_of_2_to_the_40,
        lambda: test_100_000_tiny_fragments(0),
        lambda: test_100_000_tiny_fragments(1),
        test_ping_flood_from_a_peer_that_does_not_read,
        test_many_idle_connections,
    ):
        test()
