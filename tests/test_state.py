"""The connection state table: RFC 6455 §4 (opening handshake), §5.5.1 and §7 (closing).

Every State × Action pair is walked: allowed pairs lead to their target, all others raise
LocalProtocolError naming the state.
"""

from __future__ import annotations

import itertools

import pytest

from wsmachine.errors import LocalProtocolError, ProtocolError
from wsmachine.state import TRANSITIONS, Action, State, transition

S, A = State, Action

# The table, written out again from the RFC so that a change to the module's table is noticed.
EXPECTED: dict[tuple[State, Action], State] = {
    # §4.2.2 server answers the handshake; §4.1 client reads the answer; EOF during handshake.
    (S.CONNECTING, A.ACCEPT): S.OPEN,
    (S.CONNECTING, A.REJECT): S.REJECTED,
    # A rejection whose body is streamed: head, pieces, end (an embedder's ASGI denial).
    (S.CONNECTING, A.REJECT_START): S.REJECTING,
    (S.CONNECTING, A.RECEIVE_ACCEPT): S.OPEN,
    (S.CONNECTING, A.RECEIVE_REJECT): S.REJECTED,
    (S.CONNECTING, A.RECEIVE_EOF): S.CLOSED,
    # §6 data transfer; §7.1.2 start closing; §7.1.5 peer closes first; §7.1.7 fail. The
    # peer's Close and a violation both leave this side owing its Close (REMOTE_CLOSING).
    (S.OPEN, A.SEND_DATA): S.OPEN,
    (S.OPEN, A.SEND_CONTROL): S.OPEN,
    (S.OPEN, A.SEND_CLOSE): S.CLOSING,
    (S.OPEN, A.RECEIVE_CLOSE): S.REMOTE_CLOSING,
    (S.OPEN, A.FAIL): S.REMOTE_CLOSING,
    (S.OPEN, A.RECEIVE_EOF): S.CLOSED,
    # §5.5.1: replies to messages read before the peer's Close may precede ours; the owed
    # Close then goes out (data_to_send). §1.4: no input is read; the stream may still end.
    (S.REMOTE_CLOSING, A.SEND_DATA): S.REMOTE_CLOSING,
    (S.REMOTE_CLOSING, A.SEND_CONTROL): S.REMOTE_CLOSING,
    (S.REMOTE_CLOSING, A.SEND_OWED_CLOSE): S.CLOSED,
    (S.REMOTE_CLOSING, A.RECEIVE_EOF): S.REMOTE_CLOSING,
    # §5.5.1: after our Close, no more data; the peer's Close completes the handshake.
    # §5.5.2: a Ping is answered until the peer's Close arrives, even after ours.
    (S.CLOSING, A.SEND_CONTROL): S.CLOSING,
    (S.CLOSING, A.RECEIVE_CLOSE): S.CLOSED,
    (S.CLOSING, A.FAIL): S.CLOSED,
    (S.CLOSING, A.RECEIVE_EOF): S.CLOSED,
    # The body goes on after the peer's end of stream (a half-close), and ends once.
    (S.REJECTING, A.REJECT_BODY): S.REJECTING,
    (S.REJECTING, A.REJECT_END): S.REJECTED,
    (S.REJECTING, A.RECEIVE_EOF): S.REJECTING,
    # Terminal states only see the stream end.
    (S.CLOSED, A.RECEIVE_EOF): S.CLOSED,
    (S.REJECTED, A.RECEIVE_EOF): S.REJECTED,
}

ALL_PAIRS = list(itertools.product(State, Action))
ALLOWED = [pair for pair in ALL_PAIRS if pair in EXPECTED]
FORBIDDEN = [pair for pair in ALL_PAIRS if pair not in EXPECTED]
USER_ACTIONS = {
    A.ACCEPT,
    A.REJECT,
    A.REJECT_START,
    A.REJECT_BODY,
    A.REJECT_END,
    A.SEND_DATA,
    A.SEND_CONTROL,
    A.SEND_CLOSE,
}
# Only the owed Close is sent by the machine itself, from REMOTE_CLOSING.
MACHINE_ACTIONS = {A.SEND_OWED_CLOSE}


def pair_id(pair: tuple[State, Action]) -> str:
    return f"{pair[0].name}-{pair[1].name}"


class TestTable:
    """The module's table is exactly the RFC's."""

    def test_table_is_as_specified(self) -> None:
        assert TRANSITIONS == EXPECTED

    def test_walk_covers_every_pair(self) -> None:
        assert len(ALL_PAIRS) == len(State) * len(Action) == 98
        assert len(ALLOWED) == 25
        assert len(ALLOWED) + len(FORBIDDEN) == len(ALL_PAIRS)


class TestWalk:
    """Every State × Action pair."""

    @pytest.mark.parametrize("pair", ALLOWED, ids=pair_id)
    def test_allowed_pair_returns_its_target(self, pair: tuple[State, Action]) -> None:
        state, action = pair
        assert transition(state, action) is EXPECTED[pair]

    @pytest.mark.parametrize("pair", FORBIDDEN, ids=pair_id)
    def test_forbidden_pair_raises(self, pair: tuple[State, Action]) -> None:
        state, action = pair
        with pytest.raises(LocalProtocolError) as info:
            transition(state, action)
        message = str(info.value)
        assert f"state {state.name}" in message
        assert action.value in message
        assert isinstance(info.value, ProtocolError)
        if action in USER_ACTIONS:
            assert "RFC 6455 §" in message, message
        if action in MACHINE_ACTIONS:
            assert "REMOTE_CLOSING" in message, message


class TestRFCRules:
    """Specific rules, checked through ``transition``."""

    def test_rfc_5_5_1_no_data_after_our_close(self) -> None:
        # RFC 6455 §5.5.1: after sending a Close frame, the endpoint sends no more data.
        state = transition(S.OPEN, A.SEND_CLOSE)
        assert state is S.CLOSING
        with pytest.raises(LocalProtocolError, match="CLOSING"):
            transition(state, A.SEND_DATA)
        with pytest.raises(LocalProtocolError, match="CLOSING"):
            transition(state, A.SEND_CLOSE)

    def test_rfc_5_5_2_ping_and_pong_after_our_close(self) -> None:
        # §5.5.1 forbids only data frames after our Close; §5.5.2 answers Pings until the
        # peer's Close arrives.
        assert transition(S.CLOSING, A.SEND_CONTROL) is S.CLOSING
        with pytest.raises(LocalProtocolError, match="CLOSED"):
            transition(S.CLOSED, A.SEND_CONTROL)

    @pytest.mark.parametrize("state", [S.CONNECTING, S.CLOSING, S.CLOSED, S.REJECTED])
    def test_rfc_6_1_data_only_when_open(self, state: State) -> None:
        with pytest.raises(LocalProtocolError, match=state.name):
            transition(state, A.SEND_DATA)

    def test_rfc_5_5_1_replies_before_the_owed_close(self) -> None:
        # §5.5.1: after the peer's Close, this side may finish what it sends, then answers
        # with its Close, once; nothing follows it, and the user never sends it by hand.
        state = transition(S.OPEN, A.RECEIVE_CLOSE)
        assert state is S.REMOTE_CLOSING
        assert transition(state, A.SEND_DATA) is S.REMOTE_CLOSING
        assert transition(state, A.SEND_CONTROL) is S.REMOTE_CLOSING
        with pytest.raises(LocalProtocolError, match="REMOTE_CLOSING"):
            transition(state, A.SEND_CLOSE)
        closed = transition(state, A.SEND_OWED_CLOSE)
        assert closed is S.CLOSED
        for action in (A.SEND_DATA, A.SEND_CONTROL, A.SEND_CLOSE, A.SEND_OWED_CLOSE):
            with pytest.raises(LocalProtocolError, match="CLOSED"):
                transition(closed, action)

    @pytest.mark.parametrize("action", [A.RECEIVE_CLOSE, A.FAIL])
    def test_rfc_1_4_no_input_is_read_while_owing_the_close(self, action: Action) -> None:
        # §1.4: after the peer's Close (or its violation) no further input is read.
        with pytest.raises(LocalProtocolError, match="REMOTE_CLOSING"):
            transition(S.REMOTE_CLOSING, action)

    @pytest.mark.parametrize("state", [S.CONNECTING, S.OPEN, S.CLOSING, S.CLOSED, S.REJECTED])
    def test_only_remote_closing_owes_a_close(self, state: State) -> None:
        with pytest.raises(LocalProtocolError, match="only a connection in REMOTE_CLOSING"):
            transition(state, A.SEND_OWED_CLOSE)

    @pytest.mark.parametrize("action", [A.ACCEPT, A.REJECT, A.REJECT_START])
    @pytest.mark.parametrize(
        "state", [S.OPEN, S.CLOSING, S.REMOTE_CLOSING, S.CLOSED, S.REJECTING, S.REJECTED]
    )
    def test_rfc_4_2_2_handshake_answered_once(self, state: State, action: Action) -> None:
        with pytest.raises(LocalProtocolError, match=r"§4\.2\.2"):
            transition(state, action)

    @pytest.mark.parametrize("state", list(State))
    def test_eof_is_accepted_in_every_state(self, state: State) -> None:
        # The peer can always drop the TCP connection; that is never a local misuse. Only a
        # connection that still owes its Close keeps owing it: the Close may yet be written;
        # a streamed rejection's body may still be written too.
        target = transition(state, A.RECEIVE_EOF)
        if state in (S.REMOTE_CLOSING, S.REJECTING):
            assert target is state
        else:
            assert target in (S.CLOSED, S.REJECTED)

    @pytest.mark.parametrize("state", [S.CLOSED, S.REJECTED])
    def test_terminal_states_stay(self, state: State) -> None:
        for action in Action:
            if (state, action) in TRANSITIONS:
                assert transition(state, action) is state

    def test_every_state_is_reachable_from_connecting(self) -> None:
        seen = {S.CONNECTING}
        frontier = [S.CONNECTING]
        while frontier:
            state = frontier.pop()
            for action in Action:
                if (state, action) in TRANSITIONS:
                    target = transition(state, action)
                    if target not in seen:
                        seen.add(target)
                        frontier.append(target)
        assert seen == set(State)

    def test_closing_handshake_paths(self) -> None:
        # §7.1.2 we close first; §7.1.5 the peer closes first (the echo is sent by the machine
        # at the next data_to_send()); §7.1.7 the peer fails, our failing Close is owed likewise.
        assert transition(transition(S.OPEN, A.SEND_CLOSE), A.RECEIVE_CLOSE) is S.CLOSED
        assert transition(S.OPEN, A.RECEIVE_CLOSE) is S.REMOTE_CLOSING
        assert transition(S.REMOTE_CLOSING, A.SEND_OWED_CLOSE) is S.CLOSED
        assert transition(S.OPEN, A.FAIL) is S.REMOTE_CLOSING
        assert transition(transition(S.OPEN, A.SEND_CLOSE), A.FAIL) is S.CLOSED
        with pytest.raises(LocalProtocolError, match="CLOSED"):
            transition(S.CLOSED, A.SEND_CLOSE)
        with pytest.raises(LocalProtocolError, match="REMOTE_CLOSING"):
            transition(S.REMOTE_CLOSING, A.SEND_CLOSE)
