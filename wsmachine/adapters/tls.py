"""TLS for a non-blocking server socket, on :class:`ssl.SSLObject` and memory buffers.

:class:`TLSSocket` stands in for an accepted socket in a selector loop: ``recv``,
``recv_into``, ``send`` and ``shutdown`` speak plaintext and raise :class:`BlockingIOError`
when they must wait for the network, as a plain non-blocking socket does. So the loop's
reading and writing code stays the same with and without TLS. Two differences it must know:

- a read may leave decrypted bytes behind (TLS records are up to 16 KiB, a read hands out
  at most what was asked), which the kernel no longer signals: read again while
  :meth:`TLSSocket.pending` is true;
- ``send`` follows OpenSSL's rule for a write that could not finish: call it again with the
  same bytes (a loop writing from a queue's head does).

ALPN is the context's: :func:`server_context` offers ``h2`` then ``http/1.1`` (RFC 7301),
which is what a browser needs to open WebSockets over HTTP/2 (RFC 8441).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from typing import Any

__all__ = ["RECORD_SIZE", "TLSSocket", "server_context"]

#: Plaintext encrypted per ``send`` at most: one full TLS record (RFC 8446 §5.1).
RECORD_SIZE = 16384
_RAW_READ = 65536  # ciphertext read from the kernel at a time
_ALPN = ["h2", "http/1.1"]


def server_context(certfile: str, keyfile: str | None = None) -> ssl.SSLContext:
    """A server-side TLS context with the certificate chain of ``certfile`` (and its key,
    if kept apart in ``keyfile``), TLS 1.2 or later, offering ALPN ``h2`` and
    ``http/1.1``.

    :raises OSError: a file cannot be read.
    :raises ssl.SSLError: the certificate or key is not valid.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    context.set_alpn_protocols(_ALPN)
    return context


class TLSSocket:
    """The server side of TLS over an accepted non-blocking socket ``sock``.

    The handshake happens as the first reads arrive; :attr:`alpn` tells what ALPN chose once
    it is done. A failed handshake or a broken record raises :class:`ssl.SSLError` (an
    :class:`OSError`) from the call that met it.
    """

    __slots__ = ("_handshaken", "_incoming", "_outgoing", "_owed", "_raw", "_tls", "sock")

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        #: The TCP socket underneath.
        self.sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._raw = bytearray()  # ciphertext the kernel did not take yet
        self._owed = 0  # plaintext encrypted by a send() that could not finish
        # Set once the handshake is done (version() is None again after the stream ended).
        self._handshaken = False

    def __repr__(self) -> str:
        return f"<TLSSocket fd={self.sock.fileno()} alpn={self.alpn!r}>"

    @property
    def alpn(self) -> str | None:
        """The protocol ALPN agreed (``"h2"``, ``"http/1.1"``), or ``None``."""
        return self._tls.selected_alpn_protocol()

    @property
    def version(self) -> str | None:
        """The TLS version agreed, once the handshake is done."""
        return self._tls.version()

    def fileno(self) -> int:
        """The TCP socket's descriptor, for the selector."""
        return self.sock.fileno()

    def pending(self) -> bool:
        """Whether a read would find bytes without waiting for the network: decrypted bytes
        left over, or whole records received but not yet decrypted."""
        return self._tls.pending() > 0 or self._incoming.pending > 0

    # -- reading ------------------------------------------------------------------------

    def recv(self, size: int) -> bytes:
        """Up to ``size`` plaintext bytes; ``b""`` at the end of the stream.

        :raises BlockingIOError: nothing to hand out before more arrives.
        """
        self._pull()
        try:
            if not self._handshaken:
                self._tls.do_handshake()  # raises SSLWantReadError until it is done
                self._handshaken = True
            data = self._tls.read(size)
        except ssl.SSLWantReadError:
            data = None
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            data = b""  # close_notify, or the TCP stream ended: the end either way
        self._push()
        if data is None:
            raise BlockingIOError("TLS: waiting for the rest of a record")
        return data

    def recv_into(self, buffer: Any, size: int = 0) -> int:
        """Read into ``buffer`` (up to ``size`` bytes, or its length); return the count,
        ``0`` at the end of the stream.

        :raises BlockingIOError: nothing to hand out before more arrives.
        """
        view = memoryview(buffer).cast("B")
        data = self.recv(size or len(view))
        view[: len(data)] = data
        return len(data)

    def _pull(self) -> None:
        """Move what the kernel received into the TLS object (one read, so a flood of
        input cannot keep the loop here)."""
        if self._incoming.eof:
            return
        try:
            data = self.sock.recv(_RAW_READ)
        except (BlockingIOError, InterruptedError):
            return
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    # -- writing ------------------------------------------------------------------------

    def send(self, data: Any) -> int:
        """Encrypt and write the start of ``data`` (at most one record); return how many of
        its bytes are sent.

        :raises BlockingIOError: the kernel's buffer is full; call again with the same
            bytes when the socket is writable.
        """
        if self._raw and not self._drain():
            raise BlockingIOError("TLS: the kernel's buffer is full")
        if self._owed:  # the retry of a send() that encrypted these bytes already
            sent, self._owed = self._owed, 0
            return sent
        if not self._handshaken:  # before the handshake ends: nothing to say yet
            raise BlockingIOError("TLS: the handshake is not done")
        chunk = memoryview(data)[:RECORD_SIZE]
        written = self._tls.write(chunk)
        if self._push():
            return written
        self._owed = written
        raise BlockingIOError("TLS: the kernel's buffer is full")

    def _push(self) -> bool:
        """Move the TLS object's output to the kernel; return whether all of it went."""
        pending = self._outgoing.pending
        if pending:
            self._raw += self._outgoing.read(pending)
        return self._drain() if self._raw else True

    def _drain(self) -> bool:
        raw = self._raw
        try:
            sent = self.sock.send(raw)
        except (BlockingIOError, InterruptedError):
            return False
        del raw[:sent]
        return not raw

    # -- ending -------------------------------------------------------------------------

    def shutdown(self, how: int) -> None:
        """Send close_notify (RFC 8446 §6.1) with our half-close, then shut the TCP socket."""
        if how in (socket.SHUT_WR, socket.SHUT_RDWR) and self._handshaken:
            # The peer's close_notify comes later, or never: it is not waited for.
            with contextlib.suppress(ssl.SSLError):
                self._tls.unwrap()
            self._push()
        self.sock.shutdown(how)

    def close(self) -> None:
        """Close the TCP socket (no close_notify: :meth:`shutdown` sends it)."""
        self.sock.close()

    def getpeername(self) -> Any:
        """The other end's address."""
        return self.sock.getpeername()

    def getsockname(self) -> Any:
        """This end's address."""
        return self.sock.getsockname()

    def setsockopt(self, *args: Any) -> None:
        """Set an option of the TCP socket."""
        self.sock.setsockopt(*args)

    def getsockopt(self, *args: Any) -> Any:
        """Read an option of the TCP socket."""
        return self.sock.getsockopt(*args)
