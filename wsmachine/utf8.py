"""UTF-8 validation of text messages (RFC 6455 §5.6, §8.1), one-shot and incremental.

CPython's C codec validates and decodes in one pass, so whole messages use ``bytes.decode``.
Fragmented messages use the incremental decoder, which already rejects a bad byte as soon as it
arrives, with one gap: it holds back ``ED A0``-``ED BF`` (the start of a UTF-16 surrogate,
never valid in UTF-8, RFC 3629 §4) until the third byte comes. :class:`IncrementalValidator`
closes that gap, so invalid text fails at the first fragment that makes it impossible.
"""

from __future__ import annotations

from codecs import utf_8_decode

__all__ = ["IncrementalValidator", "InvalidUTF8Error"]


class InvalidUTF8Error(ValueError):
    """The bytes are not, and cannot become, valid UTF-8."""


class IncrementalValidator:
    """Decode UTF-8 piece by piece, failing at the first piece that cannot lead to valid text.

    It calls the C codec directly (``codecs.utf_8_decode`` with ``final=False`` stops before
    an incomplete sequence and reports how far it got) and keeps the few held-back bytes
    itself: the codecs module's incremental decoder adds a Python layer per call.
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""  # the start of a sequence the last piece ended in (0 to 3 bytes)

    def decode(self, data: bytes | bytearray | memoryview, final: bool) -> str:
        """Decode the next piece; ``final=True`` on the last one. Nothing of ``data`` is kept
        past the call but a copy of its last few bytes, so it may be a view of a buffer that
        is about to change.

        :raises InvalidUTF8Error: the text so far is invalid, or ends in bytes no continuation can
            make valid.
        """
        if self._pending:
            data = self._pending + data
        try:
            text, used = utf_8_decode(data, "strict", final)
        except UnicodeDecodeError as exc:
            raise InvalidUTF8Error(str(exc)) from None
        pending = data[used:]
        if type(pending) is not bytes:
            pending = bytes(pending)
        self._pending = pending
        if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
            raise InvalidUTF8Error("bytes ED A0-BF start a UTF-16 surrogate (RFC 3629 §4)")
        return text

    def copy(self) -> IncrementalValidator:
        """A validator in the same state, to look ahead without touching this one."""
        twin = IncrementalValidator()
        twin._pending = self._pending
        return twin

    def reset(self) -> None:
        """Forget any pending bytes, ready for a new message."""
        self._pending = b""
