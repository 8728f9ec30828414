"""Copied by ``run.py`` as ``tests/protocols/conftest.py`` into a temporary copy of uvicorn's
own test suite: it runs uvicorn's ``tests/protocols/test_websocket.py`` over
:class:`~wsmachine.integrations.uvicorn.WSMachineProtocol`, as uvicorn runs it over its own
protocol classes (the ``ws_protocol_cls`` fixture, overridden here).

Tests that do not take ``ws_protocol_cls`` (they pin uvicorn's websockets-based class) are
deselected. Tests that cannot pass by design are marked ``xfail(strict=True)`` with the
reason: if one starts passing, the run fails and the list is to be updated.
"""

from __future__ import annotations

from typing import Any

import pytest

from wsmachine.integrations.uvicorn import WSMachineProtocol

#: Test name (without parameters) -> why it cannot pass over WSMachineProtocol.
KNOWN_DIFFERENCES = {
    "test_server_keepalive_ping_pong": (
        "asserts isinstance(protocol, (WSProtocol, WebSocketsSansIOProtocol)) and reads the "
        "private ping_sent_at attribute"
    ),
    "test_server_keepalive_disabled": (
        "asserts isinstance(protocol, (WSProtocol, WebSocketsSansIOProtocol)) and reads the "
        "private ping_timer attribute"
    ),
    "test_duplicate_handshake": (
        "an application error after accept closes with 1011 (a Close frame); uvicorn drops "
        "the TCP connection, so its client sees 1006"
    ),
    "test_close_resumes_reads_paused_on_an_unconsumed_message": (
        "reading pauses when ws_max_queue messages wait (ServerOptions.max_queue); uvicorn's "
        "sans-IO classes pause after every message, which the test asserts first"
    ),
}


@pytest.fixture(params=[pytest.param(WSMachineProtocol, id="wsmachine")])
def ws_protocol_cls(request: pytest.FixtureRequest) -> Any:
    return request.param


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, deselected = [], []
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "ws_protocol_cls" not in names:
            deselected.append(item)
            continue
        kept.append(item)
        base = item.name.split("[", 1)[0]
        reason = KNOWN_DIFFERENCES.get(base)
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
