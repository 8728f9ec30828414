"""Every documented divergence between wsmachine and ``websockets`` (the differential fuzz
targets in ``tests/fuzz/differential.py``), one input each.

Each test checks that the two libraries really differ on the input, that the harness names
the divergence (so it is set aside only for the reason documented), and that the fuzz target
accepts the input. ``docs/explanation/security.rst`` lists the same names.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz import differential as diff
from tests.fuzz.targets import CLIENT_KEY
from wsmachine.frames import build_frame
from wsmachine.handshake import accept_key

KEY = b"\x37\xfa\x21\x3d"
SECURITY_PAGE = Path(__file__).parent.parent / "docs" / "explanation" / "security.rst"


def masked(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    return build_frame(opcode, payload, fin=fin, rsv=rsv, mask_key=KEY)


def mask_payload(payload: bytes) -> bytes:
    return bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))


FRAME_CASES = [
    # (divergence, server role?, stream)
    ("close-inside-fragmented-message", True, masked(1, b"ab", fin=False) + masked(8, b"")),
    ("non-minimal-length", True, b"\x82\xfe\x00\x05" + KEY + mask_payload(b"hello")),
    ("length-top-bit", True, b"\x82\xff" + (1 << 63).to_bytes(8, "big") + KEY),
    ("length-top-bit", False, b"\x82\x7f" + (1 << 63).to_bytes(8, "big")),
    ("close-code-and-reason-both-invalid", True, masked(8, (1005).to_bytes(2, "big") + b"\xff")),
    ("close-code-and-reason-both-invalid", False, b"\x88\x03\x03\xff\xff"),
    ("several-faults-in-one-header", True, b"\xa1\xfe\xff\x38"),  # RSV2 and 65,336 bytes
    ("several-faults-in-one-header", False, b"\x21\x7e\x7e\x00"),  # RSV2, 32,256 bytes, no FIN
    # A 255-byte Pong inside a fragmented message: websockets counts it against what is left
    # of the message's limit (256 - 3), 1009; wsmachine: a control frame over 125, 1002.
    ("several-faults-in-one-header", False, b"\x02\x03abc\x8a\x7e\x00\xff"),
    # Found by the long run of 2026-12-04 (second campaign): a binary frame inside a
    # fragmented message (§5.4, 1002) whose 255 bytes pass what is left of the limit (1009).
    ("several-faults-in-one-header", False, b"\x01\x03abc\x02\x7e\x00\xff" + b"x" * 255),
    ("several-faults-in-one-header", True, masked(1, b"abc", fin=False) + masked(1, b"y" * 254)),
    # 3 + 255 bytes: past the 256-byte limit, and the continuation starts with 0xFF.
    ("size-and-utf8-both-broken", False, b"\x01\x03abc\x00\x7e\x00\xff\xff\xff"),
    # The same, then a valid text message: the message that passed the limit is judged.
    (
        "size-and-utf8-both-broken",
        False,
        b"\x01\x03abc\x00\x7e\x00\xff" + b"\xff" * 255 + b"\x81\x02ok",
    ),
    # Found by the long run of 2026-12-04 (second campaign): the same, and a Close after it,
    # which neither side reaches.
    (
        "size-and-utf8-both-broken",
        False,
        b"\x01\x03abc\x00\x7e\x00\xff" + b"\xed" * 255 + b"\x88\x00",
    ),
    # Found by the long run of 2026-12-04: a valid control frame between the fragments of a
    # 255-byte message. websockets counts its payload against the 1 byte left of the limit.
    (
        "control-frame-counted-in-message",
        True,
        masked(2, b"x" * 255, fin=False) + masked(10, b"pong"),
    ),
    ("control-frame-counted-in-message", False, b"\x02\x7e\x00\xff" + b"x" * 255 + b"\x89\x02hi"),
    (  # a Close: websockets checks the size before it refuses a Close there
        "control-frame-counted-in-message",
        True,
        masked(1, b"a" * 250, fin=False) + masked(8, (1000).to_bytes(2, "big") + b"bye..."),
    ),
    (  # only the Ping's header has arrived: websockets fails on it, wsmachine waits
        "control-frame-counted-in-message",
        True,
        masked(2, b"x" * 250, fin=False) + masked(0, b"y" * 5, fin=False) + masked(9, b"123")[:2],
    ),
]


@pytest.mark.parametrize(("divergence", "server", "stream"), FRAME_CASES)
def test_frame_divergence(divergence: str, server: bool, stream: bytes) -> None:
    theirs, named = diff._theirs_frames(stream, server)
    ours = diff._ours_frames(stream, server)
    assert ours != theirs
    found = named or diff._known_frame_divergence(stream, server, ours, theirs)
    assert found == divergence
    (diff.diff_frames_server if server else diff.diff_frames_client)(b"\x00" + stream)


def test_two_divergences_in_one_stream() -> None:
    # Found by the long run of 2026-12-04. wsmachine fails at the non-minimal length of the
    # first fragment (1002); websockets reads it, takes a Pong, and refuses the Close inside
    # the message (1002). The harness names the first divergence, and the target passes.
    stream = b"\x02\xfe\x00\x05" + KEY + mask_payload(b"hello") + masked(10, b"p") + masked(8, b"")
    theirs, named = diff._theirs_frames(stream, True)
    ours = diff._ours_frames(stream, True)
    assert (ours, theirs, named) == (
        [("fail", 1002)],
        [("pong", b"p"), ("fail", 1002)],
        "close-inside-fragmented-message",
    )
    assert diff._known_frame_divergence(stream, True, ours, theirs) == "non-minimal-length"
    diff.diff_frames_server(b"\x00" + stream)


def test_a_control_frame_within_the_limit_is_no_divergence() -> None:
    # 250 + 6 bytes fit the limit: websockets takes the Pong too, and both agree.
    stream = masked(2, b"x" * 250, fin=False) + masked(10, b"pong..")
    assert diff._ours_frames(stream, True) == diff._theirs_frames(stream, True)[0]
    # And a real disagreement still fails the target: websockets' outcome, changed.
    assert diff._known_frame_divergence(stream, True, [], [("fail", 1009)]) is None


def test_a_new_message_within_the_limit_is_no_divergence() -> None:
    # 3 + 253 bytes fit: both refuse the binary frame inside the text message with 1002.
    stream = b"\x01\x03abc\x02\x7e\x00\xfd" + b"x" * 253
    assert diff._ours_frames(stream, False) == [("fail", 1002)]
    assert diff._theirs_frames(stream, False)[0] == [("fail", 1002)]
    # Past the limit, but a continuation with no message comes first: not this divergence.
    stream = b"\x00\x03abc\x01\x03abc\x02\x7e\x00\xff" + b"x" * 255
    assert diff._known_frame_divergence(stream, False, [("fail", 1002)], [("fail", 1009)]) is None


@pytest.mark.parametrize(
    ("server", "stream"),
    [
        (True, masked(1, b"abc", rsv=0x40)[:-1]),  # RSV1: wsmachine at the header
        (True, masked(1, b"\xff\xfeab")[:-2]),  # bad UTF-8: wsmachine before the frame ends
        (False, b"\x81\xff\x00\x00"),  # a masked frame to a client: websockets at once
    ],
)
def test_fail_fast_timing(server: bool, stream: bytes) -> None:
    # One side fails before the frame is complete, the other waits; padded, both fail alike.
    theirs, _ = diff._theirs_frames(stream, server)
    ours = diff._ours_frames(stream, server)
    assert ours != theirs
    assert diff._known_frame_divergence(stream, server, ours, theirs) is None
    (diff.diff_frames_server if server else diff.diff_frames_client)(b"\x00" + stream)


def test_utf8_surrogate_prefix() -> None:
    # Python's decoder waits on ED A0; wsmachine fails at once. The harness follows wsmachine.
    stream = masked(1, b"y\xed\xa0", fin=False) + b"\x42\x80"  # then an RSV1 frame (1002)
    assert diff._ours_frames(stream, True) == [("fail", 1007)]
    assert diff._theirs_frames(stream, True) == ([("fail", 1007)], None)
    assert diff._surrogate_prefix(b"\xed\xa0") and not diff._surrogate_prefix(b"\xed\x9f")
    diff.diff_frames_server(b"\x00" + stream)


def request(*lines: str, target: str = "/chat", end: str = "\r\n") -> bytes:
    head = [
        f"GET {target} HTTP/1.1",
        "Host: h",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {CLIENT_KEY}",
        "Sec-WebSocket-Version: 13",
        *lines,
    ]
    return (end.join(head) + end + end).encode("latin-1")


def response(*lines: str, status: str = "HTTP/1.1 101 Switching Protocols") -> bytes:
    head = [
        status,
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(CLIENT_KEY)}",
        *lines,
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")


HTTP_CASES = [
    ("bare-lf", True, request(end="\n")),
    ("bare-lf", False, response("X-A: b\n")),
    ("request-target", True, request(target="chat")),
    ("request-target", True, request(target="/ch#at")),
    ("host-field", True, request("Host: second")),
    ("host-field", True, request().replace(b"Host: h", b"Host: [h")),
    ("host-field", True, request().replace(b"Host: h", b"Host: :")),
    ("http-version", True, request().replace(b"HTTP/1.1", b"HTTP/1.2")),
    ("http-version", False, response(status="HTTP/1.2 101 Switching Protocols")),
    ("origin-field", True, request("Origin: n\x83l")),
    ("upgrade-list", True, request().replace(b"Upgrade: websocket", b"Upgrade: websocket, h2c")),
    ("framing-field-in-101", False, response("Transfer-Encoding: gzip")),
    ("framing-field-in-101", False, response("Content-Length: x")),
    ("interim-1xx", False, b"HTTP/1.1 100 Continue\r\n\r\n" + response()),
    ("reason-phrase", False, response(status="HTTP/1.1 101 Switching\x02Protocols")),
    ("ctl-in-field", False, response("X-A: a\x05b")),
    ("ctl-in-field", True, request("X-A: a\x05b")),
    ("empty-extension-list", False, response("Sec-WebSocket-Extensions: ,")),
    ("ctl-in-target", True, request(target="/c\x01\x00hat")),
]


@pytest.mark.parametrize(("divergence", "server", "stream"), HTTP_CASES)
def test_handshake_divergence(divergence: str, server: bool, stream: bytes) -> None:
    if server:
        ours, theirs = diff._ours_handshake_server(stream), diff._theirs_handshake_server(stream)
    else:
        ours, theirs = diff._ours_handshake_client(stream), diff._theirs_handshake_client(stream)
    assert ours != theirs
    assert diff._known_http_divergence(stream, ours, theirs, server) == divergence
    (diff.diff_handshake_server if server else diff.diff_handshake_client)(b"\x00" + stream)


def test_the_valid_handshakes_agree() -> None:
    assert diff._ours_handshake_server(request()) == diff._theirs_handshake_server(request())
    assert diff._ours_handshake_server(request()) == diff.ACCEPT
    assert diff._ours_handshake_client(response()) == diff._theirs_handshake_client(response())
    assert diff._ours_handshake_client(response()) == diff.ACCEPT


def test_a_real_disagreement_fails_the_target(monkeypatch: pytest.MonkeyPatch) -> None:
    # The harness must not set everything aside: make wsmachine refuse a valid request.
    monkeypatch.setattr(diff, "_ours_handshake_server", lambda stream: diff.REFUSE)
    with pytest.raises(AssertionError, match="disagree on the upgrade request"):
        diff.diff_handshake_server(b"\x00" + request())


def test_every_divergence_is_tested_and_documented() -> None:
    tested = {case[0] for case in FRAME_CASES + HTTP_CASES}
    tested |= {"fail-fast-timing", "utf8-surrogate-prefix"}
    assert tested == set(diff.DIVERGENCES)
    page = SECURITY_PAGE.read_text()
    missing = [name for name in diff.DIVERGENCES if f"``{name}``" not in page]
    assert not missing, f"not in {SECURITY_PAGE.name}: {missing}"
