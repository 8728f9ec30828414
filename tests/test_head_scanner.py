"""The head scanner's shortcut for a head that arrived whole gives what its line walk gives:
the same end, the same state after, the same error, on any bytes and any limits."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from wsmachine.errors import RemoteProtocolError
from wsmachine.handshake import _HeadScanner

PIECES = st.sampled_from(
    [
        b"GET / HTTP/1.1",
        b"HTTP/1.1 101 Switching Protocols",
        b"Host: example.com",
        b"Upgrade: websocket",
        b"\r\n",
        b"\n",
        b"\r",
        b" ",
        b"\t",
        b"\r\n\r\n",
        b"\n\n",
        b"\n\r\n",
        b"x",
    ]
)
HEADS = st.lists(PIECES | st.binary(max_size=4), max_size=30).map(b"".join)
LIMITS = st.tuples(st.integers(1, 300), st.integers(1, 120), st.integers(0, 6))


class LineWalk(_HeadScanner):
    """The scanner without its shortcut."""

    __slots__ = ()

    def _whole(self, data: bytes) -> int:
        return 0


def outcome(scanner: _HeadScanner, data: bytes) -> tuple[object, ...]:
    try:
        end: object = scanner.scan(data)
    except RemoteProtocolError as exc:
        end = (str(exc), exc.status_hint)
    state = (scanner._size, scanner._line, scanner._last, scanner._first, scanner._headers)
    return end, scanner.done, state


@settings(max_examples=1500)
@given(data=HEADS, limits=LIMITS, what=st.sampled_from(["request", "response"]))
def test_the_shortcut_agrees_with_the_line_walk(
    data: bytes, limits: tuple[int, int, int], what: str
) -> None:
    assert outcome(_HeadScanner(what, limits), data) == outcome(LineWalk(what, limits), data)


def test_the_shortcut_takes_a_plain_head() -> None:
    head = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"
    scanner = _HeadScanner("request", (1000, 1000, 10))
    assert scanner._whole(head + b"frames") == len(head)
    assert (scanner.done, scanner._headers) == (True, 2)
