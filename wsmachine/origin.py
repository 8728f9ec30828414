"""Which web pages may open a WebSocket to this server: the ``Origin`` check (RFC 6455 §10.2).

Browsers let any page open a WebSocket to any server and send the user's cookies with the
request; the ``Origin`` header is what tells the server which page asked. A server that
authenticates by cookie and does not check ``Origin`` lets any site act as its users
(cross-site WebSocket hijacking). Non-browser clients usually send no ``Origin`` at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .events import Handshake

__all__ = ["OriginPolicy"]

_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def _normalize(origin: str) -> str | None:
    """``scheme://host[:port]`` with the scheme and host lowercased and a default port dropped;
    ``None`` when ``origin`` does not have that shape (no path, user or query allowed)."""
    scheme, sep, rest = origin.partition("://")
    if not sep or not scheme or not rest or any(c in rest for c in "/?#@\\ \t"):
        return None
    if not scheme.isascii() or not scheme.replace("+", "").replace("-", "").isalnum():
        return None
    scheme = scheme.lower()
    host, port = _split_port(rest)
    if host is None or port is None:
        return None
    if port == _DEFAULT_PORTS.get(scheme):
        port = ""
    return f"{scheme}://{host.lower()}" + (f":{port}" if port else "")


def _split_port(authority: str) -> tuple[str | None, str | None]:
    """Split ``host[:port]`` (an IPv6 host in brackets); ``(None, None)`` when malformed."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return None, None
        host, rest = authority[: end + 1], authority[end + 1 :]
        if rest and not rest.startswith(":"):
            return None, None
        port = rest[1:]
        had_colon = bool(rest)
    else:
        host, had_colon, port = (
            authority.partition(":")[0],
            ":" in authority,
            authority.partition(":")[2],
        )
    if not host or (had_colon and not (port.isascii() and port.isdigit() and len(port) <= 5)):
        return None, None
    return host, port.lstrip("0") or ("0" if port else "")


class OriginPolicy:
    """Which ``Origin`` values a :class:`~wsmachine.ServerConnection` accepts.

    Give it to ``ServerConnection(origin_policy=...)``. An upgrade request whose ``Origin`` the
    policy refuses is answered with ``403 Forbidden`` and a short text body, and reported as a
    :class:`~wsmachine.Rejected` event whose ``error`` is a
    :class:`~wsmachine.RemoteProtocolError` with ``status_hint=403`` (and ``close_code=1008``,
    policy violation); the application never sees a :class:`~wsmachine.Handshake` for it.

    :param allowed: the origins to accept. A string is an exact origin,
        ``scheme://host[:port]``: the scheme and host compare case-insensitively and a default
        port (80 for http/ws, 443 for https/wss) may be written or left out, so
        ``"https://Example.com:443"`` matches what browsers send, ``"https://example.com"``.
        The string ``"null"`` matches the literal ``Origin: null`` of sandboxed pages and
        ``file:`` URLs; allow it only knowingly. A compiled :class:`re.Pattern` must match
        the whole origin (:meth:`re.Pattern.fullmatch`), written as browsers send it:
        lowercase scheme and host, no default port. Escape the dots:
        ``re.compile(r"https://[a-z0-9-]+\\.example\\.com")``.
    :param allow_missing: accept requests without an ``Origin`` header. Browsers always send
        one, other clients (scripts, servers, mobile apps) usually do not; allowing them is
        safe when they cannot carry a browser user's cookies.
    :param allow_same_host: also accept an ``Origin`` whose ``host[:port]`` equals the request's
        ``Host`` header: the page was served by this same host, the check Tornado makes by
        default.
    :raises ValueError: an allowed string is not an origin (a path, a query, a user part, or
        no ``://``).

    The policy only reads headers; it does not authenticate anyone. Patterns run on values
    of at most a few KiB (the handshake size limits), and patterns are the caller's own.
    """

    __slots__ = ("_exact", "_patterns", "allow_missing", "allow_same_host")

    def __init__(
        self,
        allowed: Iterable[str | re.Pattern[str]] = (),
        *,
        allow_missing: bool = False,
        allow_same_host: bool = False,
    ) -> None:
        exact: set[str] = set()
        patterns: list[re.Pattern[str]] = []
        for item in allowed:
            if isinstance(item, re.Pattern):
                patterns.append(item)
                continue
            if not isinstance(item, str):
                raise TypeError(f"allowed origins are str or re.Pattern, not {type(item)!r}")
            if item == "null":
                exact.add(item)
                continue
            normalized = _normalize(item)
            if normalized is None:
                raise ValueError(
                    f"{item!r} is not an origin: expected scheme://host[:port] with no path "
                    "(RFC 6454 §6.2)"
                )
            exact.add(normalized)
        self._exact = frozenset(exact)
        self._patterns = tuple(patterns)
        #: Whether a request without ``Origin`` is accepted.
        self.allow_missing = allow_missing
        #: Whether an ``Origin`` naming the request's own ``Host`` is accepted.
        self.allow_same_host = allow_same_host

    def __repr__(self) -> str:
        allowed = sorted(self._exact) + [p.pattern for p in self._patterns]
        return (
            f"OriginPolicy({allowed!r}, allow_missing={self.allow_missing}, "
            f"allow_same_host={self.allow_same_host})"
        )

    def __call__(self, handshake: Handshake) -> bool:
        """Whether ``handshake`` passes (the request's ``Origin`` and ``Host``)."""
        return self.allows(handshake.origin, handshake.host)

    def allows(self, origin: str | None, host: str | None = None) -> bool:
        """Whether a request with this ``Origin`` (``None``: no header) and ``Host`` passes."""
        if origin is None:
            return self.allow_missing
        normalized = _normalize(origin)
        value = origin if normalized is None else normalized
        if value in self._exact:
            return True
        if any(pattern.fullmatch(value) for pattern in self._patterns):
            return True
        if self.allow_same_host and host and normalized is not None:
            scheme, _, authority = normalized.partition("://")
            own_host, own_port = _split_port(host)
            if own_host is None:
                return False
            if own_port == _DEFAULT_PORTS.get(scheme):
                own_port = ""
            own = own_host.lower() + (f":{own_port}" if own_port else "")
            return authority == own
        return False
