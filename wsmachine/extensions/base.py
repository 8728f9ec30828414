"""The extension interface (RFC 6455 §9): negotiation kept apart from the per-connection codec.

An :class:`Extension` is a setting object given to a connection. It negotiates: a client asks
it for an offer and later checks the server's response; a server asks it to answer the
client's offers. Negotiation yields an :class:`ExtensionCodec`, the per-connection state that
transforms data frames and claims RSV bits.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from ..headers import ExtensionOffer

__all__ = ["Extension", "ExtensionCodec"]


class ExtensionCodec(abc.ABC):
    """A negotiated extension's per-connection state, applied to data frames in both directions.

    Codecs see data frames only (control frames are never transformed, RFC 6455 §5.5); they run
    in the order the server listed them for sending, and in reverse for receiving (§9).
    """

    #: The RSV bits (0x40, 0x20, 0x10) this codec may set and accepts on received frames.
    rsv_bits: int = 0

    @abc.abstractmethod
    def decode(self, opcode: int, fin: bool, rsv: int, payload: bytes, max_size: int) -> bytes:
        """Transform a received data frame's payload.

        ``opcode`` is TEXT or BINARY on a message's first frame and CONTINUATION after it.
        ``max_size`` is what is left of the message size limit: a codec that expands data
        must not produce more, and must fail with 1009 rather than allocate past it.

        :raises RemoteProtocolError: the frame breaks the extension's rules (with the close
            code to send).
        """

    @abc.abstractmethod
    def encode(
        self, opcode: int, fin: bool, payload: bytes, *, compress: bool = True
    ) -> tuple[int, bytes]:
        """Transform a data frame to send; return ``(rsv bits, payload)``."""

    def max_wire_size(self, size: int) -> int:
        """The largest payload a peer's frame may declare to carry ``size`` bytes once decoded.

        The receiver bounds frames by it before buffering them. ``size`` itself, unless the
        codec's encoding can make data larger (a compressor on incompressible data).
        """
        return size


class Extension(abc.ABC):
    """A configured extension: its name and how it negotiates, in either role."""

    #: The extension token, e.g. ``"permessage-deflate"``.
    name: str

    @abc.abstractmethod
    def offer(self) -> ExtensionOffer:
        """Client: the offer to put in ``Sec-WebSocket-Extensions``."""

    @abc.abstractmethod
    def accept_response(self, response: ExtensionOffer) -> ExtensionCodec:
        """Client: check the server's answer to our offer and build the codec.

        :raises RemoteProtocolError: the answer is not one our offer allows (the client then
            fails the connection, RFC 6455 §9.1).
        """

    @abc.abstractmethod
    def accept_offers(
        self, offers: Sequence[ExtensionOffer]
    ) -> tuple[ExtensionOffer, ExtensionCodec] | None:
        """Server: pick the first acceptable offer of this extension's name.

        Return the response to send and the codec, or ``None`` to decline every offer.
        """
