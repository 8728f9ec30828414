"""Handshake edges branch coverage found unreached (issue 14): every flaw the invalid-input
strategies can draw is one the machine refuses, two accepted extensions on one RSV bit fail
the client, and header lists that are not ASCII (extended CONNECT) are refused by name."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence

import pytest
from hypothesis import Phase, find, settings
from hypothesis import strategies as st

from tests.conftest import _key_of
from wsmachine import (
    Accepted,
    ClientConnection,
    ExtensionOffer,
    Handshake,
    Rejected,
    RemoteProtocolError,
    ServerConnection,
    State,
)
from wsmachine.errors import InvalidArgumentError
from wsmachine.extended_connect import read_request
from wsmachine.extensions.base import Extension, ExtensionCodec
from wsmachine.extensions.permessage_deflate import PerMessageDeflate
from wsmachine.handshake import accept_key
from wsmachine.headers import parse_extension_list
from wsmachine.testing import strategies as ws

#: Deterministic searches, bounded, the first example kept as drawn (shrinking it would cost
#: seconds): each flaw is one of a dozen equally likely choices.
SEARCH = settings(
    max_examples=2000, database=None, derandomize=True, deadline=None, phases=[Phase.generate]
)


def draw_one(strategy: st.SearchStrategy[bytes], condition: Callable[[bytes], bool]) -> bytes:
    return find(strategy, condition, settings=SEARCH)


def header_values(request: bytes, name: bytes) -> list[bytes]:
    values = []
    for line in request.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            values.append(value.strip(b" \t"))
    return values


def refused(request: bytes) -> Rejected:
    server = ServerConnection()
    (event,) = server.receive_data(request)
    assert isinstance(event, Rejected), request
    assert event.error is not None
    assert server.data_to_send().startswith(f"HTTP/1.1 {event.status_code} ".encode())
    return event


def short_key(request: bytes) -> bool:
    keys = header_values(request, b"sec-websocket-key")
    return len(keys) == 1 and len(base64.b64decode(keys[0])) < 16


def two_keys(request: bytes) -> bool:
    return len(header_values(request, b"sec-websocket-key")) == 2


def bad_version(request: bytes) -> bool:
    return header_values(request, b"sec-websocket-version") not in ([b"13"], [])


def test_invalid_request_strategy_draws_a_short_key_the_server_refuses() -> None:
    event = refused(draw_one(ws.handshake_requests(valid=False), short_key))
    assert event.status_code == 400
    assert "Sec-WebSocket-Key" in str(event.error)


def test_invalid_request_strategy_draws_two_keys_the_server_refuses() -> None:
    event = refused(draw_one(ws.handshake_requests(valid=False), two_keys))
    assert event.status_code == 400
    assert "appears 2 times" in str(event.error)


def test_invalid_request_strategy_draws_a_wrong_version_answered_426() -> None:
    event = refused(draw_one(ws.handshake_requests(valid=False), bad_version))
    assert event.status_code == 426
    assert (b"sec-websocket-version", b"13") in event.headers


def test_invalid_extension_strategy_draws_a_stray_separator_the_parser_refuses() -> None:
    header = find(ws.extension_headers(valid=False), lambda h: h.endswith("; ; x"), settings=SEARCH)
    with pytest.raises(RemoteProtocolError, match="Sec-WebSocket-Extensions"):
        parse_extension_list([header])


def test_invalid_extension_strategy_draws_trailing_junk_the_parser_refuses() -> None:
    header = find(
        ws.extension_headers(valid=False), lambda h: h.endswith(" junk junk"), settings=SEARCH
    )
    with pytest.raises(RemoteProtocolError, match="Sec-WebSocket-Extensions"):
        parse_extension_list([header])


def test_invalid_response_strategy_draws_an_extension_never_offered_the_client_fails() -> None:
    client = ClientConnection("h", "/")
    key = _key_of(client.data_to_send())
    response = draw_one(ws.handshake_responses(key, valid=False), lambda r: b"x-never-offered" in r)
    (event,) = client.receive_data(response)
    assert isinstance(event, Rejected)
    assert "'x-never-offered', which was not offered" in str(event.error)


class Rsv1Codec(ExtensionCodec):
    """Sets RSV1, as permessage-deflate does."""

    rsv_bits = 0x40

    def decode(self, opcode: int, fin: bool, rsv: int, payload: bytes, max_size: int) -> bytes:
        return payload

    def encode(
        self, opcode: int, fin: bool, payload: bytes, *, compress: bool = True
    ) -> tuple[int, bytes]:
        return self.rsv_bits, payload


class Rsv1Extension(Extension):
    """An extension other than permessage-deflate that also claims RSV1."""

    name = "x-rsv1"

    def offer(self) -> ExtensionOffer:
        return ExtensionOffer(self.name, ())

    def accept_response(self, response: ExtensionOffer) -> ExtensionCodec:
        return Rsv1Codec()

    def accept_offers(
        self, offers: Sequence[ExtensionOffer]
    ) -> tuple[ExtensionOffer, ExtensionCodec] | None:
        return ExtensionOffer(self.name, ()), Rsv1Codec()


def test_client_fails_a_server_that_accepts_two_extensions_on_one_rsv_bit() -> None:
    client = ClientConnection("h", "/", extensions=[PerMessageDeflate(), Rsv1Extension()])
    key = _key_of(client.data_to_send())
    response = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate, x-rsv1\r\n\r\n"
    ).encode()
    (event,) = client.receive_data(response)
    assert isinstance(event, Rejected)
    assert client.state is State.REJECTED
    assert "'x-rsv1', whose reserved bits" in str(event.error)
    assert "RFC 6455 §9.1" in str(event.error)


def test_server_never_accepts_two_extensions_on_one_rsv_bit() -> None:
    client = ClientConnection("h", "/", extensions=[PerMessageDeflate(), Rsv1Extension()])
    server = ServerConnection(extensions=[PerMessageDeflate(), Rsv1Extension()])
    (request,) = server.receive_data(client.data_to_send())
    assert isinstance(request, Handshake)
    server.accept(request)
    (accepted,) = client.receive_data(server.data_to_send())
    assert isinstance(accepted, Accepted)
    assert [offer.name for offer in accepted.extensions] == ["permessage-deflate"]


CONNECT = [
    (b":method", b"CONNECT"),
    (b":protocol", b"websocket"),
    (b":scheme", b"https"),
    (b":path", b"/chat"),
    (b":authority", b"server.example.com"),
    (b"sec-websocket-version", b"13"),
]


def test_extended_connect_refuses_a_path_that_is_not_ascii() -> None:
    headers = [(k, b"/caf\xc3\xa9" if k == b":path" else v) for k, v in CONNECT]
    with pytest.raises(RemoteProtocolError, match=r":path holds non-ASCII bytes") as info:
        read_request(headers)
    assert info.value.status_hint == 400


@pytest.mark.parametrize(
    ("name", "value"), [("x-ñame", "v"), ("x-name", "€ euro")], ids=["name", "value"]
)
def test_extended_connect_header_list_of_str_must_encode(name: str, value: str) -> None:
    headers: list[tuple[str | bytes, str | bytes]] = [*CONNECT, (name, value)]
    with pytest.raises(InvalidArgumentError, match=f"header {name!r}"):
        read_request(headers)
