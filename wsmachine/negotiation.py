"""Subprotocol and extension negotiation (RFC 6455 §4, §9), apart from how the opening travels.

An HTTP/1.1 upgrade (``wsmachine.handshake``) and an extended CONNECT over HTTP/2 or
HTTP/3 (:mod:`wsmachine.extended_connect`) carry the same ``Sec-WebSocket-Protocol`` and
``Sec-WebSocket-Extensions`` headers with the same meaning (RFC 8441 §5, RFC 9220 §3), so both
negotiate here: the server answers the client's offers, the client checks the server's answer.
Either way the result is an :class:`Agreement`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from .errors import InvalidArgumentError, RemoteProtocolError
from .extensions.base import Extension, ExtensionCodec
from .headers import ExtensionOffer, parse_extension_list, parse_token_list

__all__ = [
    "Agreement",
    "accept_offers",
    "check_answer",
    "choose_subprotocol",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Agreement:
    """What the two sides agreed on: it configures one connection's framing.

    The codecs hold per-connection state (a compressor's window): give an agreement to one
    connection only.
    """

    #: The subprotocol agreed on, or ``None``.
    subprotocol: str | None
    #: The extensions agreed on, as the server's answer lists them (the order they apply in).
    extensions: tuple[ExtensionOffer, ...]
    #: Their codecs, in the same order.
    codecs: tuple[ExtensionCodec, ...]


def choose_subprotocol(
    supported: Sequence[str], offered: Sequence[str], chosen: str | None = None
) -> str | None:
    """Server: the subprotocol to answer with: ``chosen`` if given, else the first of
    ``supported`` that the client ``offered`` (``None`` when there is none).

    :raises InvalidArgumentError: ``chosen`` was not offered by the client.
    """
    if chosen is None:
        return next((p for p in supported if p in offered), None)
    if chosen not in offered:
        raise InvalidArgumentError(
            f"subprotocol {chosen!r} was not offered by the client "
            f"({list(offered)}) (RFC 6455 §4.2.2 item 5.4)"
        )
    return chosen


def accept_offers(
    extensions: Sequence[Extension], offers: Sequence[ExtensionOffer]
) -> tuple[list[ExtensionOffer], list[ExtensionCodec]]:
    """Server: answer the client's extension offers with this server's ``extensions``, in
    the order it applies them. Returns the answers to send and their codecs."""
    responses: list[ExtensionOffer] = []
    codecs: list[ExtensionCodec] = []
    rsv = 0
    for extension in extensions:
        # One answer per extension name, and no two extensions on the same RSV bit
        # (RFC 6455 §9.1): a later setting of an accepted name is an alternative.
        if any(response.name == extension.name for response in responses):
            continue
        named = [offer for offer in offers if offer.name == extension.name]
        chosen = extension.accept_offers(named) if named else None
        if chosen is not None and not chosen[1].rsv_bits & rsv:
            rsv |= chosen[1].rsv_bits
            responses.append(chosen[0])
            codecs.append(chosen[1])
    return responses, codecs


def check_answer(
    subprotocols: Sequence[str],
    extensions: Sequence[Extension],
    protocol_values: Sequence[bytes],
    extension_values: Sequence[bytes],
) -> Agreement:
    """Client: check the server's ``Sec-WebSocket-Protocol`` and ``Sec-WebSocket-Extensions``
    values against what this client offered, and build the codecs.

    :raises RemoteProtocolError: the server chose a subprotocol or an extension that was not
        offered, chose several, or answered an offer in a way it does not allow; the client
        must then fail the connection (RFC 6455 §4.1, §9.1).
    """
    protocols = parse_token_list(list(protocol_values), "Sec-WebSocket-Protocol")
    if len(protocols) > 1 or (protocols and protocols[0] not in subprotocols):
        raise RemoteProtocolError(
            f"server chose subprotocol(s) {protocols}: expected one of those offered, "
            f"{list(subprotocols)} (RFC 6455 §4.1 item 6)"
        )
    accepted = parse_extension_list(list(extension_values))
    names: set[str] = set()
    codecs: list[ExtensionCodec] = []
    rsv = 0
    for offer in accepted:
        candidates = [ext for ext in extensions if ext.name == offer.name]
        if not candidates or offer.name in names:
            raise RemoteProtocolError(
                f"server accepted extension {offer.name!r}, which was not offered or "
                "was accepted twice (RFC 6455 §4.1 item 5, §9.1)"
            )
        names.add(offer.name)
        # Our alternatives of one extension are offered in order; the first that takes
        # this answer wins (each raises on an answer its offer does not allow).
        codec = _first_accepting(candidates, offer)
        if codec.rsv_bits & rsv:
            raise RemoteProtocolError(
                f"server accepted extension {offer.name!r}, whose reserved bits another "
                "accepted extension already uses (RFC 6455 §9.1, RFC 7692 §5)"
            )
        rsv |= codec.rsv_bits
        codecs.append(codec)
    return Agreement(protocols[0] if protocols else None, tuple(accepted), tuple(codecs))


def _first_accepting(candidates: Sequence[Extension], response: ExtensionOffer) -> ExtensionCodec:
    error: RemoteProtocolError | None = None
    for extension in candidates:
        try:
            return extension.accept_response(response)
        except RemoteProtocolError as exc:
            error = error or exc
    assert error is not None
    raise error
