"""wsmachine.testing.FrameBuilder and wsmachine.testing.strategies, checked against wsmachine:
valid output is accepted as described, invalid output is refused with the stated code."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from wsmachine import (
    Accepted,
    Binary,
    ClientConnection,
    Close,
    Event,
    Handshake,
    Ping,
    Pong,
    Rejected,
    ServerConnection,
    State,
    Text,
)
from wsmachine.extensions import PerMessageDeflate
from wsmachine.frames import FrameReader
from wsmachine.headers import build_extension_header, parse_extension_list
from wsmachine.testing import ConnectionPair, FrameBuilder, InvalidFrame
from wsmachine.testing import strategies as ws

EXAMPLES = settings(max_examples=40, deadline=None)


def open_pair(**server: object) -> ConnectionPair:
    pair = ConnectionPair(server=server)  # type: ignore[arg-type]
    pair.handshake()
    return pair


def receiver(pair: ConnectionPair, masked: bool) -> ServerConnection | ClientConnection:
    return pair.server if masked else pair.client


def data_of(events: list[Event]) -> str | bytes:
    parts = [e.data for e in events if isinstance(e, Text | Binary)]
    return "".join(parts) if parts and isinstance(parts[0], str) else b"".join(parts)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# FrameBuilder
# ------------------------------------------------------------------------------------------------


class TestFrameBuilder:
    def test_masked_frame_matches_rfc_example(self) -> None:
        # RFC 6455 §5.7: a masked "Hello" with key 37 fa 21 3d.
        frame = FrameBuilder(client=True).text("Hello")
        assert frame == bytes.fromhex("818537fa213d7f9f4d5158")
        assert FrameBuilder(client=False).text("Hello") == bytes.fromhex("810548656c6c6f")

    @pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
    def test_length_forms_parse(self, size: int) -> None:
        frame = FrameBuilder(client=False).binary(b"x" * size)
        frames, error = FrameReader(expect_masked=False, max_frame_size=1 << 20).feed(frame)
        assert error is None
        assert frames == [(2, True, 0, b"x" * size)]

    def test_forced_and_lying_lengths(self) -> None:
        build = FrameBuilder(client=False)
        assert build.frame(2, b"x", length_form=8) == b"\x82\x7f" + (1).to_bytes(8, "big") + b"x"
        assert build.frame(2, b"", length=1 << 40)[:2] == b"\x82\x7f"
        with pytest.raises(ValueError, match="7-bit"):
            build.frame(2, b"x" * 200, length_form=0)
        with pytest.raises(ValueError, match="length_form"):
            build.frame(2, b"x", length_form=4)
        with pytest.raises(ValueError, match="opcode"):
            build.frame(16)
        with pytest.raises(ValueError, match="4 bytes"):
            FrameBuilder(client=True, mask_key=b"abc")

    def test_message_fragments_and_between(self) -> None:
        build = FrameBuilder(client=False)
        wire = build.message("héllo", [1, 0, 2], between=build.ping(b"p"))
        pair = open_pair()
        events = pair.client.receive_data(wire)
        assert events == [Ping(payload=b"p")] * 3 + [Text(data="héllo")]
        assert build.message(b"") == build.binary(b"")
        with pytest.raises(ValueError, match="negative"):
            build.message(b"ab", [-1])

    def test_close_variants(self) -> None:
        build = FrameBuilder(client=False)
        assert build.close(None) == b"\x88\x00"
        assert build.close(1000, "ok") == b"\x88\x04\x03\xe8ok"
        assert repr(build) == "FrameBuilder(client=False, mask_key=b'7\\xfa!=')"

    @pytest.mark.parametrize("masked", [True, False], ids=["to-server", "to-client"])
    def test_every_invalid_frame_is_refused_with_its_code(self, masked: bool) -> None:
        cases = FrameBuilder(client=masked).invalid_frames()
        assert len({case.name for case in cases}) == len(cases)
        for case in cases:
            assert isinstance(case, InvalidFrame)
            pair = open_pair()
            conn = receiver(pair, masked)
            for step in (None, 1):
                pair = open_pair()
                conn = receiver(pair, masked)
                pieces = [case.data] if step is None else [bytes([b]) for b in case.data]
                events = [e for piece in pieces for e in conn.receive_data(piece)]
                close = events[-1]
                assert isinstance(close, Close), (case.name, events)
                assert close.error is not None, case.name
                assert close.code == case.close_code, (case.name, close)


# ------------------------------------------------------------------------------------------------
# Strategies
# ------------------------------------------------------------------------------------------------


class TestStrategies:
    @EXAMPLES
    @given(masked=st.booleans(), data=st.data())
    def test_frames_are_accepted(self, masked: bool, data: st.DataObject) -> None:
        frame = data.draw(ws.frames(masked=masked))
        pair = open_pair()
        conn = receiver(pair, masked)
        (event,) = conn.receive_data(frame)
        assert isinstance(event, Text | Binary | Ping | Pong)
        assert conn.state is State.OPEN

    @EXAMPLES
    @given(masked=st.booleans(), data=st.data())
    def test_fragmented_messages_reassemble(self, masked: bool, data: st.DataObject) -> None:
        message, wire = data.draw(ws.fragmented_messages(masked=masked))
        reads = data.draw(ws.read_sizes())
        pair = open_pair()
        conn = receiver(pair, masked)
        events = [e for piece in ws.split(wire, reads) for e in conn.receive_data(piece)]
        assert data_of(events) == message
        assert all(isinstance(e, Text | Binary | Ping | Pong) for e in events)

    @EXAMPLES
    @given(masked=st.booleans(), data=st.data())
    def test_invalid_frames_fail_with_their_code(self, masked: bool, data: st.DataObject) -> None:
        name, wire, code = data.draw(ws.invalid_frames(masked=masked))
        pieces = data.draw(ws.chunkings(wire))
        assert b"".join(pieces) == wire
        pair = open_pair()
        conn = receiver(pair, masked)
        events = [e for piece in pieces for e in conn.receive_data(piece)]
        assert isinstance(events[-1], Close)
        assert events[-1].code == code, name

    def test_split_and_chunkings_edges(self) -> None:
        assert ws.split(b"abcde", [2]) == [b"ab", b"cd", b"e"]
        assert ws.split(b"", [3]) == []
        with pytest.raises(ValueError, match="positive"):
            ws.split(b"x", [0])

    @EXAMPLES
    @given(data=st.data())
    def test_chunkings_of_short_streams(self, data: st.DataObject) -> None:
        assert data.draw(ws.chunkings(b"")) == []
        assert data.draw(ws.chunkings(b"x")) == [b"x"]

    @EXAMPLES
    @given(request=ws.handshake_requests(), data=st.data())
    def test_valid_requests_give_a_handshake(self, request: bytes, data: st.DataObject) -> None:
        server = ServerConnection()
        events = [e for p in data.draw(ws.chunkings(request)) for e in server.receive_data(p)]
        (event,) = events
        assert isinstance(event, Handshake), event
        server.accept(event)
        assert server.data_to_send().startswith(b"HTTP/1.1 101 ")

    @EXAMPLES
    @given(request=ws.handshake_requests(valid=False))
    def test_invalid_requests_are_refused(self, request: bytes) -> None:
        server = ServerConnection()
        (event,) = server.receive_data(request)
        assert isinstance(event, Rejected), request
        assert event.status_code in (400, 405, 426)
        assert event.error is not None

    @EXAMPLES
    @given(valid=st.booleans(), data=st.data())
    def test_responses(self, valid: bool, data: st.DataObject) -> None:
        client = ClientConnection("h", subprotocols=["chat", "v2"])
        head = client.data_to_send()
        key = head.split(b"Sec-WebSocket-Key: ")[1].split(b"\r\n")[0].decode()
        response = data.draw(ws.handshake_responses(key, valid=valid, subprotocols=["chat", "v2"]))
        (event,) = client.receive_data(response)
        if valid:
            assert isinstance(event, Accepted), response
        else:
            assert isinstance(event, Rejected) and event.error is not None, response

    @EXAMPLES
    @given(valid=st.booleans(), data=st.data())
    def test_extension_headers(self, valid: bool, data: st.DataObject) -> None:
        header = data.draw(ws.extension_headers(valid=valid))
        if valid:
            offers = parse_extension_list([header])
            assert parse_extension_list([build_extension_header(offers)]) == offers
        else:
            with pytest.raises(Exception, match="Sec-WebSocket-Extensions") as info:
                parse_extension_list([header])
            assert type(info.value).__name__ == "RemoteProtocolError"

    @pytest.mark.parametrize(
        ("flaw", "ending"),
        [
            ("no name", None),
            ("quote", '"unterminated'),
            ("non-token", '"a b"'),
            ("separator", "; ; x"),
            ("space", " junk junk"),
        ],
    )
    def test_each_kind_of_broken_extension_header_is_drawn_and_refused(
        self, flaw: str, ending: str | None
    ) -> None:
        def shows(header: str) -> bool:
            return header.startswith("; x=1, ") if ending is None else header.endswith(ending)

        # The first one drawn will do: no shrinking (it would take seconds, for nothing here).
        header = find(
            ws.extension_headers(valid=False), shows, settings=settings(phases=[Phase.generate])
        )
        with pytest.raises(Exception, match="Sec-WebSocket-Extensions") as info:
            parse_extension_list([header])
        assert type(info.value).__name__ == "RemoteProtocolError", flaw

    @EXAMPLES
    @given(offer=ws.extension_offers())
    def test_offers_round_trip(self, offer: object) -> None:
        assert parse_extension_list([str(offer)]) == [offer]

    @EXAMPLES
    @given(valid=st.booleans(), data=st.data())
    def test_deflate_offers(self, valid: bool, data: st.DataObject) -> None:
        offer = data.draw(ws.permessage_deflate_offers(valid=valid))
        accepted = PerMessageDeflate().accept_offers([offer])
        assert (accepted is not None) == valid, offer

    @EXAMPLES
    @given(message=ws.messages(max_size=10))
    def test_messages_are_bounded(self, message: str | bytes) -> None:
        assert len(message) <= 10


def test_strategies_are_not_imported_by_the_package() -> None:
    code = "import wsmachine, wsmachine.testing, sys; print('hypothesis' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
