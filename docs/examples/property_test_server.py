"""Property-test a WebSocket server with wsmachine.testing: run me, or collect me with pytest.

The server under test is reached only through bytes (``EchoServer.feed``), so the same tests
work for a server written with any library: replace ``feed`` with writes to and reads from
its socket. A wsmachine ClientConnection does the handshake and decodes the replies; the
frames themselves come from FrameBuilder, so they can be cut, fragmented or broken at will.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from wsmachine import (
    Binary,
    ClientConnection,
    Close,
    Event,
    Handshake,
    ServerConnection,
    Text,
)
from wsmachine.testing import FrameBuilder
from wsmachine.testing import strategies as ws


class EchoServer:
    """The code under test: a tiny echo server, driven by bytes in and bytes out."""

    def __init__(self) -> None:
        self.conn = ServerConnection(max_message_size=4096)

    def feed(self, data: bytes) -> bytes:
        for event in self.conn.receive_data(data):
            if isinstance(event, Handshake):
                self.conn.accept(event)
            elif isinstance(event, Text):
                self.conn.send_text(event.data)
            elif isinstance(event, Binary):
                self.conn.send_binary(event.data)
        return self.conn.data_to_send()


def connect(server: EchoServer) -> ClientConnection:
    """Run the opening handshake; return the client, ready to decode the server's frames."""
    client = ClientConnection("example.com")
    client.receive_data(server.feed(client.data_to_send()))
    return client


def messages_of(events: list[Event]) -> list[str | bytes]:
    return [e.data for e in events if isinstance(e, Text | Binary)]


# Few examples, so this file runs in about a second; raise max_examples in your own suite.
fast = settings(max_examples=30, deadline=None)


@fast
@given(message=ws.messages(), sizes=ws.fragmentations(), reads=ws.read_sizes())
def test_echoes_any_message_however_fragmented_and_split(
    message: str | bytes, sizes: list[int], reads: list[int]
) -> None:
    server = EchoServer()
    client = connect(server)
    wire = FrameBuilder(client=True).message(message, sizes)
    replies = b"".join(server.feed(piece) for piece in ws.split(wire, reads))
    assert messages_of(client.receive_data(replies)) == [message]


@fast
@given(case=ws.invalid_frames(masked=True))
def test_refuses_broken_frames_with_the_right_close_code(case: tuple[str, bytes, int]) -> None:
    name, wire, close_code = case
    server = EchoServer()
    client = connect(server)
    events = client.receive_data(server.feed(wire))
    closes = [e for e in events if isinstance(e, Close)]
    assert [c.code for c in closes] == [close_code], name


@fast
@given(request=ws.handshake_requests(valid=False))
def test_refuses_bad_upgrade_requests_with_4xx(request: bytes) -> None:
    server = EchoServer()
    answer = server.feed(request)
    assert answer.startswith(b"HTTP/1.1 4"), answer
    assert isinstance(server.conn.receive_data(b"more"), list)  # and stays quiet after


@fast
@given(data=st.binary(max_size=200))
def test_survives_random_bytes_after_the_handshake(data: bytes) -> None:
    server = EchoServer()
    connect(server)
    server.feed(data)  # must not raise, whatever the bytes


if __name__ == "__main__":
    for test in (
        test_echoes_any_message_however_fragmented_and_split,
        test_refuses_broken_frames_with_the_right_close_code,
        test_refuses_bad_upgrade_requests_with_4xx,
        test_survives_random_bytes_after_the_handshake,
    ):
        test()  # a @given test runs all its examples when called
        print(f"passed: {test.__name__}")
