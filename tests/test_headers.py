"""Header-list grammar: RFC 7230 §7 (``#rule`` lists), §3.2.6 (token, quoted-string),
§6.7 (``Upgrade`` protocols) and RFC 6455 §9.1 (``Sec-WebSocket-Extensions``)."""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from wsmachine.errors import RemoteProtocolError
from wsmachine.headers import (
    ExtensionOffer,
    build_extension_header,
    is_token,
    parse_extension_list,
    parse_token_list,
)

TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
SEPARATORS = '()<>@,;:\\"/[]?={} \t'

tokens = st.text(alphabet=TCHARS, min_size=1, max_size=12)


def upgrade(*values: bytes | str) -> list[str]:
    return parse_token_list(values, "Upgrade", allow_slash=True)


def connection(*values: bytes | str) -> list[str]:
    return parse_token_list(values, "Connection")


def extensions(*values: bytes | str) -> list[ExtensionOffer]:
    return parse_extension_list(values)


def assert_rejects(parse: Callable[..., Any], *values: bytes | str) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        parse(*values)
    assert info.value.status_hint == 400
    assert "RFC 7230 §7" in str(info.value)
    return info.value


# --------------------------------------------------------------------------------------------
# RFC 7230 §3.2.6: tokens.
# --------------------------------------------------------------------------------------------


class TestToken:
    """RFC 7230 §3.2.6: token = 1*tchar."""

    def test_every_tchar_is_a_token(self) -> None:
        assert is_token(TCHARS)
        for c in TCHARS:
            assert is_token(c), c

    @pytest.mark.parametrize("c", [*SEPARATORS, "\x00", "\x7f", "\r", "\n", "é", "€"])
    def test_separators_and_non_ascii_are_not(self, c: str) -> None:
        assert not is_token(c)
        assert not is_token(f"abc{c}def")

    def test_empty_is_not_a_token(self) -> None:
        assert not is_token("")

    @given(st.text(max_size=20))
    def test_matches_definition(self, text: str) -> None:
        assert is_token(text) == (text != "" and all(c in TCHARS for c in text))


# --------------------------------------------------------------------------------------------
# RFC 7230 §7: comma-separated token lists (Connection, Sec-WebSocket-Protocol).
# --------------------------------------------------------------------------------------------


class TestTokenList:
    """RFC 7230 §7: ``#token`` over one or more header lines."""

    def test_single(self) -> None:
        assert connection("Upgrade") == ["Upgrade"]

    def test_optional_whitespace(self) -> None:
        assert connection("  keep-alive ,\tUpgrade\t") == ["keep-alive", "Upgrade"]
        assert connection("a,b , c\t,\t d") == ["a", "b", "c", "d"]

    def test_empty_elements_are_skipped(self) -> None:
        assert connection(",a,,b,") == ["a", "b"]
        assert connection(" , ,\t,") == []
        assert connection("") == []
        assert connection() == []

    def test_repeated_header_lines_concatenate_in_order(self) -> None:
        assert connection(b"keep-alive", b"Upgrade, x", b"", b"y") == [
            "keep-alive",
            "Upgrade",
            "x",
            "y",
        ]

    def test_bytes_and_str_agree(self) -> None:
        assert connection(b"a, b") == connection("a, b") == ["a", "b"]

    def test_case_is_preserved(self) -> None:
        assert connection("UpGrade, KEEP-ALIVE") == ["UpGrade", "KEEP-ALIVE"]

    def test_duplicates_are_kept(self) -> None:
        assert parse_token_list(["chat, chat", "chat"], "Sec-WebSocket-Protocol") == [
            "chat",
            "chat",
            "chat",
        ]

    @pytest.mark.parametrize(
        "value",
        [
            "a b",
            "a;b",
            "a=b",
            '"a"',
            "a/b",  # '/' only in Upgrade
            "a\x00",
            "a\r\nb",
            "a\x0bb",
            "(comment)",
            "a, b c",
            "é",
            b"\xe9",
            b"caf\xc3\xa9",
            "a,\x7f",
            "a\u2028",
        ],
    )
    def test_malformed(self, value: bytes | str) -> None:
        error = assert_rejects(connection, value)
        assert "Connection" in str(error)

    def test_one_bad_line_among_good_ones(self) -> None:
        assert_rejects(connection, "a", "b c", "d")

    def test_error_names_the_header(self) -> None:
        with pytest.raises(RemoteProtocolError, match="Sec-WebSocket-Protocol"):
            parse_token_list(["chat, @"], "Sec-WebSocket-Protocol")


class TestUpgradeList:
    """RFC 7230 §6.7: Upgrade = 1#protocol; protocol = protocol-name ["/" protocol-version]."""

    def test_websocket(self) -> None:
        assert upgrade("websocket") == ["websocket"]
        assert upgrade("WebSocket") == ["WebSocket"]

    def test_protocols_with_versions(self) -> None:
        assert upgrade("h2c, websocket/13") == ["h2c", "websocket/13"]
        assert upgrade("HTTP/2.0, SHTTP/1.3, IRC/6.9, RTA/x11") == [
            "HTTP/2.0",
            "SHTTP/1.3",
            "IRC/6.9",
            "RTA/x11",
        ]

    def test_across_lines_with_ows(self) -> None:
        assert upgrade(" h2c ,", "\twebsocket ") == ["h2c", "websocket"]

    @pytest.mark.parametrize("value", ["a/b/c", "websocket / 13", "websocket /13", "a b", "a;v"])
    def test_malformed(self, value: str) -> None:
        error = assert_rejects(upgrade, value)
        assert "Upgrade" in str(error)

    @pytest.mark.parametrize("value", ["websocket/", "/13", "/", "h2c, /"])
    def test_empty_name_or_version(self, value: str) -> None:
        assert_rejects(upgrade, value)

    @settings(deadline=None)
    @given(st.text(alphabet="ab/, \t", max_size=12))
    @example("a/")
    def test_elements_are_protocols(self, text: str) -> None:
        try:
            result = upgrade(text)
        except RemoteProtocolError:
            return
        for element in result:
            name, _, version = element.partition("/")
            assert is_token(name)
            assert "/" not in element or is_token(version)


# --------------------------------------------------------------------------------------------
# RFC 6455 §9.1: Sec-WebSocket-Extensions.
# --------------------------------------------------------------------------------------------


class TestExtensionList:
    """RFC 6455 §9.1: extension-list = 1#extension; extension = name *(";" param)."""

    def test_name_only(self) -> None:
        assert extensions("permessage-deflate") == [ExtensionOffer("permessage-deflate")]

    def test_params_with_and_without_values(self) -> None:
        assert extensions(
            "permessage-deflate; client_max_window_bits; server_max_window_bits=10"
        ) == [
            ExtensionOffer(
                "permessage-deflate",
                (("client_max_window_bits", None), ("server_max_window_bits", "10")),
            )
        ]

    def test_ows_around_separators(self) -> None:
        assert extensions(' x ;a ;\tb = 1 ; c=\t"2" , y ') == [
            ExtensionOffer("x", (("a", None), ("b", "1"), ("c", "2"))),
            ExtensionOffer("y"),
        ]

    def test_no_space_at_all(self) -> None:
        assert extensions("x;a;b=1,y;c") == [
            ExtensionOffer("x", (("a", None), ("b", "1"))),
            ExtensionOffer("y", (("c", None),)),
        ]

    def test_quoted_value(self) -> None:
        assert extensions('x; server_max_window_bits="10"') == [
            ExtensionOffer("x", (("server_max_window_bits", "10"),))
        ]

    def test_quoted_value_with_escapes(self) -> None:
        # quoted-pair (RFC 7230 §3.2.6): "\1\0" is the token 10.
        assert extensions('x; b="\\1\\0"; c="a\\b"') == [
            ExtensionOffer("x", (("b", "10"), ("c", "ab")))
        ]

    def test_quoted_comma_and_semicolon_do_not_split(self) -> None:
        # A ',' inside quotes is not a list separator; it then fails §9.1's token rule,
        # rather than being misread as two offers.
        assert_rejects(extensions, 'x; a="1,y"')
        assert_rejects(extensions, 'x; a="1;b"')

    def test_several_offers_in_one_header(self) -> None:
        assert extensions(
            "permessage-deflate; client_max_window_bits=10, permessage-deflate, foo"
        ) == [
            ExtensionOffer("permessage-deflate", (("client_max_window_bits", "10"),)),
            ExtensionOffer("permessage-deflate"),
            ExtensionOffer("foo"),
        ]

    def test_offers_across_lines(self) -> None:
        assert extensions(b"a; p=1", "", b"b, c; q") == [
            ExtensionOffer("a", (("p", "1"),)),
            ExtensionOffer("b"),
            ExtensionOffer("c", (("q", None),)),
        ]

    def test_empty_elements(self) -> None:
        assert extensions(", a ,, b,") == [ExtensionOffer("a"), ExtensionOffer("b")]
        assert extensions("") == []
        assert extensions() == []

    def test_case_preserved(self) -> None:
        assert extensions("PerMessage-Deflate; Client_Max_Window_Bits=AbC") == [
            ExtensionOffer("PerMessage-Deflate", (("Client_Max_Window_Bits", "AbC"),))
        ]

    def test_param_order_and_duplicates_kept(self) -> None:
        assert extensions("x; b; a=1; b=2") == [
            ExtensionOffer("x", (("b", None), ("a", "1"), ("b", "2")))
        ]

    @pytest.mark.parametrize(
        "value",
        [
            ";",
            "a;",
            "a; ",
            ";a",
            "a;;b",
            "a; =1",
            "a; b=",
            "a; b= ",
            "a; b=,",
            'a; b="',
            'a; b="1',
            'a; b="1\\',
            'a; b="1\\"',
            'a; b=""',
            'a; b="a b"',
            'a; b="1"2',
            'a; b="1" 2',
            'a; b="x\x01"',
            'a; b="x\\\x01"',
            'a; b="x\r\n"',
            'a; b="x\x7f"',
            'a; b="\xe9"',
            "a b",
            "a; b c",
            "a; b=1 2",
            "a; b=1=2",
            "a=1",
            '"a"',
            "a; b=@",
            "a; b=/",
            "a; b=(c)",
            "a, b c",
            "a\x00",
            "é",
            b"caf\xe9",
            "a; b\x00",
        ],
    )
    def test_malformed(self, value: bytes | str) -> None:
        error = assert_rejects(extensions, value)
        assert "Sec-WebSocket-Extensions" in str(error)

    def test_error_in_a_later_line(self) -> None:
        assert_rejects(extensions, "a; b=1", "c;")

    def test_long_value_is_shortened_in_the_message(self) -> None:
        error = assert_rejects(extensions, "x" * 200 + " y")
        assert len(str(error)) < 300
        assert "offset 201" in str(error)


class TestExtensionOfferSerialization:
    """RFC 6455 §9.1: ``str(ExtensionOffer)`` writes the header element back."""

    def test_str(self) -> None:
        offer = ExtensionOffer(
            "permessage-deflate",
            (("client_max_window_bits", None), ("server_max_window_bits", "10")),
        )
        assert str(offer) == "permessage-deflate; client_max_window_bits; server_max_window_bits=10"
        assert str(ExtensionOffer("x")) == "x"

    def test_non_token_value_is_quoted_and_escaped(self) -> None:
        assert str(ExtensionOffer("x", (("k", 'a "b" \\c'),))) == 'x; k="a \\"b\\" \\\\c"'
        assert str(ExtensionOffer("x", (("k", ""),))) == 'x; k=""'

    def test_build_extension_header(self) -> None:
        assert (
            build_extension_header([ExtensionOffer("a", (("p", "1"),)), ExtensionOffer("b")])
            == "a; p=1, b"
        )
        assert build_extension_header([]) == ""


offers = st.builds(
    ExtensionOffer,
    tokens,
    st.lists(st.tuples(tokens, st.none() | tokens), max_size=4).map(tuple),
)


class TestExtensionRoundTrip:
    """RFC 6455 §9.1: what we write, we read back identically."""

    @given(offers)
    def test_str_round_trip(self, offer: ExtensionOffer) -> None:
        assert parse_extension_list([str(offer)]) == [offer]

    @given(st.lists(offers, max_size=5))
    def test_header_round_trip(self, items: list[ExtensionOffer]) -> None:
        assert parse_extension_list([build_extension_header(items)]) == items

    @given(name=tokens, key=tokens, value=tokens)
    def test_quoted_and_escaped_values_read_as_the_token(
        self, name: str, key: str, value: str
    ) -> None:
        escaped = "".join("\\" + c for c in value)
        for form in (f'"{value}"', f'"{escaped}"'):
            assert parse_extension_list([f"{name}; {key}={form}"]) == [
                ExtensionOffer(name, ((key, value),))
            ]


# --------------------------------------------------------------------------------------------
# Robustness: hostile input fails only with RemoteProtocolError, in linear time.
# --------------------------------------------------------------------------------------------

GRAMMAR_ALPHABET = 'ab1;=,"\\/ \t\r\n\x00\x7f\xe9@'


class TestHostileInput:
    """Arbitrary input never raises anything but RemoteProtocolError."""

    @settings(max_examples=300)
    @given(
        values=st.lists(
            st.one_of(
                st.text(),
                st.text(alphabet=GRAMMAR_ALPHABET, max_size=30),
                st.binary(max_size=30),
            ),
            max_size=3,
        )
    )
    def test_only_remote_protocol_error(self, values: list[bytes | str]) -> None:
        for parse in (
            lambda v: parse_token_list(v, "Connection"),
            lambda v: parse_token_list(v, "Upgrade", allow_slash=True),
            parse_extension_list,
        ):
            try:
                result = parse(values)
            except RemoteProtocolError as exc:
                assert exc.status_hint == 400
                continue
            assert isinstance(result, list)

    @settings(max_examples=300)
    @given(st.lists(st.text(alphabet=GRAMMAR_ALPHABET, max_size=30), max_size=3))
    def test_results_obey_the_grammar(self, values: list[str]) -> None:
        try:
            items = connection(*values)
        except RemoteProtocolError:
            pass
        else:
            assert all(is_token(t) for t in items)
        try:
            offers_ = extensions(*values)
        except RemoteProtocolError:
            return
        for offer in offers_:
            assert is_token(offer.name)
            for key, value in offer.params:
                assert is_token(key)
                assert value is None or is_token(value)


def _hostile_inputs(n: int) -> dict[str, str]:
    return {
        "commas": "," * n,
        "spaces": " " * n,
        "one token": "a" * n,
        "token then junk": "a" * (n - 1) + "@",
        "semicolons": "a" + ";" * n,
        "params": "a" + "; b" * (n // 3),
        "many offers": "a, " * (n // 3),
        "open quote": 'a; b="' + "x" * n,
        "escapes": 'a; b="' + "\\x" * (n // 2),
        "quotes": '"' * n,
        "equals": "a; b" + "=" * n,
        "nested": "a; b=" * (n // 5),
        "slashes": "a/" * (n // 2),
        "versions": "websocket/13, " * (n // 14),
        "quoted params": "a" + '; b="xy"' * (n // 8),
        "escaped params": "a" + '; b="\\x\\y"' * (n // 10),
    }


def _count_lines(func: Callable[[], object]) -> int:
    """Python line events executed by ``func``: a deterministic measure of work."""
    count = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        func()
    except RemoteProtocolError:
        pass
    finally:
        sys.settrace(old)
    return count


PARSERS: dict[str, Callable[[str], object]] = {
    "token list": lambda s: parse_token_list([s], "Connection"),
    "upgrade": lambda s: parse_token_list([s], "Upgrade", allow_slash=True),
    "extensions": lambda s: parse_extension_list([s]),
}


class TestLinearTime:
    """Header parsing is one pass: cost grows linearly with input size."""

    @pytest.mark.parametrize("parser", sorted(PARSERS))
    @pytest.mark.parametrize("kind", sorted(_hostile_inputs(10)))
    def test_operation_count_scales_linearly(self, parser: str, kind: str) -> None:
        parse = PARSERS[parser]
        small = _hostile_inputs(1_000)[kind]
        large = _hostile_inputs(10_000)[kind]
        ops_small = _count_lines(lambda: parse(small))
        ops_large = _count_lines(lambda: parse(large))
        # Ten times the input: about ten times the work (quadratic would be ~100x).
        assert ops_large <= 12 * ops_small + 100, (ops_small, ops_large)

    @pytest.mark.parametrize("kind", sorted(_hostile_inputs(10)))
    def test_100_kb_costs_ten_times_10_kb(self, kind: str) -> None:
        # Line events (above) do not see work done in C, such as slicing or searching a long
        # string again and again. So this compares the CPU time of this process (not the
        # wall clock: other processes' load does not count) at 100 KB and at 10 KB, best of
        # three: linear is about 10x, quadratic about 100x.
        large_value = _hostile_inputs(100_000)[kind]
        small_value = _hostile_inputs(10_000)[kind]
        assert len(large_value) >= 99_000
        for name, parse in PARSERS.items():
            large = _cpu_seconds(functools.partial(parse, large_value))
            small = _cpu_seconds(functools.partial(parse, small_value))
            assert large <= 30 * small + 0.002, (name, kind, small, large)


def _cpu_seconds(func: Callable[[], object]) -> float:
    """The least CPU time of this process that three runs of ``func`` took."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        with contextlib.suppress(RemoteProtocolError):
            func()
        best = min(best, time.process_time() - start)
    return best
