"""The framing layer (RFC 6455 §5): opcodes, masking, frame parsing and building.

Parsing is one loop over one receive buffer with an offset: header fields are read by
indexing, and the only copy per frame is the payload itself (§5.2 field by field).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from operator import index

from .errors import RemoteProtocolError

__all__ = [
    "KEEP_SIZE",
    "MAX_READ_SIZE",
    "READ_SIZE",
    "SHORT_HEADERS",
    "Frame",
    "FrameReader",
    "MaskKeySource",
    "Opcode",
    "apply_mask",
    "build_frame",
]


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 §5.2, §11.8)."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


#: A parsed frame: ``(opcode, fin, rsv, payload)``; ``rsv`` holds RSV1-3 as bits 0x40/0x20/0x10.
Frame = tuple[int, bool, int, bytes]

_KNOWN_OPCODES = frozenset(int(op) for op in Opcode)
_MAX_CONTROL_PAYLOAD = 125

# One XOR table per key byte value: masking long payloads with bytes.translate on four strided
# slices runs at C speed, where an int XOR pays for big-int conversions (measured: 0.34 GB/s
# against 0.18 GB/s at 1 MiB; the int XOR wins below about 2 KiB).
_XOR_TABLES = [bytes(b ^ k for b in range(256)) for k in range(256)]
_TRANSLATE_THRESHOLD = 2048


_KEY_LENGTH_MESSAGE = "the masking key must be 4 bytes (RFC 6455 §5.3)"
_UNMASK_RANGE_MESSAGE = "unmask(): need 4 <= start <= end <= len(buffer)"
_INPLACE_RANGE_MESSAGE = "unmask_inplace(): need 4 <= start <= offset <= end <= len(buffer)"
_JOIN_KEY_MESSAGE = "join_unmask(): the masking key must be 4 bytes, or empty for none"
_SPAN_RANGE_MESSAGE = "parse_span(): need 0 <= start <= unmasked <= end <= len(buffer)"


def _as_buffer(obj: object) -> bytes | bytearray | memoryview:
    """``obj``'s bytes as the compiled twins see them (``PyBUF_SIMPLE``): any C-contiguous
    buffer, one byte per item whatever its format.

    Raises what the C side raises: TypeError for an object without the buffer protocol,
    BufferError for a non-contiguous buffer. ``bytes`` and ``bytearray`` pass through untouched,
    so the common case costs two type checks.
    """
    if type(obj) is bytes or type(obj) is bytearray:
        return obj
    view = memoryview(obj)  # type: ignore[arg-type]  # TypeError without the buffer protocol
    if not view.c_contiguous:
        raise BufferError("memoryview: underlying buffer is not C-contiguous")
    if view.format == "B" and view.ndim == 1:
        return view
    return view.cast("B") if view.nbytes else b""  # cast() refuses an empty view


def _as_writable(obj: object) -> bytearray | memoryview:
    """``obj``'s bytes, writable, as the compiled twins take them (``PyBUF_SIMPLE |
    PyBUF_WRITABLE``): BufferError for a read-only or non-contiguous buffer."""
    if type(obj) is bytearray:
        return obj
    view = memoryview(obj)  # type: ignore[arg-type]  # TypeError without the buffer protocol
    if view.readonly:
        raise BufferError("Object is not writable.")
    if not view.c_contiguous:
        raise BufferError("memoryview: underlying buffer is not C-contiguous")
    if view.format == "B" and view.ndim == 1:
        return view
    return view.cast("B") if view.nbytes else bytearray()  # cast() refuses an empty view


def _py_apply_mask(data: bytes | bytearray | memoryview, key: bytes, /) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` repeated (RFC 6455 §5.3); its own inverse."""
    data = _as_buffer(data)
    key = _as_buffer(key)  # type: ignore[assignment]
    if len(key) != 4:  # even for empty data: the same contract as the C twin
        raise ValueError(_KEY_LENGTH_MESSAGE)
    n = len(data)
    if n < _TRANSLATE_THRESHOLD:
        if n == 0:
            return b""
        k = (bytes(key) * ((n >> 2) + 1))[:n]
        return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")
    if type(data) is memoryview:  # its slices have no translate()
        data = bytes(data)
    out = bytearray(n)
    tables = _XOR_TABLES
    out[0::4] = data[0::4].translate(tables[key[0]])
    out[1::4] = data[1::4].translate(tables[key[1]])
    out[2::4] = data[2::4].translate(tables[key[2]])
    out[3::4] = data[3::4].translate(tables[key[3]])
    return bytes(out)


def _py_masked_frame(
    header: bytes, key: bytes, payload: bytes | bytearray | memoryview, /
) -> bytes:
    """``header + key + payload`` masked with ``key``: a client's frame."""
    header = _as_buffer(header)  # type: ignore[assignment]
    key = _as_buffer(key)  # type: ignore[assignment]
    payload = _as_buffer(payload)
    if len(key) != 4:
        raise ValueError(_KEY_LENGTH_MESSAGE)
    if len(payload) < _TRANSLATE_THRESHOLD:
        return b"".join((header, key, _py_apply_mask(payload, key)))
    # Long payloads: one buffer, masked in place by four strided translations.
    out = bytearray(header)
    out += key
    start = len(out)
    out += payload
    tables = _XOR_TABLES
    for i in range(4):
        out[start + i :: 4] = out[start + i :: 4].translate(tables[key[i]])
    return bytes(out)


def _py_unmask(buffer: bytes | bytearray | memoryview, start: int, end: int, /) -> bytes:
    """``buffer[start:end]`` unmasked with the 4 bytes before ``start`` (the frame's key)."""
    start = index(start)  # the C twin's order: offsets first, then the buffer
    end = index(end)
    buffer = _as_buffer(buffer)
    if not 4 <= start <= end <= len(buffer):
        raise ValueError(_UNMASK_RANGE_MESSAGE)
    return _py_apply_mask(buffer[start:end], bytes(buffer[start - 4 : start]))


def _py_unmask_inplace(
    buffer: bytearray | memoryview, start: int, offset: int, end: int, /
) -> None:
    """Unmask ``buffer[offset:end]`` where it lies: part of the payload that starts at ``start``
    behind its 4-byte key ``buffer[start - 4:start]``, so byte ``i`` takes key byte
    ``(i - start) % 4``."""
    start = index(start)  # the C twin's order: offsets first, then the buffer
    offset = index(offset)
    end = index(end)
    view = _as_writable(buffer)
    if not 4 <= start <= offset <= end <= len(view):
        raise ValueError(_INPLACE_RANGE_MESSAGE)
    n = end - offset
    if not n:
        return
    shift = (offset - start) & 3
    key = bytes(view[start - 4 : start])
    key = key[shift:] + key[:shift]
    if n < _TRANSLATE_THRESHOLD or type(view) is not bytearray:
        view[offset:end] = _py_apply_mask(view[offset:end], key)
        return
    # Long runs of a bytearray: four strided translations where the bytes lie.
    tables = _XOR_TABLES
    for i in range(4):
        view[offset + i : end : 4] = view[offset + i : end : 4].translate(tables[key[i]])


def _py_join_unmask(parts: object, key: bytes | bytearray | memoryview, /) -> bytes:
    """``b"".join(parts)`` masked with the 4-byte ``key``, or as it is for an empty key."""
    # Each part as the C twin takes it: TypeError for what is not a buffer, BufferError for a
    # non-contiguous one (where bytes.join would raise TypeError).
    data = b"".join([_as_buffer(part) for part in parts])  # type: ignore[attr-defined]
    key = _as_buffer(key)
    if len(key) not in (0, 4):
        raise ValueError(_JOIN_KEY_MESSAGE)
    return _py_apply_mask(data, bytes(key)) if key else data


class MaskKeySource:
    """Masking keys from the OS CSPRNG (RFC 6455 §5.3, §10.3), drawn in batches.

    One ``os.urandom`` call serves 256 frames, which keeps a strong source cheap.
    """

    __slots__ = ("_pool", "_pos")

    _BATCH = 1024

    def __init__(self) -> None:
        self._pool = b""
        self._pos = 0

    def next_key(self) -> bytes:
        """Return 4 fresh random bytes."""
        pos = self._pos
        if pos + 4 > len(self._pool):
            self._pool = os.urandom(self._BATCH)
            pos = 0
        self._pos = pos + 4
        return self._pool[pos : pos + 4]


def build_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask_key: bytes | None = None,
) -> bytes:
    """Return one frame's bytes; ``mask_key`` (4 bytes) masks the payload, as clients must."""
    header = frame_header(opcode, len(payload), fin=fin, rsv=rsv, masked=mask_key is not None)
    if mask_key is None:
        return header + payload
    return masked_frame(header, mask_key, payload)


def frame_header(
    opcode: int, length: int, *, fin: bool = True, rsv: int = 0, masked: bool = False
) -> bytes:
    """The header of a frame of ``length`` payload bytes, up to its mask key (RFC 6455 §5.2:
    the length in the fewest bytes of the three forms)."""
    b0 = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if masked else 0
    if length < 126:
        return bytes((b0, mask_bit | length))
    if length < 0x10000:
        return bytes((b0, mask_bit | 126)) + length.to_bytes(2, "big")
    return bytes((b0, mask_bit | 127)) + length.to_bytes(8, "big")


#: The 2-byte header of an unmasked final TEXT or BINARY frame with a payload under 126 bytes,
#: by opcode and length: a server sending small messages looks it up instead of building it.
SHORT_HEADERS: dict[int, tuple[bytes, ...]] = {
    opcode: tuple(bytes((0x80 | opcode, n)) for n in range(126))
    for opcode in (Opcode.TEXT, Opcode.BINARY)
}


def _error(message: str, code: int = 1002, reason: str | None = None) -> RemoteProtocolError:
    return RemoteProtocolError(message, close_code=code, reason=reason)


#: What :meth:`FrameReader.reserve` offers when the caller gives no size hint, and the size
#: of the shared buffers it offers when nothing is pending (one socket read's worth).
READ_SIZE = 256 * 1024
#: What a connection keeps of such a buffer while only a small frame is unfinished.
KEEP_SIZE = 64 * 1024
#: The largest read it offers for a size hint (a frame's rest may be offered whole, beyond it).
MAX_READ_SIZE = 256 * 1024
#: A frame's rest is offered whole once this many times its arrived part covers it.
_GROW_FACTOR = 16
#: Free room worth offering as it is, rather than growing the buffer for a full read.
_MIN_SPARE = 4096
#: A binary frame with at least this much still to come keeps feed()'s reads as they are.
_PIECES_MIN = 64 * 1024
#: ... each read of at least this size: a smaller one is copied into the buffer (with those
#: kept so far), so a peer trickling bytes cannot make a list of one object per byte.
_PIECE_MIN_READ = 1024
#: Read-sized buffers free for any reader with nothing pending (list.pop and list.append
#: are atomic, so threads share it safely). Readers hold a buffer only while a frame is
#: unfinished: an idle connection holds none, and a connection whose reads end on a frame's
#: end (a message per read) takes and gives back the same buffer instead of allocating one.
_POOL: list[bytearray] = []
_POOL_SIZE = 8


def _pooled() -> bytearray:
    """A read-sized buffer from the pool, or a new one."""
    try:
        buf = _POOL.pop()  # atomic: no two readers get the same one
    except IndexError:
        return bytearray(READ_SIZE)
    try:  # a resize fails while a view of it lives on: such a buffer is not handed out
        del buf[-1:]
        buf.append(0)
    except BufferError:
        return bytearray(READ_SIZE)
    return buf


class FrameReader:
    """Split a byte stream into frames, checking every §5.2 rule that needs no message context.

    :param expect_masked: ``True`` on the server (clients must mask, §5.1), ``False`` on the
        client (servers must not).
    :param max_frame_size: the largest payload accepted on the wire; a larger declared length
        fails with 1009 before any of the payload is buffered.
    :param rsv_allowed: the RSV bits that negotiated extensions claim (§5.2, §9).

    Bytes come in two ways: :meth:`feed` takes bytes read elsewhere (only the unfinished frame
    at their end is copied in), and :meth:`reserve` + :meth:`commit` let the caller read
    straight into the reader's buffer. The unfinished head frame is kept at the start of
    ``_buf``, whose length is its capacity: ``_end`` bytes hold data. Its payload is unmasked
    in place up to ``_unmasked`` when :meth:`peek_payload` looks at it, so no byte is
    unmasked twice. With nothing pending the reader holds no buffer.
    """

    __slots__ = (
        "_buf",
        "_end",
        "_piece_bytes",
        "_pieces",
        "_unmasked",
        "expect_masked",
        "max_frame_size",
        "rsv_allowed",
    )

    def __init__(self, *, expect_masked: bool, max_frame_size: int, rsv_allowed: int = 0) -> None:
        self._buf = bytearray()
        self._end = 0  # bytes of _buf that hold data
        self._unmasked = 0  # the head frame's payload is unmasked in place below this offset
        self._pieces: list[bytes | memoryview] | None = None  # see _start_pieces
        self._piece_bytes = 0  # their total size, kept: not summed again at every read
        self.expect_masked = expect_masked
        self.max_frame_size = max_frame_size
        self.rsv_allowed = rsv_allowed

    def buffered(self) -> int:
        """How many received bytes wait for the rest of their frame."""
        return self._end + (self._piece_bytes if self._pieces else 0)

    def capacity(self) -> int:
        """The size of the receive buffer held (0 when nothing is pending)."""
        return len(self._buf)

    def peek_head(self) -> tuple[int, int] | None:
        """The opcode and RSV bits of the incomplete frame at the head of the buffer, if any."""
        if not self._end:
            return None
        b0 = self._buf[0]
        return b0 & 0x0F, b0 & 0x70

    def head_checked(self) -> bool:
        """Whether the incomplete head frame's header has come as far as its length, so that
        :meth:`feed` checked it against every §5.2 rule (the masking key may still be out)."""
        n = self._end
        if n < 2:
            return False
        length = self._buf[1] & 0x7F
        return n >= (2 if length < 126 else 4 if length == 126 else 10)

    def _head_size(self) -> int | None:
        """The whole head frame's size on the wire, once its header has arrived."""
        buf, n = self._buf, self._end
        if n < 2:
            return None
        b1 = buf[1]
        size = b1 & 0x7F
        header = 2
        if size == 126:
            if n < 4:
                return None
            size = (buf[2] << 8) | buf[3]
            header = 4
        elif size == 127:
            if n < 10:
                return None
            size = int.from_bytes(buf[2:10], "big")
            header = 10
        return header + (4 if b1 & 0x80 else 0) + size

    def peek_payload(self, start: int) -> memoryview:
        """The unmasked payload bytes of the incomplete head frame, from offset ``start`` up
        to what has arrived (empty while its header is incomplete), as a view of the buffer:
        release it before the next call. What arrived since the last look is unmasked in
        place first, once.

        Call only after :meth:`feed` or :meth:`commit` returned without an error.
        """
        buf = self._buf
        n = self._end
        if n < 2:
            return memoryview(b"")
        b1 = buf[1]
        size = b1 & 0x7F
        header = 2 if size < 126 else 4 if size == 126 else 10
        if b1 & 0x80:
            header += 4
            if n > header and n > self._unmasked:
                unmask_inplace(buf, header, max(self._unmasked, header), n)
                self._unmasked = n
        if n <= header + start:
            return memoryview(b"")
        return memoryview(buf)[header + start : n]

    def feed(
        self, data: bytes | bytearray | memoryview
    ) -> tuple[list[Frame], RemoteProtocolError | None]:
        """Add bytes; return the frames now complete and, if the stream broke a rule, the error.

        Frames before a bad one are returned with the error, so no earlier data is lost. After
        an error the reader must not be fed again. The caller may reuse ``data`` afterwards:
        what the reader keeps, it copies.
        """
        if type(data) is not bytes and type(data) is not bytearray:
            data = _as_buffer(data)
        if self._pieces is not None:
            return self._add_piece(self._pieces, data)
        end = self._end
        max_size = self.max_frame_size
        if not end:
            # Nothing pending: parse the bytes where they are, keep only an unfinished frame.
            n = len(data)
            frames, pos, fault = parse_span(
                data, 0, n, 0, self.expect_masked, max_size, 0x70 & ~self.rsv_allowed
            )
            if pos < n and fault is None:
                self._buf = bytearray(memoryview(data)[pos:] if pos else data)
                self._end = n - pos
                self._unmasked = 0
                self._start_pieces()
        else:
            buf = self._buf
            n = len(data)
            try:
                if end == len(buf):
                    buf += data
                else:
                    buf[end : end + n] = data  # in the spare room if there is enough
            except BufferError:  # a view of it is still held (get_buffer's contract broken)
                buf = self._buf = self._moved(0, end, end + n)
                buf[end : end + n] = data
            frames, pos, fault = self._parse(end + n, False)
            if self._end and fault is None:
                self._start_pieces()
        if fault is None:
            return frames, None
        return frames, _fault_error(fault, self.expect_masked, max_size)

    def _start_pieces(self) -> None:
        """A large binary frame under way, fed by :meth:`feed`: keep its next reads as they
        come (``bytes`` are immutable: kept, not copied) and unmask them into the payload in
        one pass once the frame is whole, instead of copying each into the buffer first. Only
        binary frames: a text frame's bytes are checked while they arrive, in the buffer."""
        buf = self._buf
        if buf[0] & 0x0F != Opcode.BINARY:
            return
        size = self._head_size()
        if size is None or size - self._end < _PIECES_MIN:
            return
        b1 = buf[1]
        length = b1 & 0x7F
        start = (2 if length < 126 else 4 if length == 126 else 10) + (4 if b1 & 0x80 else 0)
        if self._end >= start:  # the masking key is in
            self._pieces = []
            self._piece_bytes = 0

    def _add_piece(
        self, pieces: list[bytes | memoryview], data: bytes | bytearray | memoryview
    ) -> tuple[list[Frame], RemoteProtocolError | None]:
        """:meth:`feed` while a large binary frame's reads are kept (:meth:`_start_pieces`)."""
        n = len(data)
        if n < _PIECE_MIN_READ:
            self._join_pieces()
            return self.feed(data)
        if type(data) is not bytes:
            data = bytes(data)  # the caller may reuse its buffer
        size = self._head_size()
        assert size is not None
        have = self._end + self._piece_bytes
        if have + n < size:
            pieces.append(data)
            self._piece_bytes += n
            return [], None
        # The frame is whole: its payload from where its bytes lie, unmasked in one pass.
        buf = self._buf
        b0 = buf[0]
        b1 = buf[1]
        length = b1 & 0x7F
        start = (2 if length < 126 else 4 if length == 126 else 10) + (4 if b1 & 0x80 else 0)
        cut = size - have  # the last read's bytes that belong to the frame
        key = bytes(buf[start - 4 : start]) if b1 & 0x80 else b""
        with memoryview(buf) as head, memoryview(data) as tail:
            payload = join_unmask([head[start : self._end], *pieces, tail[:cut]], key)
            rest = bytes(tail[cut:])
        frame = (b0 & 0x0F, b0 >= 0x80, b0 & 0x70, payload)
        self._pieces = None
        self._buf = bytearray()
        self._end = self._unmasked = 0
        if not rest:
            return [frame], None
        frames, error = self.feed(rest)
        frames.insert(0, frame)
        return frames, error

    def _join_pieces(self) -> None:
        """Move kept reads into the buffer (before reading into it)."""
        pieces = self._pieces
        assert pieces is not None
        self._pieces = None
        buf = self._buf
        end = self._end
        for piece in pieces:
            n = len(piece)
            buf[end : end + n] = piece
            end += n
        self._end = end

    def reserve(self, sizehint: int = -1) -> memoryview:
        """A writable view of the buffer's free room, for the caller to read into; then report
        the bytes with :meth:`commit`. Its size: ``sizehint`` (at most :data:`MAX_READ_SIZE`;
        :data:`READ_SIZE` without a hint), or the rest of the head frame when that is larger
        and at most :data:`_GROW_FACTOR` times what has arrived of it, so a large frame's bytes
        land where they stay."""
        if self._pieces is not None:
            self._join_pieces()
        want = READ_SIZE if sizehint <= 0 else min(sizehint, MAX_READ_SIZE)
        end = self._end
        if not end:  # nothing pending, so no buffer held: a shared one, or a new one
            buf = self._buf = _pooled() if want <= READ_SIZE else bytearray(want)
            return memoryview(buf)
        buf = self._buf
        spare = len(buf) - end
        size = self._head_size()
        rest = 0 if size is None else size - end  # what the head frame still needs
        if rest > want:
            # A large frame under way: room for its rest (once enough of it has come) and a
            # read after it, so the next frame's start lands behind it, in the same buffer.
            need = min(rest, max(want, _GROW_FACTOR * end))
            if spare < need:
                buf = self._buf = self._moved(0, end, end + need + want)
        elif spare < min(want, max(rest, _MIN_SPARE)):
            buf = self._buf = self._moved(0, end, end + want)
        return memoryview(buf)[end:]

    def commit(self, nbytes: int) -> tuple[list[Frame], RemoteProtocolError | None]:
        """``nbytes`` were written at the start of the view :meth:`reserve` returned (released
        by the caller since); parse as :meth:`feed` does."""
        frames, _, fault = self._parse(self._end + nbytes, True)
        if fault is None:
            return frames, None
        return frames, _fault_error(fault, self.expect_masked, self.max_frame_size)

    def _parse(self, end: int, keep_room: bool) -> tuple[list[Frame], int, Fault | None]:
        """Parse ``_buf[:end]``; keep its unfinished frame at the start, or drop the buffer.

        ``keep_room``: the buffer is read into (:meth:`reserve`), so its free room is kept for
        the next reads; else (:meth:`feed`) it ends with the data and the allocator may
        shrink it, as appends grow it again.
        """
        buf = self._buf
        frames, pos, fault = parse_span(
            buf,
            0,
            end,
            self._unmasked,
            self.expect_masked,
            self.max_frame_size,
            0x70 & ~self.rsv_allowed,
        )
        if pos == end or fault is not None:
            # Nothing pending (or nothing more to read): no buffer; a read-sized one goes back
            # to the pool for the next reader with nothing pending.
            self._buf = bytearray()
            self._end = self._unmasked = 0
            if keep_room and len(buf) == READ_SIZE and len(_POOL) < _POOL_SIZE:
                _POOL.append(buf)
        elif pos and not keep_room:
            try:
                del buf[:pos]  # moves the start; shrinks the allocation when it was mostly used
            except BufferError:  # a view of it is still held (get_buffer's contract broken)
                self._buf = self._moved(pos, end, end - pos)
            self._end = end - pos
            self._unmasked = 0
        elif pos:
            # Move the unfinished frame to the front, keeping the room behind it: a run of
            # large frames reuses one buffer. Its source is a view where the two do not overlap.
            rest = end - pos
            if pos >= rest:
                with memoryview(buf) as view:
                    buf[:rest] = view[pos:end]
            else:
                buf[:rest] = buf[pos:end]
            end = rest
            self._end = end
            self._unmasked = 0
            if len(buf) - end > MAX_READ_SIZE:
                # Room left by a large frame, more than the next one needs: give it back.
                keep = max(end, self._head_size() or 0) + READ_SIZE
                if len(buf) > keep:
                    try:
                        del buf[keep:]
                    except BufferError:  # a view of it is still held (get_buffer's contract)
                        self._buf = self._moved(0, end, keep)
            self._keep_small(buf, end)
        else:
            self._end = end
            if keep_room:
                self._keep_small(buf, end)
        return frames, pos, fault

    def _keep_small(self, buf: bytearray, end: int) -> None:
        """A pool-sized buffer holding only a small unfinished frame: move the frame to a
        buffer of :data:`KEEP_SIZE` and give the big one back, so a connection that stops in
        the middle of a small frame (or a peer that trickles) holds little."""
        if len(buf) != READ_SIZE or end > KEEP_SIZE // 2:
            return
        size = self._head_size()
        if size is not None and size > KEEP_SIZE // 2:
            return
        self._buf = self._moved(0, end, KEEP_SIZE)
        if len(_POOL) < _POOL_SIZE:
            _POOL.append(buf)

    def _moved(self, start: int, stop: int, size: int) -> bytearray:
        """A new buffer of ``size`` bytes starting with ``_buf[start:stop]``."""
        new = bytearray(size)
        with memoryview(self._buf) as view:
            new[: stop - start] = view[start:stop]
        return new


class FaultKind(enum.IntEnum):
    """Kinds of rule broken, as parse_frames reports them.

    The C twin exports the same table as ``_speedups.FAULT_KINDS``, generated from its one
    list; tests/test_speedups_parity.py checks that the two are equal.
    """

    NONMINIMAL_16 = 1
    TOP_BIT = 2
    NONMINIMAL_64 = 3
    MASK = 4
    RSV = 5
    OPCODE = 6
    CONTROL_LONG = 7
    CONTROL_FRAGMENTED = 8
    TOO_BIG = 9


# Plain ints on the hot path: an enum member lookup per fault check costs an attribute load.
_NONMINIMAL_16 = int(FaultKind.NONMINIMAL_16)
_TOP_BIT = int(FaultKind.TOP_BIT)
_NONMINIMAL_64 = int(FaultKind.NONMINIMAL_64)
_MASK = int(FaultKind.MASK)
_RSV = int(FaultKind.RSV)
_OPCODE = int(FaultKind.OPCODE)
_CONTROL_LONG = int(FaultKind.CONTROL_LONG)
_CONTROL_FRAGMENTED = int(FaultKind.CONTROL_FRAGMENTED)
_TOO_BIG = int(FaultKind.TOO_BIG)

Fault = tuple[int, int]


def _py_parse_frames(
    buf: bytes | bytearray | memoryview,
    expect_masked: bool,
    max_size: int,
    rsv_forbidden: int,
    /,
) -> tuple[list[Frame], int, Fault | None]:
    """Split ``buf`` into frames: the complete ones, the offset after them, and the first
    broken rule as ``(kind, value)`` (RFC 6455 §5.2, §5.5), or ``None``.

    :func:`_py_parse_span` over the whole of ``buf``, nothing unmasked in place.
    """
    # The arguments are read in the C twin's order, the buffer last, so a bad one fails the
    # same way; its length, the span's end, is known only then. parse_span reads them again,
    # now plain bool and ints that cannot fail.
    masked = bool(expect_masked)
    max_size = index(max_size)
    rsv_forbidden = index(rsv_forbidden)
    buf = _as_buffer(buf)
    return _py_parse_span(buf, 0, len(buf), 0, masked, max_size, rsv_forbidden)


def _py_parse_span(  # noqa: PLR0917 - positional only, as the C twin takes them
    buf: bytes | bytearray | memoryview,
    start: int,
    end: int,
    unmasked: int,
    expect_masked: bool,
    max_size: int,
    rsv_forbidden: int,
    /,
) -> tuple[list[Frame], int, Fault | None]:
    """The frames in ``buf[start:end]``: the complete ones, the offset after them, and the
    first broken rule as ``(kind, value)`` (RFC 6455 §5.2, §5.5), or ``None``.

    One loop with an offset: header fields are read by indexing, and the only copy per frame
    is its payload. For a receive buffer read into in place, payload bytes at offsets below
    ``unmasked`` were already unmasked there (:func:`_py_unmask_inplace`) and are copied as
    they are, the rest unmasked while copied.
    """
    # The arguments are read in the C twin's order, so a bad one fails the same way.
    if type(start) is not int:
        start = index(start)
    if type(end) is not int:
        end = index(end)
    if type(unmasked) is not int:
        unmasked = index(unmasked)
    expect_mask = 0x80 if expect_masked else 0
    if type(max_size) is not int:
        max_size = index(max_size)
    if type(rsv_forbidden) is not int:
        rsv_forbidden = index(rsv_forbidden)
    buf = _as_buffer(buf)
    if not 0 <= start <= unmasked <= end <= len(buf):
        raise ValueError(_SPAN_RANGE_MESSAGE)
    frames: list[Frame] = []
    append = frames.append
    n = end
    pos = start
    while n - pos >= 2:
        b0 = buf[pos]
        b1 = buf[pos + 1]
        opcode = b0 & 0x0F
        length = b1 & 0x7F
        header = 2
        if length == 126:
            if n - pos < 4:
                break
            length = (buf[pos + 2] << 8) | buf[pos + 3]
            header = 4
            if length < 126:
                return frames, pos, (_NONMINIMAL_16, length)
        elif length == 127:
            if n - pos < 10:
                break
            length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
            header = 10
            if length >> 63:
                return frames, pos, (_TOP_BIT, 0)
            if length < 0x10000:
                return frames, pos, (_NONMINIMAL_64, length)
        if (b1 & 0x80) != expect_mask:
            return frames, pos, (_MASK, 0)
        if b0 & rsv_forbidden:
            return frames, pos, (_RSV, b0 & 0x70)
        if opcode not in _KNOWN_OPCODES:
            return frames, pos, (_OPCODE, opcode)
        if opcode & 0x8:
            if length > _MAX_CONTROL_PAYLOAD:
                return frames, pos, (_CONTROL_LONG, length)
            if not b0 & 0x80:
                return frames, pos, (_CONTROL_FRAGMENTED, 0)
        elif length > max_size:
            return frames, pos, (_TOO_BIG, length)
        first = pos + header + (4 if expect_mask else 0)
        last = first + length
        if last > n:
            break
        payload: bytes
        if not expect_mask or unmasked >= last:
            payload = bytes(buf[first:last])
        elif unmasked <= first:
            payload = _py_apply_mask(buf[first:last], bytes(buf[first - 4 : first]))
        else:  # a frame unmasked in place up to `unmasked`: the rest is unmasked here
            shift = (unmasked - first) & 3
            key = bytes(buf[first - 4 : first])
            payload = bytes(buf[first:unmasked]) + _py_apply_mask(
                buf[unmasked:last], key[shift:] + key[:shift]
            )
        append((opcode, b0 >= 0x80, b0 & 0x70, payload))
        pos = last
    return frames, pos, None


def _fault_error(fault: Fault, expect_masked: bool, max_size: int) -> RemoteProtocolError:
    """The error for a rule broken, saying what was wrong and citing the RFC."""
    kind, value = fault
    if kind == _NONMINIMAL_16:
        return _error(
            f"frame length {value} used the 16-bit form; the shortest form must be used "
            "(RFC 6455 §5.2)"
        )
    if kind == _TOP_BIT:
        return _error("frame length has its most significant bit set (RFC 6455 §5.2)")
    if kind == _NONMINIMAL_64:
        return _error(
            f"frame length {value} used the 64-bit form; the shortest form must be used "
            "(RFC 6455 §5.2)"
        )
    if kind == _MASK:
        return _error(
            "unmasked frame from a client: clients must mask every frame (RFC 6455 §5.1)"
            if expect_masked
            else "masked frame from a server: servers must not mask (RFC 6455 §5.1)"
        )
    if kind == _RSV:
        return _error(
            f"reserved bits 0x{value:02x} set with no extension negotiated that defines them "
            "(RFC 6455 §5.2)"
        )
    if kind == _OPCODE:
        return _error(f"unknown opcode 0x{value:x} (RFC 6455 §5.2)")
    if kind == _CONTROL_LONG:
        return _error(
            f"control frame payload is {value} bytes; at most 125 are allowed (RFC 6455 §5.5)"
        )
    if kind == _CONTROL_FRAGMENTED:
        return _error("fragmented control frame (RFC 6455 §5.5)")
    return _error(
        f"frame payload of {value} bytes exceeds the limit of {max_size} bytes "
        "(max_frame_size, at most max_message_size, with room for permessage-deflate's "
        "expansion when agreed; RFC 6455 §10.4)",
        1009,
        "frame too big",
    )


# The compiled versions when they were built (an optional extension), else the pure-Python
# ones. Both give the same result or raise the same exception for every argument:
# tests/test_speedups_parity.py checks that over the whole argument domain.
apply_mask: Callable[[bytes | bytearray, bytes], bytes]
masked_frame: Callable[[bytes, bytes, bytes], bytes]
unmask: Callable[[bytes | bytearray, int, int], bytes]
unmask_inplace: Callable[[bytearray | memoryview, int, int, int], None]
join_unmask: Callable[[list[bytes | memoryview], bytes], bytes]
parse_frames: Callable[[bytes | bytearray, bool, int, int], tuple[list[Frame], int, Fault | None]]
parse_span: Callable[
    [bytes | bytearray | memoryview, int, int, int, bool, int, int],
    tuple[list[Frame], int, Fault | None],
]
try:
    from ._speedups import (
        apply_mask,
        join_unmask,
        masked_frame,
        parse_frames,
        parse_span,
        unmask,
        unmask_inplace,
    )
except ImportError:  # pragma: no cover - only where the extension was not built (no compiler)
    apply_mask = _py_apply_mask
    masked_frame = _py_masked_frame
    unmask = _py_unmask
    unmask_inplace = _py_unmask_inplace
    join_unmask = _py_join_unmask
    parse_frames = _py_parse_frames
    parse_span = _py_parse_span
