"""The two kinds of protocol error.

* :class:`LocalProtocolError`: the local caller misused the machine (sent before the handshake,
  sent after closing, chose a close code that may not be sent). Raised at once from the call.
* :class:`RemoteProtocolError`: the peer broke the protocol. The machine never raises it past
  :meth:`~wsmachine.Connection.receive_data`; it reports it inside the ``error`` field of a
  :class:`~wsmachine.Close` or :class:`~wsmachine.Rejected` event, after queueing the answer
  the RFC requires (a failing Close frame, or an HTTP error response).
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base class of every error the machine reports."""


class LocalProtocolError(ProtocolError):
    """The local caller asked for something the protocol or the current state forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer violated the protocol.

    :param message: what was wrong, what was expected, and the RFC section.
    :param close_code: the close code sent to the peer (RFC 6455 §7.4.1), e.g. 1002.
    :param status_hint: during the opening handshake, the HTTP status answered (400, 426, ...).
    """

    def __init__(self, message: str, *, close_code: int = 1002, status_hint: int = 400) -> None:
        super().__init__(message)
        self.close_code = int(close_code)  # a plain int, even when given a CloseCode
        self.status_hint = int(status_hint)
