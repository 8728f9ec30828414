"""RFC 7230 header-list grammar for the WebSocket headers.

``Connection``, ``Upgrade``, ``Sec-WebSocket-Protocol`` and ``Sec-WebSocket-Extensions`` are
comma lists (RFC 7230 §7) that may be split over repeated header lines; extension parameters
may be quoted strings (RFC 6455 §9.1). The parser is a hand-written scanner: one pass, no
backtracking, so hostile input costs linear time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .errors import RemoteProtocolError

__all__ = [
    "ExtensionOffer",
    "build_extension_header",
    "is_token",
    "parse_extension_list",
    "parse_token_list",
]

# RFC 7230 §3.2.6: tchar.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_OWS = " \t"


def is_token(value: str) -> bool:
    """Whether ``value`` is a non-empty RFC 7230 token."""
    return bool(value) and all(c in _TCHAR for c in value)


@dataclass(frozen=True, slots=True)
class ExtensionOffer:
    """One element of ``Sec-WebSocket-Extensions``: a name and its parameters, in order.

    A parameter without a value (``client_no_context_takeover``) has the value ``None``.
    """

    #: The extension token, e.g. ``"permessage-deflate"``.
    name: str
    #: The parameters in wire order: ``(name, value)``, value ``None`` for a bare flag.
    params: tuple[tuple[str, str | None], ...] = ()

    def __str__(self) -> str:
        parts = [self.name]
        for key, value in self.params:
            if value is None:
                parts.append(key)
            elif is_token(value):
                parts.append(f"{key}={value}")
            else:
                escaped = value.replace("\\", "\\\\").replace('"', '\\"')
                parts.append(f'{key}="{escaped}"')
        return "; ".join(parts)


def build_extension_header(offers: Iterable[ExtensionOffer]) -> str:
    """Serialize extension offers (or accepted extensions) into one header value."""
    return ", ".join(str(offer) for offer in offers)


def _fail(header: str, text: str, pos: int, expected: str) -> RemoteProtocolError:
    shown = text if len(text) <= 80 else text[:77] + "..."
    return RemoteProtocolError(
        f"malformed {header} header {shown!r} at offset {pos}: expected {expected} "
        "(RFC 7230 §7, RFC 6455 §9.1)",
        status_hint=400,
    )


def _skip_ows(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in _OWS:
        pos += 1
    return pos


def _token(text: str, pos: int) -> int:
    """Return the end of the token starting at ``pos`` (``pos`` itself when there is none)."""
    n = len(text)
    while pos < n and text[pos] in _TCHAR:
        pos += 1
    return pos


def _decode(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def parse_token_list(
    values: Iterable[bytes | str], header: str, *, allow_slash: bool = False
) -> list[str]:
    """Parse ``#token`` (or, for ``Upgrade``, ``#protocol`` with ``allow_slash``) over all
    header lines; empty elements are skipped as RFC 7230 §7 requires.

    :raises RemoteProtocolError: an element is not a token.
    """
    result: list[str] = []
    for raw in values:
        text = _decode(raw)
        n = len(text)
        pos = 0
        while True:
            pos = _skip_ows(text, pos)
            if pos < n and text[pos] != ",":
                end = _token(text, pos)
                if end == pos:
                    raise _fail(header, text, pos, "a token")
                if allow_slash and end < n and text[end] == "/":
                    version_end = _token(text, end + 1)
                    if version_end == end + 1:
                        raise _fail(header, text, end + 1, "a protocol version (a token)")
                    end = version_end
                result.append(text[pos:end])
                pos = _skip_ows(text, end)
            if pos >= n:
                break
            if text[pos] != ",":
                raise _fail(header, text, pos, "',' or the end of the value")
            pos += 1
    return result


def _quoted_string(text: str, pos: int, header: str) -> tuple[str, int]:
    """Parse a quoted-string starting at the opening quote; return (value, end)."""
    n = len(text)
    out: list[str] = []
    pos += 1
    while pos < n:
        c = text[pos]
        if c == '"':
            return "".join(out), pos + 1
        if c == "\\":
            pos += 1
            if pos >= n:
                break
            c = text[pos]
        if c in "\r\n\x7f" or (c < " " and c != "\t"):
            raise _fail(header, text, pos, "a printable character in the quoted string")
        out.append(c)
        pos += 1
    raise _fail(header, text, pos, "the closing '\"' of a quoted string")


def parse_extension_list(
    values: Iterable[bytes | str], header: str = "Sec-WebSocket-Extensions"
) -> list[ExtensionOffer]:
    """Parse ``Sec-WebSocket-Extensions`` over all header lines (RFC 6455 §9.1).

    A quoted parameter value must itself be a token once unquoted (§9.1).

    :raises RemoteProtocolError: the value does not follow the grammar.
    """
    result: list[ExtensionOffer] = []
    for raw in values:
        text = _decode(raw)
        n = len(text)
        pos = 0
        while True:
            pos = _skip_ows(text, pos)
            if pos < n and text[pos] != ",":
                end = _token(text, pos)
                if end == pos:
                    raise _fail(header, text, pos, "an extension name (a token)")
                name = text[pos:end]
                params: list[tuple[str, str | None]] = []
                pos = _skip_ows(text, end)
                while pos < n and text[pos] == ";":
                    pos = _skip_ows(text, pos + 1)
                    end = _token(text, pos)
                    if end == pos:
                        raise _fail(header, text, pos, "a parameter name (a token)")
                    key = text[pos:end]
                    pos = _skip_ows(text, end)
                    value: str | None = None
                    if pos < n and text[pos] == "=":
                        pos = _skip_ows(text, pos + 1)
                        if pos < n and text[pos] == '"':
                            value, pos = _quoted_string(text, pos, header)
                            if not is_token(value):
                                raise _fail(header, text, pos, "a token inside the quotes")
                        else:
                            end = _token(text, pos)
                            if end == pos:
                                raise _fail(header, text, pos, "a parameter value")
                            value = text[pos:end]
                            pos = end
                        pos = _skip_ows(text, pos)
                    params.append((key, value))
                result.append(ExtensionOffer(name, tuple(params)))
            if pos >= n:
                break
            if text[pos] != ",":
                raise _fail(header, text, pos, "';', ',' or the end of the value")
            pos += 1
    return result
