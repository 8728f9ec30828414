"""Events are small immutable values: frozen, slotted, keyword-only, compared by value."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import pytest

from wsmachine import (
    Accepted,
    Binary,
    Close,
    Event,
    ExtensionOffer,
    Handshake,
    HTTPRequest,
    Ping,
    Pong,
    Rejected,
    RemoteProtocolError,
    Text,
)

HEADERS = ((b"host", b"example.com"),)

#: One instance of every event class, built from keyword arguments.
SAMPLES: dict[type[Any], dict[str, Any]] = {
    Handshake: {
        "path": "/chat",
        "host": "example.com",
        "origin": None,
        "subprotocols": ("chat",),
        "extensions": (ExtensionOffer("permessage-deflate"),),
        "headers": HEADERS,
    },
    HTTPRequest: {"method": "GET", "path": "/", "headers": HEADERS},
    Accepted: {"subprotocol": None, "extensions": (), "headers": HEADERS},
    Rejected: {"status_code": 403, "headers": HEADERS, "body": b"no"},
    Text: {"data": "hi", "final": False},
    Binary: {"data": b"hi", "final": False},
    Ping: {"payload": b"p"},
    Pong: {"payload": b"q"},
    Close: {"code": 1000, "reason": "bye"},
}

EVENT_CLASSES = list(SAMPLES)


def make(cls: type[Any]) -> Any:
    return cls(**SAMPLES[cls])


def test_every_event_class_is_sampled() -> None:
    assert set(typing.get_args(Event)) == set(SAMPLES)


@pytest.mark.parametrize("cls", EVENT_CLASSES)
class TestEventValues:
    def test_frozen(self, cls: type[Any]) -> None:
        event = make(cls)
        field = dataclasses.fields(event)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(event, field, None)
        with pytest.raises((dataclasses.FrozenInstanceError, AttributeError, TypeError)):
            event.new_attribute = 1

    def test_slots_no_dict(self, cls: type[Any]) -> None:
        event = make(cls)
        assert not hasattr(event, "__dict__")
        assert set(cls.__slots__) == {f.name for f in dataclasses.fields(cls)}

    def test_keyword_only(self, cls: type[Any]) -> None:
        values = list(SAMPLES[cls].values())
        with pytest.raises(TypeError):
            cls(*values)
        assert all(f.kw_only for f in dataclasses.fields(cls))

    def test_equality_and_hash(self, cls: type[Any]) -> None:
        a, b = make(cls), make(cls)
        assert a == b
        assert a is not b
        assert hash(a) == hash(b)
        assert {a, b} == {a}
        # Every compared field counts.
        for field in dataclasses.fields(cls):
            if field.compare:
                other = dataclasses.replace(a, **{field.name: _different(getattr(a, field.name))})
                assert other != a, field.name

    def test_repr_names_the_fields(self, cls: type[Any]) -> None:
        text = repr(make(cls))
        assert text.startswith(cls.__name__ + "(")
        for name in SAMPLES[cls]:
            assert f"{name}=" in text

    def test_not_equal_to_other_events(self, cls: type[Any]) -> None:
        event = make(cls)
        for other_cls in EVENT_CLASSES:
            if other_cls is not cls:
                assert event != make(other_cls)


def _different(value: Any) -> Any:
    if value is None:
        return "x"
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, bytes):
        return value + b"x"
    if isinstance(value, tuple):
        return (*value, value[0]) if value else ((b"x", b"y"),)
    raise AssertionError(value)


class TestDefaults:
    def test_data_events_default_to_final(self) -> None:
        assert Text(data="x").final is True
        assert Binary(data=b"x").final is True

    def test_control_payloads_default_empty(self) -> None:
        assert Ping().payload == b""
        assert Pong().payload == b""

    def test_close_defaults(self) -> None:
        close = Close(code=1000)
        assert (close.reason, close.error) == ("", None)

    def test_rejected_defaults(self) -> None:
        rejected = Rejected(status_code=500, headers=())
        assert (rejected.body, rejected.error) == (b"", None)

    @pytest.mark.parametrize("cls", [Handshake, HTTPRequest, Accepted, Text, Binary, Close])
    def test_required_fields(self, cls: type[Any]) -> None:
        with pytest.raises(TypeError):
            cls()


class TestErrorIsNotCompared:
    """``error`` carries the details; two events that say the same thing are equal."""

    def test_close(self) -> None:
        error = RemoteProtocolError("bad", close_code=1002)
        assert Close(code=1002, reason="r", error=error) == Close(code=1002, reason="r")
        assert hash(Close(code=1002, error=error)) == hash(Close(code=1002))
        assert Close(code=1002, reason="r", error=error) != Close(code=1002, reason="s")

    def test_rejected(self) -> None:
        error = RemoteProtocolError("bad", status_hint=400)
        assert Rejected(status_code=400, headers=(), error=error) == Rejected(
            status_code=400, headers=()
        )

    def test_error_is_kept(self) -> None:
        error = RemoteProtocolError("bad", close_code=1007)
        assert Close(code=1007, error=error).error is error


def test_text_and_binary_with_same_content_differ() -> None:
    assert Text(data="a") != Binary(data=b"a")
    assert Ping(payload=b"a") != Pong(payload=b"a")


def test_events_have_docstrings() -> None:
    for cls in EVENT_CLASSES:
        doc = cls.__doc__ or ""
        assert doc and not doc.startswith(cls.__name__ + "("), cls
