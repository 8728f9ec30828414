"""The protocol errors.

* :class:`LocalProtocolError`: the local caller misused the machine (sent before the handshake,
  sent after closing, answered a request that is not waiting). Raised at once from the call.
* :class:`InvalidArgumentError`: a :class:`LocalProtocolError` that is also a :exc:`ValueError`:
  an argument no state would accept (a close code that may not be sent, a reason or control
  payload too long, a subprotocol the client did not offer, a bad HTTP status or header).
  Raised at once from the call, before anything changes.
* :class:`RemoteProtocolError`: the peer broke the protocol. The machine never raises it past
  :meth:`~wsmachine.Connection.receive_data`; it reports it inside the ``error`` field of a
  :class:`~wsmachine.Close` or :class:`~wsmachine.Rejected` event, after queueing the answer
  the RFC requires (a failing Close frame, or an HTTP error response).
"""

from __future__ import annotations

__all__ = [
    "CLOSE_REASONS",
    "MAX_FAIL_REASON_BYTES",
    "InvalidArgumentError",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
]

#: Longest reason the machine puts in the Close frame it sends on a violation.
MAX_FAIL_REASON_BYTES = 32

#: The reason of a failing Close, by close code, when the error names no other. The full
#: diagnostic (limits, offsets, RFC sections) stays in the error: it is for the local logs,
#: not for the peer.
CLOSE_REASONS: dict[int, str] = {
    1002: "protocol error",
    1006: "abnormal closure",
    1007: "invalid payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "extension required",
    1011: "internal error",
}


class ProtocolError(Exception):
    """Base class of every error the machine reports."""


class LocalProtocolError(ProtocolError):
    """The local caller asked for something the protocol or the current state forbids."""


class InvalidArgumentError(LocalProtocolError, ValueError):
    """An argument of the call is invalid whatever the state: a close code that may not be
    sent, a reason or control payload too long, a subprotocol the client did not offer, an
    HTTP status or header a response may not carry.

    Also a :exc:`ValueError`. Nothing has changed when it is raised: the call may be made
    again with valid arguments.
    """


class RemoteProtocolError(ProtocolError):
    """The peer violated the protocol.

    :param message: what was wrong, what was expected, and the RFC section.
    :param close_code: the close code sent to the peer (RFC 6455 §7.4.1), e.g. 1002.
    :param status_hint: during the opening handshake, the HTTP status answered (400, 426, ...).
    :param reason: the short, standard reason of the failing Close (at most 32 bytes of
        ASCII, e.g. ``"invalid UTF-8"``); by default the close code's (``"protocol error"``
        for 1002, ``"message too big"`` for 1009, ...).
    """

    def __init__(
        self,
        message: str,
        *,
        close_code: int = 1002,
        status_hint: int = 400,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.close_code = int(close_code)  # a plain int, even when given a CloseCode
        self.status_hint = int(status_hint)
        if reason is None:
            reason = CLOSE_REASONS.get(self.close_code, "protocol error")
        if len(reason) > MAX_FAIL_REASON_BYTES or not reason.isascii():
            raise ValueError(f"a failing Close's reason is at most 32 ASCII bytes: {reason!r}")
        #: The reason the failing Close carries: short and standard, never a diagnostic.
        self.reason = reason
