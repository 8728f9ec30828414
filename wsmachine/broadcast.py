"""One message framed once for many server connections: the core of a broadcast.

A server's data frame is unmasked (RFC 6455 §5.1), so a message sent to many clients is the
same bytes on every connection, as long as no extension transforms it on one of them
(permessage-deflate compresses each connection's messages with its own context). A
broadcast then encodes the message once with :func:`prepare` and queues the frame on each
connection with :meth:`~wsmachine.Connection.send_prepared`; a connection on which the
frame cannot be shared answers ``False``, and gets the message through
:meth:`~wsmachine.Connection.send_text` or :meth:`~wsmachine.Connection.send_binary`.

.. code-block:: python

    from wsmachine.broadcast import prepare

    prepared = prepare("news")
    for conn in connections:  # ServerConnection objects
        if conn.can_send and not conn.send_prepared(prepared):
            conn.send_text(prepared.message)  # a client, or an extension, or a fragment under way
"""

from __future__ import annotations

from .errors import InvalidArgumentError
from .frames import Opcode, build_frame

__all__ = ["PreparedMessage", "prepare"]


class PreparedMessage:
    """A whole text or binary message, with the unmasked frame that carries it.

    Made by :func:`prepare`; read-only by convention.
    """

    __slots__ = ("frame", "message", "opcode", "payload")

    def __init__(self, message: str | bytes, opcode: int, payload: bytes) -> None:
        #: The message as given: ``str`` for text, ``bytes`` for binary.
        self.message = message
        #: ``Opcode.TEXT`` or ``Opcode.BINARY``.
        self.opcode = opcode
        #: The payload: the text in UTF-8, or the bytes.
        self.payload = payload
        #: The whole frame (FIN set, no RSV bits, no mask), header and payload in one piece.
        self.frame = build_frame(opcode, payload)

    def __len__(self) -> int:
        """The payload's length in bytes."""
        return len(self.payload)

    def __repr__(self) -> str:
        kind = "text" if self.opcode == Opcode.TEXT else "binary"
        return f"<PreparedMessage {kind}, {len(self.payload)} bytes>"


def prepare(message: str | bytes | bytearray | memoryview) -> PreparedMessage:
    """Frame ``message`` once: ``str`` as a text message, bytes-like as a binary one.

    :raises InvalidArgumentError: the text holds a lone surrogate (UTF-8 cannot encode it).
    """
    if isinstance(message, str):
        try:
            payload = message.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgumentError(
                "text holds a lone surrogate, which UTF-8 cannot encode (RFC 6455 §5.6)"
            ) from None
        return PreparedMessage(message, Opcode.TEXT.value, payload)
    data = bytes(message)
    return PreparedMessage(data, Opcode.BINARY.value, data)
