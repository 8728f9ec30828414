"""A stateful property test: random calls of the public API, in both roles, checked against
the one table of transitions, :data:`wsmachine.state.TRANSITIONS`.

Each run opens a connection through a real handshake (a client's upgrade request to a
server, the server's 101 back; the other side is then dropped) and drives it with random
calls (``send_text``, ``send_binary`` with ``final`` true or false, ``ping``, ``pong``,
``close`` with any code or none, ``data_to_send``, ``receive_eof``) and random peer bytes:
valid frames from :class:`~wsmachine.testing.FrameBuilder` and
:mod:`wsmachine.testing.strategies` (messages, fragments, Ping, Pong, Close), broken frames
and raw bytes, cut into reads at random points.

After every call:

* a call that raised :class:`LocalProtocolError` is one whose (state, action) pair the table
  lacks, or one with an argument the API refuses in any state (a close code that may not be
  sent, a control payload over 125 bytes, a data frame of the other type in the middle of a
  fragmented message); the state did not change;
* a call that returned was allowed by the table from the state before it, and the state
  after it is the table's target; ``receive_data`` maps a :class:`Close` event to
  ``RECEIVE_CLOSE`` (no error) or ``FAIL`` (an error), ``data_to_send`` in REMOTE_CLOSING to
  ``SEND_OWED_CLOSE``;
* the bytes ``data_to_send`` returns are exactly the frames a model queued: the sends that
  succeeded, a Pong for every Ping received, the Close of ``close()``, the owed Close last;
* ``can_send``, ``close_expected()``, ``should_close()`` and the records ``close_sent``,
  ``close_received``, ``closed_first`` agree with the state and with what went each way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from wsmachine import (
    Accepted,
    Binary,
    ClientConnection,
    Close,
    Connection,
    Handshake,
    LocalProtocolError,
    Ping,
    Pong,
    RemoteProtocolError,
    ServerConnection,
    State,
    Text,
)
from wsmachine.close_codes import CloseInfo
from wsmachine.frames import FrameReader, Opcode
from wsmachine.state import TRANSITIONS, Action
from wsmachine.testing import FrameBuilder
from wsmachine.testing import strategies as ws

S, A = State, Action
TEXT, BINARY, CONT = Opcode.TEXT.value, Opcode.BINARY.value, Opcode.CONTINUATION.value
CLOSE, PING, PONG = Opcode.CLOSE.value, Opcode.PING.value, Opcode.PONG.value

MAX_MESSAGE = 512  # small, so random lengths fail with 1009 instead of waiting for bytes
#: Codes a Close frame may carry (RFC 6455 §7.4), and some it may not.
WIRE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]
BAD_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000]

SENDING_STATES = {S.OPEN, S.REMOTE_CLOSING}
CLOSE_EXPECTED_STATES = {S.CLOSING, S.REMOTE_CLOSING, S.CLOSED, S.REJECTED}
READING_STATES = {S.OPEN, S.CLOSING}

Frame = tuple[int, bool, bytes]  # opcode, fin, payload (unmasked)
Side = Literal["local", "remote"]

characters = st.characters(exclude_categories=["Cs"])  # UTF-8 cannot carry lone surrogates
short_text = st.text(characters, max_size=20)
close_codes = st.one_of(st.none(), st.sampled_from(WIRE_CODES), st.sampled_from(BAD_CODES))
close_reasons = st.sampled_from(["", "bye", "\u00e9" * 61 + "x", "r" * 124]) | st.text(
    characters, max_size=10
)
control_payloads = st.one_of(st.binary(max_size=20), st.binary(min_size=124, max_size=127))


def _peer_frames(masked: bool) -> st.SearchStrategy[bytes]:
    """One frame (or a few bytes) the peer may send, valid or not: masked as a client sends
    them, unmasked as a server does."""
    builder = FrameBuilder(client=masked)
    payloads = st.binary(max_size=20)
    return st.one_of(
        st.builds(lambda d, fin: builder.text(d, fin=fin), short_text, st.booleans()),
        st.builds(lambda d, fin: builder.binary(d, fin=fin), payloads, st.booleans()),
        st.builds(lambda d, fin: builder.continuation(d, fin=fin), payloads, st.booleans()),
        st.binary(max_size=125).map(builder.ping),
        st.binary(max_size=125).map(builder.pong),
        st.builds(
            builder.close,
            st.one_of(st.none(), st.sampled_from(WIRE_CODES)),
            st.text(characters, max_size=10),
        ),
        st.sampled_from(BAD_CODES).map(builder.close),
        st.sampled_from([case.data for case in builder.invalid_frames()]),
        ws.frames(masked=masked, max_size=130),  # random masking keys
        ws.fragmented_messages(masked=masked, max_size=60).map(lambda case: case[1]),
        st.binary(max_size=12),  # raw bytes
    )


def _cut(wire: st.SearchStrategy[bytes]) -> st.SearchStrategy[list[bytes]]:
    """The bytes cut into reads of random sizes (without a new strategy per draw)."""
    return st.tuples(wire, ws.read_sizes(max_size=40)).map(lambda case: ws.split(*case))


def _reads(frames: st.SearchStrategy[bytes]) -> st.SearchStrategy[list[bytes]]:
    """A few frames in a row, cut into reads at random points."""
    return _cut(st.lists(frames, min_size=1, max_size=4).map(b"".join))


def _peer_close(masked: bool) -> st.SearchStrategy[bytes]:
    """A valid Close, with a code and maybe a reason, or without a code."""
    reasons = st.text(characters, max_size=10)
    codes = st.one_of(st.none(), st.sampled_from(WIRE_CODES))
    close = FrameBuilder(client=masked).close
    return st.one_of(st.builds(close, codes, reasons), st.just(close(None)))


def _peer_valid(masked: bool) -> st.SearchStrategy[list[bytes]]:
    """Valid frames, maybe ending with a valid Close, cut into reads at random points."""
    frames = st.lists(ws.frames(masked=masked, max_size=60), max_size=3).map(b"".join)
    close = st.one_of(st.just(b""), _peer_close(masked))
    return _cut(st.tuples(frames, close).map(b"".join))


#: By whether the peer masks (a client does), built once, not per draw: anything, or valid
#: frames only (so that the connection stays open longer and the peer's Close is read).
PEER_READS = {masked: _reads(_peer_frames(masked)) for masked in (False, True)}
PEER_VALID = {masked: _peer_valid(masked) for masked in (False, True)}


def _close_payload(info: CloseInfo) -> bytes:
    if info.code == 1005:
        return b""
    return info.code.to_bytes(2, "big") + info.reason.encode("utf-8")


class ConnectionMachine(RuleBasedStateMachine):
    """One connection of the role ``client`` and a model of what it owes and records."""

    client = False

    def __init__(self) -> None:
        super().__init__()
        # A real handshake: the client's upgrade request to the server, its 101 back.
        client = ClientConnection("example.com", max_message_size=MAX_MESSAGE)
        server = ServerConnection(max_message_size=MAX_MESSAGE)
        (request,) = server.receive_data(client.data_to_send())
        assert isinstance(request, Handshake)
        assert server.accept(request) == []
        (accepted,) = client.receive_data(server.data_to_send())
        assert isinstance(accepted, Accepted)
        self.conn: Connection = client if self.client else server
        assert self.conn.state is S.OPEN
        assert self.conn.data_to_send() == b""
        # What the output reader expects: clients mask every frame, servers none (§5.1).
        self.reader = FrameReader(expect_masked=self.client, max_frame_size=1 << 20)
        self.queued: list[Frame] = []  # frames the model expects from the next data_to_send
        self.sending: int = 0  # opcode of our fragmented message being sent, 0 between messages
        self.owed: CloseInfo | None = None  # the Close the machine holds in REMOTE_CLOSING
        self.sent: CloseInfo | None = None
        self.received: CloseInfo | None = None
        self.first: Side | None = None
        self.failed = False
        self.eof = False
        self.close_in_output = False  # our Close frame was handed to data_to_send

    # -- calls of the local user ---------------------------------------------------------

    def _call(self, action: Action, call: Callable[[], None], refused_argument: bool) -> bool:
        """Make a user call; check it against the table; return whether it succeeded."""
        before = self.conn.state
        allowed = (before, action) in TRANSITIONS
        try:
            call()
        except LocalProtocolError as exc:
            assert self.conn.state is before, "a refused call changed the state"
            assert not allowed or refused_argument, (
                f"{action.name} is allowed in {before.name} but raised: {exc}"
            )
            if not refused_argument:
                assert before.name in str(exc), exc
            return False
        assert allowed, f"{action.name} succeeded in {before.name}: the table forbids it"
        assert not refused_argument, f"{action.name} took an argument it must refuse"
        assert self.conn.state is TRANSITIONS[before, action]
        return True

    def _send_data(
        self, opcode: int, payload: bytes, final: bool, call: Callable[[], None]
    ) -> None:
        mismatch = bool(self.sending) and self.sending != opcode
        if self._call(A.SEND_DATA, call, mismatch):
            self.queued.append((CONT if self.sending else opcode, final, payload))
            self.sending = 0 if final else opcode

    @rule(data=short_text, final=st.booleans())
    def send_text(self, data: str, final: bool) -> None:
        payload = data.encode("utf-8")
        self._send_data(TEXT, payload, final, lambda: self.conn.send_text(data, final=final))

    @rule(data=st.binary(max_size=20), final=st.booleans())
    def send_binary(self, data: bytes, final: bool) -> None:
        self._send_data(BINARY, data, final, lambda: self.conn.send_binary(data, final=final))

    @rule(payload=control_payloads)
    def ping(self, payload: bytes) -> None:
        if self._call(A.SEND_CONTROL, lambda: self.conn.ping(payload), len(payload) > 125):
            self.queued.append((PING, True, payload))

    @rule(payload=control_payloads)
    def pong(self, payload: bytes) -> None:
        if self._call(A.SEND_CONTROL, lambda: self.conn.pong(payload), len(payload) > 125):
            self.queued.append((PONG, True, payload))

    @rule(code=close_codes, reason=close_reasons)
    def close(self, code: int | None, reason: str) -> None:
        if code is None:
            refused = bool(reason)  # a reason needs a code (§5.5.1)
        else:
            refused = code in BAD_CODES or len(reason.encode("utf-8")) > 123
        if self._call(A.SEND_CLOSE, lambda: self.conn.close(code, reason), refused):
            assert self.first is None
            self.sent = CloseInfo(1005 if code is None else code, reason)
            self.first = "local"
            self.queued.append((CLOSE, True, _close_payload(self.sent)))

    @rule()
    def data_to_send(self) -> None:
        before = self.conn.state
        out = self.conn.data_to_send()
        if before is S.REMOTE_CLOSING:
            # The machine's own action: it releases the Close it owed.
            assert (before, A.SEND_OWED_CLOSE) in TRANSITIONS
            assert self.conn.state is TRANSITIONS[before, A.SEND_OWED_CLOSE]
            assert self.owed is not None
            self.sent = self.owed
            self.owed = None
            self.queued.append((CLOSE, True, _close_payload(self.sent)))
        else:
            assert self.conn.state is before
        frames, error = self.reader.feed(out)
        assert error is None, error
        assert self.reader.buffered() == 0, "data_to_send() returned part of a frame"
        got = [(opcode, fin, payload) for opcode, fin, rsv, payload in frames if not rsv]
        assert len(got) == len(frames), "a frame with RSV bits, with no extension"
        assert got == self.queued
        for opcode, _, _ in got:
            if self.close_in_output:
                # After our Close: Pings and Pongs only, until the peer's Close (§5.5.1).
                assert opcode in (PING, PONG), "a data frame or a second Close after our Close"
            if opcode == CLOSE:
                self.close_in_output = True
        self.queued.clear()
        assert self.conn.data_to_send() == b""

    @rule(now=st.integers(0, 3))
    def receive_eof(self, now: int) -> None:
        if now:
            return  # the end of the stream ends everything: keep it rarer than other calls
        before = self.conn.state
        events = self.conn.receive_eof()
        if self.eof:
            assert events == []
            assert self.conn.state is before
            return
        self.eof = True
        assert (before, A.RECEIVE_EOF) in TRANSITIONS
        assert self.conn.state is TRANSITIONS[before, A.RECEIVE_EOF]
        if before in READING_STATES:
            # No Close frame came: an abnormal closure, reported, nothing sent (§7.1.5).
            (close,) = events
            assert close == Close(code=1006)
            assert isinstance(close, Close)
            assert isinstance(close.error, RemoteProtocolError)
        else:
            assert events == []

    # -- bytes from the peer ---------------------------------------------------------------

    @rule(data=st.data())
    def receive(self, data: st.DataObject) -> None:
        # A client reads what a server sends (unmasked); a server, what a client sends.
        for piece in data.draw(PEER_READS[not self.client], label="reads"):
            self._receive(piece)

    @rule(data=st.data())
    def receive_valid(self, data: st.DataObject) -> None:
        for piece in data.draw(PEER_VALID[not self.client], label="valid reads"):
            self._receive(piece)

    @rule()
    def receive_nothing(self) -> None:
        self._receive(b"")

    def _receive(self, piece: bytes) -> None:
        before = self.conn.state
        if self.eof:
            try:
                self.conn.receive_data(piece)
            except LocalProtocolError:
                assert self.conn.state is before
                return
            raise AssertionError("receive_data() after receive_eof() did not raise")
        events = self.conn.receive_data(piece)
        after = self.conn.state
        for event in events:
            assert isinstance(event, Text | Binary | Ping | Pong | Close), event
        if before not in READING_STATES:
            # After the peer's Close or a failure no input is read (RFC 6455 §1.4).
            assert events == []
            assert after is before
            return
        closes = [event for event in events if isinstance(event, Close)]
        assert len(closes) <= 1
        for event in events:
            if isinstance(event, Ping):
                self.queued.append((PONG, True, event.payload))  # auto_pong, in order
        if not closes:
            assert after is before
            return
        close = events[-1]
        assert isinstance(close, Close), "an event after the Close"
        action = A.RECEIVE_CLOSE if close.error is None else A.FAIL
        assert (before, action) in TRANSITIONS, f"{action.name} in {before.name}"
        assert after is TRANSITIONS[before, action]
        if close.error is None:
            assert close.code == 1005 or close.code in WIRE_CODES or 3000 <= close.code <= 4999
            self.received = CloseInfo(close.code, close.reason)
            if before is S.OPEN:
                self.owed = CloseInfo(close.code, "")  # the code is echoed, not the reason
                self.first = "remote"
        else:
            assert isinstance(close.error, RemoteProtocolError)
            assert close.error.close_code == close.code != 1006
            self.failed = True
            if before is S.OPEN:
                self.owed = CloseInfo(close.code, close.reason)  # the failing Close
                self.first = "local"

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def state_agrees_with_the_table(self) -> None:
        state = self.conn.state
        assert state in (S.OPEN, S.CLOSING, S.REMOTE_CLOSING, S.CLOSED)
        assert self.conn.can_send == (state in SENDING_STATES)
        assert self.conn.can_send == ((state, A.SEND_DATA) in TRANSITIONS)
        owes = (state, A.SEND_OWED_CLOSE) in TRANSITIONS
        assert owes == (state is S.REMOTE_CLOSING) == (self.owed is not None)
        assert self.conn.close_expected() == (state in CLOSE_EXPECTED_STATES)
        # The server closes TCP first; a client waits for it unless the connection failed
        # or the stream ended (RFC 6455 §7.1.1). Never before the owed Close is out.
        should = state is S.CLOSED and (not self.client or self.failed or self.eof)
        assert self.conn.should_close() == should

    @invariant()
    def records_agree_with_the_exchange(self) -> None:
        conn, state = self.conn, self.conn.state
        assert conn.close_sent == self.sent
        assert conn.close_received == self.received
        assert conn.closed_first == self.first
        if state is S.OPEN:
            assert (conn.close_sent, conn.close_received, conn.closed_first) == (None, None, None)
        elif state is S.CLOSING:
            assert conn.close_sent is not None
            assert conn.close_received is None
            assert conn.closed_first == "local"
        elif state is S.REMOTE_CLOSING:
            assert conn.close_sent is None  # owed, not yet sent
            assert conn.closed_first is not None
            # "remote" exactly when the peer's Close is what is answered.
            assert (conn.closed_first == "remote") == (conn.close_received is not None)
        if conn.closed_first == "remote":
            assert conn.close_received is not None
            if conn.close_sent is not None:
                assert conn.close_sent == CloseInfo(conn.close_received.code)


class ServerMachine(ConnectionMachine):
    client = False


class ClientMachine(ConnectionMachine):
    client = True


_SETTINGS = settings(max_examples=200, stateful_step_count=40, deadline=None)
ServerMachine.TestCase.settings = _SETTINGS
ClientMachine.TestCase.settings = _SETTINGS
TestServerAfterHandshake = ServerMachine.TestCase
TestClientAfterHandshake = ClientMachine.TestCase
