"""Connection states and the one table of transitions between them.

The table is the single source: :class:`~wsmachine.Connection` moves only through
:func:`transition`, the tests walk every state × action pair, and the docs draw the diagram
from :data:`TRANSITIONS`.
"""

from __future__ import annotations

import enum

from .errors import LocalProtocolError

__all__ = ["TRANSITIONS", "Action", "State", "transition"]


class State(enum.Enum):
    """Where a connection is in its life (RFC 6455 §4, §7)."""

    #: The opening handshake is under way.
    CONNECTING = "CONNECTING"
    #: The handshake succeeded; messages flow both ways.
    OPEN = "OPEN"
    #: This side sent a Close frame and waits for the peer's (RFC 6455 §7.1.2).
    CLOSING = "CLOSING"
    #: The peer's Close arrived, or the peer broke the protocol, and this side owes its own
    #: Close frame: it goes out with the next ``data_to_send()``. Until then replies to the
    #: messages already received may still be sent, so they precede the Close
    #: (RFC 6455 §5.5.1: an endpoint may finish its current message before answering a Close).
    REMOTE_CLOSING = "REMOTE_CLOSING"
    #: Both Close frames were exchanged, the connection failed, or the stream ended.
    CLOSED = "CLOSED"
    #: Server: the head of an HTTP answer other than 101 is written and its body is being
    #: streamed (``reject_start``, then ``reject_body``); the connection stays up until the
    #: body ends.
    REJECTING = "REJECTING"
    #: The opening handshake ended with an HTTP answer other than 101.
    REJECTED = "REJECTED"


class Action(enum.Enum):
    """What can happen to a connection: a call of the local user or input from the peer."""

    #: Server: the machine answered the upgrade with 101 (``accept``).
    ACCEPT = "accept"
    #: Server: an HTTP answer other than 101 was written (``reject`` or a bad request).
    REJECT = "reject"
    #: Server: the head of an HTTP answer other than 101 was written (``reject_start``).
    REJECT_START = "start a rejection"
    #: Server: a piece of that answer's body was written (``reject_body``).
    REJECT_BODY = "send rejection body"
    #: Server: that answer's body ended (``reject_body(..., end=True)``).
    REJECT_END = "end the rejection"
    #: Client: a valid 101 arrived.
    RECEIVE_ACCEPT = "receive 101"
    #: Client: a non-101 answer, or an invalid 101, arrived.
    RECEIVE_REJECT = "receive rejection"
    #: The local user sends a data frame (text or binary).
    SEND_DATA = "send data"
    #: The local user sends a Ping or a Pong (also the machine's own Pong to a Ping).
    SEND_CONTROL = "send Ping or Pong"
    #: The local user starts the closing handshake (``close``).
    SEND_CLOSE = "send Close"
    #: A Close frame arrived from the peer (the echo is queued when this side had not sent one).
    RECEIVE_CLOSE = "receive Close"
    #: The peer broke the protocol: a failing Close is queued (RFC 6455 §7.1.7).
    FAIL = "fail"
    #: The peer's byte stream ended.
    RECEIVE_EOF = "receive EOF"
    #: The Close this side owes (the echo of the peer's, or the failing one) is handed to the
    #: transport by ``data_to_send()``.
    SEND_OWED_CLOSE = "send the owed Close"


_S = State
_A = Action

#: Every allowed (state, action) pair and the state it leads to. A missing pair is forbidden.
TRANSITIONS: dict[tuple[State, Action], State] = {
    (_S.CONNECTING, _A.ACCEPT): _S.OPEN,
    (_S.CONNECTING, _A.REJECT): _S.REJECTED,
    (_S.CONNECTING, _A.REJECT_START): _S.REJECTING,
    (_S.CONNECTING, _A.RECEIVE_ACCEPT): _S.OPEN,
    (_S.CONNECTING, _A.RECEIVE_REJECT): _S.REJECTED,
    (_S.CONNECTING, _A.RECEIVE_EOF): _S.CLOSED,
    (_S.OPEN, _A.SEND_DATA): _S.OPEN,
    (_S.OPEN, _A.SEND_CONTROL): _S.OPEN,
    (_S.OPEN, _A.SEND_CLOSE): _S.CLOSING,
    (_S.OPEN, _A.RECEIVE_CLOSE): _S.REMOTE_CLOSING,
    (_S.OPEN, _A.FAIL): _S.REMOTE_CLOSING,
    (_S.OPEN, _A.RECEIVE_EOF): _S.CLOSED,
    # Replies to messages received before the peer's Close may still go out, before ours;
    # input is no longer read (RFC 6455 §1.4), so a later EOF changes nothing.
    (_S.REMOTE_CLOSING, _A.SEND_DATA): _S.REMOTE_CLOSING,
    (_S.REMOTE_CLOSING, _A.SEND_CONTROL): _S.REMOTE_CLOSING,
    (_S.REMOTE_CLOSING, _A.SEND_OWED_CLOSE): _S.CLOSED,
    (_S.REMOTE_CLOSING, _A.RECEIVE_EOF): _S.REMOTE_CLOSING,
    # (CLOSING, SEND_DATA) is absent: no data frame may follow our Close (RFC 6455 §5.5.1).
    # Pings and Pongs still may: a Ping is answered until the peer's Close arrives (§5.5.2).
    (_S.CLOSING, _A.SEND_CONTROL): _S.CLOSING,
    (_S.CLOSING, _A.RECEIVE_CLOSE): _S.CLOSED,
    (_S.CLOSING, _A.FAIL): _S.CLOSED,
    (_S.CLOSING, _A.RECEIVE_EOF): _S.CLOSED,
    (_S.CLOSED, _A.RECEIVE_EOF): _S.CLOSED,
    # The peer may end its stream while the body is still being written: it is finished.
    (_S.REJECTING, _A.REJECT_BODY): _S.REJECTING,
    (_S.REJECTING, _A.REJECT_END): _S.REJECTED,
    (_S.REJECTING, _A.RECEIVE_EOF): _S.REJECTING,
    (_S.REJECTED, _A.RECEIVE_EOF): _S.REJECTED,
}

_STREAMED_REJECTION = (
    "a rejection's body follows its head (reject_start) and ends once "
    "(RFC 6455 §4.2.2, RFC 9112 §6)"
)

_RULES: dict[Action, str] = {
    _A.ACCEPT: "only a pending handshake can be accepted (RFC 6455 §4.2.2)",
    _A.REJECT: "only a pending handshake can be rejected (RFC 6455 §4.2.2)",
    _A.REJECT_START: "only a pending handshake can be rejected (RFC 6455 §4.2.2)",
    _A.REJECT_BODY: _STREAMED_REJECTION,
    _A.REJECT_END: _STREAMED_REJECTION,
    _A.SEND_DATA: "data frames need an OPEN connection (or one that owes the peer its Close) "
    "and may not follow this side's Close frame (RFC 6455 §5.5.1)",
    _A.SEND_CONTROL: "Ping and Pong frames need an OPEN connection, or one waiting for the "
    "peer's Close or owing its own; none may follow both Close frames (RFC 6455 §5.5.2)",
    _A.SEND_CLOSE: "a Close frame may be sent once, on an OPEN connection; after the peer's "
    "Close the machine sends the answer itself (RFC 6455 §5.5.1)",
    _A.SEND_OWED_CLOSE: "only a connection in REMOTE_CLOSING owes a Close frame",
}


def transition(state: State, action: Action) -> State:
    """Return the state that ``action`` leads to from ``state``.

    :raises LocalProtocolError: the table has no such pair; the message names the state and
        the RFC rule.
    """
    try:
        return TRANSITIONS[state, action]
    except KeyError:
        rule = _RULES.get(action, "the peer's input is ignored in this state")
        raise LocalProtocolError(f"cannot {action.value} in state {state.name}: {rule}") from None
