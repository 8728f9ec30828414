"""The public API: ``__all__`` is complete, everything in it exists and is documented, and the
names and signatures match the contract in API.md."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import re
import types
from pathlib import Path
from typing import Any

import pytest

import wsmachine
import wsmachine.testing

PACKAGE_DIR = Path(wsmachine.__file__).parent
PUBLIC_PACKAGES = [wsmachine, wsmachine.testing]


def _own_doc(obj: Any) -> str:
    """The docstring written for ``obj`` itself (not inherited, not dataclass-generated)."""
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else obj.__doc__
    doc = (doc or "").strip()
    if (
        isinstance(obj, type)
        and dataclasses.is_dataclass(obj)
        and doc.startswith(obj.__name__ + "(")
    ):
        return ""
    return doc


def _alias_documented(name: str) -> bool:
    """A type alias is documented by a ``#:`` comment on the line above its assignment."""
    pattern = re.compile(rf"^{re.escape(name)}\s*(:[^=]*)?=")
    for path in PACKAGE_DIR.rglob("*.py"):
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if pattern.match(line) and i and lines[i - 1].startswith("#:"):
                return True
    return False


@pytest.mark.parametrize("package", PUBLIC_PACKAGES, ids=lambda p: p.__name__)
class TestAll:
    def test_names_exist_once(self, package: types.ModuleType) -> None:
        names = package.__all__
        assert len(names) == len(set(names))
        for name in names:
            assert hasattr(package, name), name

    def test_names_are_documented(self, package: types.ModuleType) -> None:
        for name in package.__all__:
            obj = getattr(package, name)
            if isinstance(obj, types.GenericAlias | types.UnionType):  # a type alias
                assert _alias_documented(name), f"{name} has no #: comment"
            else:
                assert isinstance(obj, type) or inspect.isfunction(obj), name
                assert _own_doc(obj), f"{name} has no docstring"

    def test_nothing_public_is_missing(self, package: types.ModuleType) -> None:
        for name in dir(package):
            if name.startswith("_"):
                continue
            if isinstance(getattr(package, name), types.ModuleType):
                continue
            assert name in package.__all__, f"{package.__name__}.{name} is not in __all__"

    def test_star_import_gives_exactly_all(self, package: types.ModuleType) -> None:
        namespace: dict[str, Any] = {}
        exec(f"from {package.__name__} import *", namespace)
        namespace.pop("__builtins__")
        assert set(namespace) == set(package.__all__)

    def test_package_is_documented(self, package: types.ModuleType) -> None:
        assert (package.__doc__ or "").strip()


def _public_members(cls: type) -> list[tuple[str, Any]]:
    return [
        (name, member)
        for name, member in vars(cls).items()
        if not name.startswith("_") and (callable(member) or isinstance(member, property))
    ]


PUBLIC_CLASSES = sorted(
    {
        obj
        for package in PUBLIC_PACKAGES
        for name in package.__all__
        if isinstance(obj := getattr(package, name), type)
    },
    key=lambda cls: cls.__qualname__,
)


@pytest.mark.parametrize("cls", PUBLIC_CLASSES, ids=lambda c: c.__name__)
def test_public_methods_are_documented(cls: type) -> None:
    for name, member in _public_members(cls):
        target = member.fget if isinstance(member, property) else member
        if isinstance(target, staticmethod | classmethod):
            target = target.__func__
        assert (getattr(target, "__doc__", None) or "").strip(), f"{cls.__name__}.{name}"


def test_every_module_all_is_real() -> None:
    for info in pkgutil.walk_packages(wsmachine.__path__, "wsmachine."):
        if info.name.endswith("__main__"):
            continue  # a script
        try:
            module = importlib.import_module(info.name)
        except ImportError as exc:  # an optional dependency is missing
            assert exc.name and not exc.name.startswith("wsmachine"), exc
            continue
        for name in getattr(module, "__all__", ()):
            assert hasattr(module, name), f"{info.name}.{name}"


def test_typed_marker_is_shipped() -> None:
    assert (PACKAGE_DIR / "py.typed").is_file()


def test_version() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", wsmachine.__version__)


def test_error_hierarchy() -> None:
    assert issubclass(wsmachine.ProtocolError, Exception)
    assert issubclass(wsmachine.LocalProtocolError, wsmachine.ProtocolError)
    assert issubclass(wsmachine.RemoteProtocolError, wsmachine.ProtocolError)
    assert not issubclass(wsmachine.LocalProtocolError, wsmachine.RemoteProtocolError)
    error = wsmachine.RemoteProtocolError("m")
    assert (error.close_code, error.status_hint, str(error)) == (1002, 400, "m")


# ------------------------------------------------------------------------------------------------
# The contract of API.md.
# ------------------------------------------------------------------------------------------------


def _params(func: Any) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(func).parameters)


COMMON_SETTINGS = [
    "max_message_size",
    "max_frame_size",
    "max_fragments",
    "stream",
    "auto_pong",
    "max_handshake_size",
    "max_handshake_line",
    "max_handshake_headers",
]


def test_server_constructor_is_keyword_only() -> None:
    params = _params(wsmachine.ServerConnection)
    assert list(params) == [
        "subprotocols",
        "extensions",
        "origin_policy",
        *COMMON_SETTINGS,
        "close_reasons",
    ]
    assert params["close_reasons"].default is True
    assert params["origin_policy"].default is None
    assert params["max_fragments"].default is None
    assert params["max_handshake_line"].default == 8192
    assert params["max_handshake_headers"].default == 128
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    assert params["max_message_size"].default == 1 << 20
    assert params["max_frame_size"].default is None
    assert params["stream"].default is False
    assert params["auto_pong"].default is True
    assert params["max_handshake_size"].default == 16384


def test_client_constructor() -> None:
    params = _params(wsmachine.ClientConnection)
    assert list(params) == [
        "host",
        "path",
        "subprotocols",
        "extensions",
        "origin",
        "extra_headers",
        *COMMON_SETTINGS,
        "max_rejection_body",
        "close_reasons",
    ]
    assert params["host"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert params["path"].default == "/"
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(params.values())[2:])
    assert params["origin"].default is None


@pytest.mark.parametrize(
    ("cls", "fields"),
    [
        (wsmachine.Handshake, ["path", "host", "origin", "subprotocols", "extensions", "headers"]),
        (wsmachine.HTTPRequest, ["method", "path", "headers"]),
        (wsmachine.Accepted, ["subprotocol", "extensions", "headers"]),
        (wsmachine.Rejected, ["status_code", "headers", "body", "error"]),
        (wsmachine.Text, ["data", "final"]),
        (wsmachine.Binary, ["data", "final"]),
        (wsmachine.Ping, ["payload"]),
        (wsmachine.Pong, ["payload"]),
        (wsmachine.Close, ["code", "reason", "error"]),
    ],
)
def test_event_fields(cls: type, fields: list[str]) -> None:
    assert [f.name for f in dataclasses.fields(cls)] == fields


def test_connection_methods() -> None:
    for name in [
        "receive_data",
        "receive_eof",
        "data_to_send",
        "should_close",
        "close_expected",
        "send_text",
        "send_binary",
        "ping",
        "pong",
        "close",
    ]:
        assert callable(getattr(wsmachine.Connection, name)), name
    assert isinstance(wsmachine.Connection.state, property)
    assert callable(wsmachine.ServerConnection.accept)
    assert callable(wsmachine.ServerConnection.reject)
    assert _params(wsmachine.ServerConnection.accept)["subprotocol"].default is None
    reject = _params(wsmachine.ServerConnection.reject)
    assert (reject["status"].default, reject["body"].default) == (403, b"")
    close = _params(wsmachine.Connection.close)
    assert (close["code"].default, close["reason"].default) == (1000, "")
    for name in ["send_text", "send_binary"]:
        assert _params(getattr(wsmachine.Connection, name))["final"].kind is (
            inspect.Parameter.KEYWORD_ONLY
        )


def test_states() -> None:
    assert [s.name for s in wsmachine.State] == [
        "CONNECTING",
        "OPEN",
        "CLOSING",
        "REMOTE_CLOSING",
        "CLOSED",
        "REJECTING",
        "REJECTED",
    ]


def test_connections_have_no_instance_dict() -> None:
    assert not hasattr(wsmachine.ServerConnection(), "__dict__")
    assert not hasattr(wsmachine.ClientConnection("h"), "__dict__")
    assert not hasattr(wsmachine.testing.ConnectionPair(), "__dict__")


def test_connection_is_abstract() -> None:
    with pytest.raises(TypeError):
        wsmachine.Connection()  # type: ignore[abstract,call-arg]


def test_reference_page_and_all_agree() -> None:
    """docs/reference/api.rst documents exactly the names in ``wsmachine.__all__``."""
    import re
    from pathlib import Path

    page = Path(__file__).parent.parent / "docs" / "reference" / "api.rst"
    directive = re.compile(r"^\.\. auto(?:class|exception|function|data):: (\S+)", re.MULTILINE)
    documented = set()
    for name in directive.findall(page.read_text(encoding="utf-8")):
        module, _, short = name.rpartition(".")
        if module in ("", "wsmachine", "wsmachine.events") and short in wsmachine.__all__:
            documented.add(short)
        elif not module:
            documented.add(short)  # a bare name must be public: checked below
    assert documented == set(wsmachine.__all__)
