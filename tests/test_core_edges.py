"""Edges of the sans-IO core that the module tests do not reach, found by branch coverage
(issue 14): defaults of the extension interface, malformed origins, the testing pair built from
options objects, and misuse of the handshake helpers."""

from __future__ import annotations

import dataclasses

import pytest

from tests.conftest import RFC_KEY, _upgrade_request
from wsmachine import Handshake, InvalidArgumentError, OriginPolicy, ServerConnection, Text
from wsmachine.adapters.options import ClientOptions, ServerOptions
from wsmachine.extensions.base import ExtensionCodec
from wsmachine.handshake import check_final_status, handshake_key
from wsmachine.origin import _normalize, _split_port
from wsmachine.testing import ConnectionPair


class Identity(ExtensionCodec):
    """A codec that changes nothing: the interface's defaults apply."""

    rsv_bits = 0x40

    def decode(self, opcode: int, fin: bool, rsv: int, payload: bytes, max_size: int) -> bytes:
        return payload

    def encode(
        self, opcode: int, fin: bool, payload: bytes, *, compress: bool = True
    ) -> tuple[int, bytes]:
        return 0, payload


def test_a_codec_that_does_not_expand_bounds_frames_by_the_message_size() -> None:
    assert Identity().max_wire_size(1000) == 1000


@pytest.mark.parametrize(
    "origin",
    ["https://[::1]x", "https://[::1", "https://h:123456", "https://h:8a", "https://:80"],
)
def test_malformed_origins_normalize_to_none(origin: str) -> None:
    assert _normalize(origin) is None
    policy = OriginPolicy(["https://example.com"])
    assert not policy.allows(origin, host="example.com")


def test_bracketed_host_with_port() -> None:
    assert _split_port("[::1]:0080") == ("[::1]", "80")
    assert _normalize("https://[::1]:443") == "https://[::1]"


def test_pair_from_options_objects() -> None:
    pair = ConnectionPair(
        client=ClientOptions(subprotocols=("chat",)), server=ServerOptions(subprotocols=("chat",))
    )
    pair.handshake()
    assert pair.client.subprotocol == pair.server.subprotocol == "chat"
    pair.client.send_text("hi")
    assert pair.client_to_server() == [Text(data="hi")]


@pytest.mark.parametrize("status", [True, 200.0, "404"])
def test_reject_status_must_be_an_int(status: object) -> None:
    with pytest.raises(InvalidArgumentError, match="expected an int"):
        check_final_status(status)  # type: ignore[arg-type]


def test_handshake_key_of_an_event_without_one() -> None:
    (event,) = ServerConnection().receive_data(_upgrade_request(RFC_KEY))
    assert isinstance(event, Handshake)
    keyless = dataclasses.replace(
        event, headers=tuple(h for h in event.headers if h[0] != b"sec-websocket-key")
    )
    with pytest.raises(InvalidArgumentError, match="no Sec-WebSocket-Key"):
        handshake_key(keyless)
