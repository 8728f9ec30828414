"""data_to_send_parts(): the same bytes as data_to_send(), as the pieces they were queued in,
a server's large payload handed over as it is (not copied into a frame)."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from wsmachine import ClientConnection, ServerConnection
from wsmachine.connection import SEPARATE_PAYLOAD_SIZE
from wsmachine.testing import ConnectionPair

MESSAGES = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.integers(0, 3 * SEPARATE_PAYLOAD_SIZE).map(lambda n: b"\x01" * n),
        st.text(max_size=40),
        st.integers(0, 2 * SEPARATE_PAYLOAD_SIZE).map(lambda n: "é" * n),
    ),
    max_size=6,
)


def _send(conn: ServerConnection | ClientConnection, messages: list[str | bytes]) -> None:
    for message in messages:
        if isinstance(message, str):
            conn.send_text(message)
        else:
            conn.send_binary(message)


def _open() -> ConnectionPair:
    pair = ConnectionPair()
    pair.handshake()
    return pair


@settings(max_examples=60, deadline=None)
@given(messages=MESSAGES, client=st.booleans(), close=st.booleans())
def test_parts_join_to_what_data_to_send_gives(
    messages: list[str | bytes], client: bool, close: bool
) -> None:
    outputs, received = [], []
    for joined in (True, False):
        pair = _open()
        conn, peer = (pair.client, pair.server) if client else (pair.server, pair.client)
        _send(conn, messages)
        if close:
            conn.close(1000)
        data = conn.data_to_send() if joined else b"".join(conn.data_to_send_parts())
        outputs.append(data)
        events = peer.receive_data(data)
        received.append([getattr(event, "data", None) for event in events])
    if not client:  # a client's masks are random: its bytes differ, its messages must not
        assert outputs[0] == outputs[1]
    assert received[0] == received[1]
    assert received[1][: len(messages)] == messages


def test_a_large_server_payload_is_not_copied() -> None:
    pair = _open()
    payload = os.urandom(4 * SEPARATE_PAYLOAD_SIZE)
    pair.server.send_binary(payload)
    pair.server.send_text("small")
    parts = pair.server.data_to_send_parts()
    assert any(part is payload for part in parts)
    assert pair.server.data_to_send_parts() == []  # forgotten once handed over
    events = pair.client.receive_data(b"".join(parts))
    assert [event.data for event in events] == [payload, "small"]  # type: ignore[attr-defined]


def test_the_owed_close_comes_last_in_the_parts() -> None:
    pair = _open()
    pair.client.close(1000)
    pair.server.receive_data(pair.client.data_to_send())
    pair.server.send_binary(b"\x02" * SEPARATE_PAYLOAD_SIZE)  # a reply to that read's events
    parts = pair.server.data_to_send_parts()
    assert parts[-1].startswith(b"\x88")  # our Close, after the reply
    events = pair.client.receive_data(b"".join(parts))
    assert events[0].data == b"\x02" * SEPARATE_PAYLOAD_SIZE  # type: ignore[attr-defined]
    assert events[-1].code == 1000  # type: ignore[attr-defined]
