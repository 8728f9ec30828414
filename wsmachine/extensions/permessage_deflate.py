"""permessage-deflate (RFC 7692): negotiation in both roles and the per-connection codec.

Inflation is bounded: a message never decompresses past what is left of ``max_message_size``,
and memory while inflating stays within that budget plus one byte, so a small frame that
would inflate to gigabytes fails with 1009 at once (RFC 6455 §10.4).
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Sequence

from ..errors import LocalProtocolError, RemoteProtocolError
from ..headers import ExtensionOffer
from .base import Extension, ExtensionCodec

__all__ = ["PerMessageDeflate", "PerMessageDeflateCodec", "max_compressed_size"]

_NAME = "permessage-deflate"
_RSV1 = 0x40
_TAIL = b"\x00\x00\xff\xff"  # the empty stored block a sync flush ends with (RFC 7692 §7.2.1)
_CONT = 0x0
# What may follow a final (BFINAL) block: nothing, or the one octet holding the header of an
# empty stored block that RFC 7692 §7.2.3.4 appends so that our _TAIL completes it.
_AFTER_FINAL = (b"", b"\x00")
# Window bits as the grammar allows them: decimal, no leading zeroes (RFC 7692 §7.1.2).
_BITS = {str(bits): bits for bits in range(8, 16)}
# zlib takes an output bound of at most sys.maxsize; a budget that large cannot fill up anyway.
_MAX_OUTPUT = sys.maxsize
_PARAMS = frozenset(
    {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }
)


def max_compressed_size(size: int) -> int:
    """The most bytes a frame of DEFLATE data holding ``size`` bytes takes:
    ``size + size // 8 + size // 256 + size // 512 + 16``.

    The first four terms are zlib's ``deflateBound()`` for its least compact settings: fixed
    Huffman codes spend 9 bits on each literal byte 144-255 (RFC 1951 §3.2.6), and zlib never
    does worse, whatever its level, memory level, window or strategy. The 16 bytes cover the
    frame's flushed end (RFC 7692 §7.2.1) and the octet §7.2.3.4 allows after a final block.
    Incompressible data grows by about 0.25 % with zlib's usual settings: 1 MiB of random
    bytes took 1,051,142 on the wire (issue 12).
    """
    return size + (size >> 3) + (size >> 8) + (size >> 9) + 16


def _window_bits(value: int | None, what: str) -> int | None:
    if value is not None and not 8 <= value <= 15:
        raise ValueError(f"{what} must be 8-15 (RFC 7692 §7.1.2), not {value}")
    return value


def _parse_params(offer: ExtensionOffer) -> dict[str, int | None]:
    """Check an offer's or response's parameters (RFC 7692 §7.1); return name -> value.

    Flags map to ``None``; window bits to their int; a bare ``client_max_window_bits`` to 0.

    :raises ValueError: an unknown or repeated parameter, or a bad value.
    """
    params: dict[str, int | None] = {}
    for key, value in offer.params:
        if key not in _PARAMS:
            raise ValueError(f"unknown parameter {key!r}")
        if key in params:
            raise ValueError(f"parameter {key!r} appears twice")
        if key.endswith("_no_context_takeover"):
            if value is not None:
                raise ValueError(f"{key} takes no value, got {value!r}")
            params[key] = None
            continue
        if value is None:
            if key == "server_max_window_bits":
                raise ValueError("server_max_window_bits needs a value")
            params[key] = 0
            continue
        bits = _BITS.get(value)
        if bits is None:
            raise ValueError(f"{key}={value!r}: expected 8-15 without leading zeroes")
        params[key] = bits
    return params


class PerMessageDeflate(Extension):
    """The permessage-deflate extension (RFC 7692), for either role.

    Negotiation parameters, as this endpoint asks for or accepts them:

    :param server_no_context_takeover: the server resets its compressor after every message.
        A client asks for it; a server applies it to every connection.
    :param client_no_context_takeover: the client resets its compressor after every message.
        A client promises it; a server requires it.
    :param server_max_window_bits: the server's LZ77 window (8-15). A client asks for it; a
        server uses it as its own limit and announces it.
    :param client_max_window_bits: the client's window (8-15). A client offering ``None``
        announces it can use any window the server names; a server limits clients to it when
        they allow that.

    Local compressor settings (memory per connection, see the docs' how-to):

    :param compress_level: zlib level 0-9 (6 balances speed and size).
    :param mem_level: zlib memory level 1-9; the compressor uses about
        ``2 ** (window_bits + 2) + 2 ** (mem_level + 9)`` bytes.
    :param window_bits: the largest window this endpoint's compressor uses (9-15), on top of
        what negotiation allows. Smaller windows cost less memory; any peer can inflate them.
    :param min_size: messages shorter than this are sent uncompressed (RSV1 clear).

    Window bits 8 cannot be produced by zlib. When negotiation asks this endpoint to compress
    with an 8-bit window, it sends every message uncompressed, which RFC 7692 §6 allows.
    """

    name = _NAME

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | None = None,
        compress_level: int = 6,
        mem_level: int = 5,
        window_bits: int = 12,
        min_size: int = 0,
    ) -> None:
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = _window_bits(server_max_window_bits, "server_max_window_bits")
        self.client_max_window_bits = _window_bits(client_max_window_bits, "client_max_window_bits")
        if not 0 <= compress_level <= 9 or not 1 <= mem_level <= 9 or not 9 <= window_bits <= 15:
            raise ValueError("compress_level must be 0-9, mem_level 1-9, window_bits 9-15")
        if not isinstance(min_size, int) or isinstance(min_size, bool):
            raise TypeError(f"min_size must be an int, not {type(min_size).__name__}")
        if min_size < 0:
            raise ValueError(f"min_size must not be negative, not {min_size}")
        self.compress_level = compress_level
        self.mem_level = mem_level
        self.window_bits = window_bits
        self.min_size = min_size

    def _codec(
        self, *, send_bits: int, send_reset: bool, receive_bits: int, receive_reset: bool
    ) -> PerMessageDeflateCodec:
        return PerMessageDeflateCodec(
            send_window_bits=min(send_bits, self.window_bits) if send_bits > 8 else 8,
            send_no_context_takeover=send_reset,
            receive_window_bits=receive_bits,
            receive_no_context_takeover=receive_reset,
            compress_level=self.compress_level,
            mem_level=self.mem_level,
            min_size=self.min_size,
        )

    # -- client ---------------------------------------------------------------------------

    def offer(self) -> ExtensionOffer:
        """Client: the offer, from this object's settings (RFC 7692 §7.1)."""
        params: list[tuple[str, str | None]] = []
        if self.server_no_context_takeover:
            params.append(("server_no_context_takeover", None))
        if self.client_no_context_takeover:
            params.append(("client_no_context_takeover", None))
        if self.server_max_window_bits is not None:
            params.append(("server_max_window_bits", str(self.server_max_window_bits)))
        bits = self.client_max_window_bits
        params.append(("client_max_window_bits", None if bits is None else str(bits)))
        return ExtensionOffer(_NAME, tuple(params))

    def accept_response(self, response: ExtensionOffer) -> PerMessageDeflateCodec:
        """Client: check the server's response against the offer (RFC 7692 §7.1).

        :raises RemoteProtocolError: the response breaks the grammar or asks for something
            the offer did not allow; the client fails the connection (1010 is not used since
            the handshake has not completed; the error reports 1002).
        """
        try:
            params = _parse_params(response)
        except ValueError as exc:
            raise RemoteProtocolError(
                f"permessage-deflate response is invalid: {exc} (RFC 7692 §7.1)"
            ) from None
        server_bits = params.get("server_max_window_bits")
        asked = self.server_max_window_bits
        if server_bits is None and asked is not None:
            raise RemoteProtocolError(
                f"the response lacks server_max_window_bits, which the offer asked for ({asked}) "
                "(RFC 7692 §7.1.2.1)"
            )
        if server_bits is not None and asked is not None and server_bits > asked:
            raise RemoteProtocolError(
                f"server_max_window_bits={server_bits} exceeds the offered {asked} "
                "(RFC 7692 §7.1.2.1)"
            )
        if self.server_no_context_takeover and "server_no_context_takeover" not in params:
            raise RemoteProtocolError(
                "the response lacks server_no_context_takeover, which the offer asked for "
                "(RFC 7692 §7.1.1.1)"
            )
        client_bits = params.get("client_max_window_bits")
        limit = self.client_max_window_bits
        if client_bits == 0:
            raise RemoteProtocolError(
                "client_max_window_bits in a response needs a value (RFC 7692 §7.1.2.2)"
            )
        if client_bits is not None and limit is not None and client_bits > limit:
            raise RemoteProtocolError(
                f"client_max_window_bits={client_bits} exceeds the offered {limit} "
                "(RFC 7692 §7.1.2.2)"
            )
        send_bits = client_bits or self.client_max_window_bits or 15
        return self._codec(
            send_bits=send_bits,
            send_reset="client_no_context_takeover" in params or self.client_no_context_takeover,
            receive_bits=server_bits or 15,
            receive_reset="server_no_context_takeover" in params,
        )

    # -- server ---------------------------------------------------------------------------

    def accept_offers(
        self, offers: Sequence[ExtensionOffer]
    ) -> tuple[ExtensionOffer, PerMessageDeflateCodec] | None:
        """Server: answer the first acceptable offer; decline offers with unknown, repeated
        or invalid parameters (RFC 7692 §5, §7.1)."""
        for offer in offers:
            try:
                params = _parse_params(offer)
            except ValueError:
                continue
            answer = self._answer(params)
            if answer is not None:
                return answer
        return None

    def _answer(
        self, params: dict[str, int | None]
    ) -> tuple[ExtensionOffer, PerMessageDeflateCodec] | None:
        response: list[tuple[str, str | None]] = []
        server_reset = self.server_no_context_takeover or "server_no_context_takeover" in params
        if server_reset:
            response.append(("server_no_context_takeover", None))
        client_reset = self.client_no_context_takeover or "client_no_context_takeover" in params
        if client_reset:
            response.append(("client_no_context_takeover", None))
        # Our compressor's window: at most what the client asked for and our own limit.
        server_bits = params.get("server_max_window_bits")
        if server_bits is not None or self.server_max_window_bits is not None:
            bits = min(b for b in (server_bits, self.server_max_window_bits) if b is not None)
            response.append(("server_max_window_bits", str(bits)))
        else:
            bits = 15
        # The client's window: only limited when the client said it can be (§7.1.2.2).
        client_bits: int | None = None
        if "client_max_window_bits" in params:
            offered = params["client_max_window_bits"] or 15
            if self.client_max_window_bits is not None:
                client_bits = min(offered, self.client_max_window_bits)
                response.append(("client_max_window_bits", str(client_bits)))
            elif offered < 15:
                client_bits = offered
        elif self.client_max_window_bits is not None:
            return None  # we need a smaller client window and this client cannot promise one
        codec = self._codec(
            send_bits=bits,
            send_reset=server_reset,
            receive_bits=client_bits or 15,
            receive_reset=client_reset,
        )
        return ExtensionOffer(_NAME, tuple(response)), codec


class PerMessageDeflateCodec(ExtensionCodec):
    """One connection's compressor and decompressor (RFC 7692 §6, §7.2)."""

    rsv_bits = _RSV1

    __slots__ = (
        "_compress_level",
        "_compressing",
        "_compressor",
        "_decompressor",
        "_history",
        "_history_size",
        "_inflating",
        "_mem_level",
        "_min_size",
        "_receive_bits",
        "_receive_reset",
        "_send_bits",
        "_send_reset",
    )

    def __init__(
        self,
        *,
        send_window_bits: int,
        send_no_context_takeover: bool,
        receive_window_bits: int,
        receive_no_context_takeover: bool,
        compress_level: int = 6,
        mem_level: int = 5,
        min_size: int = 0,
    ) -> None:
        self._send_bits = send_window_bits
        self._send_reset = send_no_context_takeover
        self._receive_bits = receive_window_bits
        self._receive_reset = receive_no_context_takeover
        self._compress_level = compress_level
        self._mem_level = mem_level
        self._min_size = min_size
        self._compressor: zlib._Compress | None = None  # created on first use: saves memory
        self._decompressor: zlib._Decompress | None = None
        self._inflating = False  # the message being received is compressed
        self._compressing = False  # the message being sent is compressed
        # Recent inflated output, kept to re-seed the window after a BFINAL block (§7.2.3.4).
        self._history: list[bytes] = []
        self._history_size = 0

    @property
    def send_window_bits(self) -> int:
        """The window this endpoint compresses with (8 means: it does not compress)."""
        return self._send_bits

    @property
    def receive_window_bits(self) -> int:
        """The window the peer compresses with."""
        return self._receive_bits

    # -- receiving ------------------------------------------------------------------------

    def decode(self, opcode: int, fin: bool, rsv: int, payload: bytes, max_size: int) -> bytes:
        """Inflate a compressed message's frame; pass other frames through (RFC 7692 §6.2).

        :raises RemoteProtocolError: RSV1 on a continuation frame (1002), data that is not
            valid DEFLATE (1007), or output beyond ``max_size`` (1009).
        """
        if opcode != _CONT:
            self._inflating = bool(rsv & _RSV1)
        elif rsv & _RSV1:
            raise RemoteProtocolError(
                "RSV1 set on a continuation frame: only a message's first frame may carry it "
                "(RFC 7692 §6.1)"
            )
        if not self._inflating:
            return payload
        inflater = self._decompressor
        if inflater is None:
            inflater = self._decompressor = self._new_decompressor()
        data = payload + _TAIL if fin else payload
        try:
            out = inflater.decompress(data, max_size + 1 if max_size < _MAX_OUTPUT else _MAX_OUTPUT)
        except zlib.error as exc:
            raise RemoteProtocolError(
                f"compressed message is not valid DEFLATE data: {exc} (RFC 7692 §7.2.2)",
                close_code=1007,
                reason="invalid compressed data",
            ) from None
        if len(out) > max_size:
            # The connection rewords this with the whole message's figures.
            raise RemoteProtocolError(
                f"compressed data inflates past the {max_size} bytes its message may still "
                "take (the limit counts inflated bytes: RFC 7692 §7.2.2, RFC 6455 §10.4)",
                close_code=1009,
            )
        if inflater.eof:
            # A final block ended the DEFLATE stream (§7.2.3.4): only the octet that example
            # shows, then our own tail, may follow.
            rest = inflater.unused_data
            if fin:
                rest = rest[:-4] if rest.endswith(_TAIL) else rest
            if rest not in _AFTER_FINAL:
                raise RemoteProtocolError(
                    "data follows the final DEFLATE block of a message (RFC 7692 §7.2.3.4)",
                    close_code=1007,
                    reason="invalid compressed data",
                )
        if fin:
            if self._receive_reset:
                self._decompressor = None
            elif inflater.eof:
                self._decompressor = self._new_decompressor(self._window_tail(out))
            else:
                self._remember(out)
        else:
            self._remember(out)
        return out

    def _new_decompressor(self, zdict: bytes = b"") -> zlib._Decompress:
        bits = self._receive_bits
        if zdict:
            return zlib.decompressobj(-bits, zdict=zdict)
        return zlib.decompressobj(-bits)

    def _remember(self, out: bytes) -> None:
        """Keep the last window's worth of output: at most two windows are held.

        Pieces shorter than the window are kept by reference; a longer one is cut to its last
        window, so a large message is not kept alive by this connection.
        """
        if self._receive_reset or not out:
            return
        window = 1 << self._receive_bits
        if len(out) >= window:
            self._history = [out[-window:]]
            self._history_size = window
            return
        history = self._history
        history.append(out)
        self._history_size += len(out)
        while self._history_size - len(history[0]) >= window:
            self._history_size -= len(history.pop(0))

    def _window_tail(self, out: bytes) -> bytes:
        self._remember(out)
        window = 1 << self._receive_bits
        tail = b"".join(self._history)[-window:]
        self._history = [tail]
        self._history_size = len(tail)
        return tail

    def max_wire_size(self, size: int) -> int:
        """A frame inflating to ``size`` bytes may take up to ``size + size // 8 + size // 256
        + size // 512 + 16`` on the wire, the most any zlib setting produces: bounding
        compressed frames by ``size`` itself refused incompressible messages the size limit
        allows (issue 12)."""
        return max_compressed_size(size)

    # -- sending --------------------------------------------------------------------------

    def encode(
        self, opcode: int, fin: bool, payload: bytes, *, compress: bool = True
    ) -> tuple[int, bytes]:
        """Compress a message's frame unless told not to (RFC 7692 §7.2.1).

        The choice is made on a message's first frame and holds for its continuations.
        """
        if opcode != _CONT:
            self._compressing = (
                compress and self._send_bits > 8 and (not fin or len(payload) >= self._min_size)
            )
        if not self._compressing:
            return 0, payload
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = zlib.compressobj(
                self._compress_level, zlib.DEFLATED, -self._send_bits, self._mem_level
            )
        mode = zlib.Z_FULL_FLUSH if fin and self._send_reset else zlib.Z_SYNC_FLUSH
        data = compressor.compress(payload) + compressor.flush(mode)
        if fin:
            if not data.endswith(_TAIL):  # pragma: no cover - zlib always ends a flush so
                raise LocalProtocolError("zlib did not end the flushed block as expected")
            data = data[:-4]
        return (_RSV1 if opcode != _CONT else 0), data
