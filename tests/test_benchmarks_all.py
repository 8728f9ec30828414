"""The one benchmark command (``benchmarks.all``) and the echo benchmark's correctness check.

No timing is asserted: these prove that every row of issue 13's table is produced, and that a
server echoing wrong bytes, the wrong type, closing or going silent fails the run.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from wsmachine.adapters.selector import Handler, Peer, Server  # noqa: E402

asgi_echo = pytest.importorskip("benchmarks.asgi_echo")
bench_all = pytest.importorskip("benchmarks.all")


class Broken(Handler):
    """Echoes the first messages right, then misbehaves in the way ``mode`` says."""

    def __init__(self, mode: str, good: int = 3) -> None:
        self.mode = mode
        self.left = good

    def on_message(self, peer: Peer, message: str | bytes) -> None:
        if self.left:
            self.left -= 1
            peer.send(message)
            return
        assert isinstance(message, bytes)
        if self.mode == "corrupt":  # one byte changed
            peer.send(message[:-1] + bytes([message[-1] ^ 1]))
        elif self.mode == "text":  # the right bytes as the wrong type
            peer.send(message.decode("latin-1"))
        elif self.mode == "close":
            peer.close(1000, "bye")
        # "silent": no answer at all


class ThreadServer:
    """A selector server on 127.0.0.1 in a thread; stands in for a server process."""

    def __init__(self, handler: Handler) -> None:
        self.server = Server(handler, "127.0.0.1", 0)
        self.port = self.server.port
        self.thread = self.server.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.stop(timeout=10)


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("corrupt", AssertionError),
        ("text", AssertionError),
        ("close", AssertionError),
        ("silent", TimeoutError),
    ],
)
def test_the_client_fails_a_wrong_echo(
    monkeypatch: pytest.MonkeyPatch, mode: str, error: type[Exception]
) -> None:
    monkeypatch.setattr(asgi_echo, "STALL_SECONDS", 0.5)
    server = ThreadServer(Broken(mode))
    try:
        client = asgi_echo.PipelinedClient(server.port)
        with pytest.raises(error):
            client.round_trips(b"0123456789abcdef", 0.2, 8)
        client.sock.close()
    finally:
        server.stop()


class FakeProcess:
    """What ``start_server`` returns, for a server running in this process's thread."""

    def __init__(self, server: ThreadServer) -> None:
        self.server = server


def _patch_servers(monkeypatch: pytest.MonkeyPatch, servers: list[str]) -> None:
    """One group with ``servers``: the real selector server, an in-test broken one (its
    echoes go wrong after the warm-up) and one needing a package that does not exist."""
    real_start, real_stop = asgi_echo.start_server, asgi_echo.stop_server

    def start(module: str, name: str) -> tuple[Any, int]:
        if name == "broken":
            server = ThreadServer(Broken("corrupt", good=200))
            return FakeProcess(server), server.port
        process, port = real_start(module, name)
        return process, int(port)

    def stop(process: Any) -> None:
        if isinstance(process, FakeProcess):
            process.server.stop()
        else:
            real_stop(process)

    group = {
        "title": "test group",
        "servers": servers,
        "reference": "wsmachine-selector",
        "targets": {},
    }
    monkeypatch.setattr(asgi_echo, "GROUPS", {"test": group})
    monkeypatch.setitem(asgi_echo.REQUIRES, "broken", ())
    monkeypatch.setitem(asgi_echo.REQUIRES, "absent", ("wsmachine-no-such-distribution",))
    monkeypatch.setattr(asgi_echo, "start_server", start)
    monkeypatch.setattr(asgi_echo, "stop_server", stop)


def test_check_mode_fails_a_broken_server_and_skips_a_missing_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _patch_servers(monkeypatch, ["wsmachine-selector", "broken", "absent"])
    output = tmp_path / "echo.json"
    assert asgi_echo.main(["--check", "--json", str(output)]) == 1
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["ok"] is False
    assert report["status"] == {
        "wsmachine-selector": "ok",
        "broken": "FAILED",
        "absent": "SKIPPED",
    }
    assert "wrong echo" in report["groups"]["test"]["notes"]["broken"]
    rows = report["groups"]["test"]["rows"]
    assert all(r["median"] is None for r in rows if r["server"] == "broken")
    assert all(r["median"] > 0 for r in rows if r["server"] == "wsmachine-selector")


def test_check_mode_passes_with_a_missing_peer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _patch_servers(monkeypatch, ["wsmachine-selector", "absent"])
    output = tmp_path / "echo.json"
    assert asgi_echo.main(["--check", "--json", str(output)]) == 0
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["status"] == {"wsmachine-selector": "ok", "absent": "SKIPPED"}


def test_a_failed_or_unfinished_part_fails_the_command(tmp_path: Path) -> None:
    """The summary still lists every row (not measured) when the parts give nothing."""

    def runner(module: str, args: list[str], output: Path) -> int | None:
        if module == "benchmarks.run":
            row = {
                "name": "handshake",
                "unit": "hs/s",
                "rates": {"wsmachine": 2.0, "websockets": 1.0},
                "errors": {"wsproto": "FAIL: wrong Sec-WebSocket-Accept"},
            }
            output.write_text(json.dumps({"results": [row]}), encoding="utf-8")
            return 1
        if module == "benchmarks.asgi_echo":
            output.write_text(json.dumps({"groups": {}}), encoding="utf-8")
            return 0
        return None  # scale: timed out, no JSON

    output = tmp_path / "all.json"
    assert bench_all.main(["--check", "--json", str(output)], runner=runner) == 1
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["correctness"]["run"]["failed"] == [
        "handshake: wsproto: FAIL: wrong Sec-WebSocket-Accept"
    ]
    assert report["correctness"]["asgi_echo"]["ok"] is True
    assert not report["correctness"]["scale"]["ok"]
    summary = {row["row"]: row for row in report["summary"]}
    assert len(summary) == len(expected_rows())
    handshake = summary["server handshake [handshake]"]
    assert handshake["measured"].startswith("2 hs/s; n/a wsproto; 2.00x websockets")
    assert handshake["targets"] == [[">=1.2x wsproto", None], [">=0.85x websockets", True]]
    assert handshake["met"] is None


def expected_rows() -> list[str]:
    """Every line issue 13's table has in the summary."""
    rows = [
        "server recv 1 MiB binary, receive_data [recv_binary_1m]",
        "server recv 1 MiB binary, receive-into [recv_binary_1m_into]",
        "server recv 64 KiB binary [recv_binary_64k]",
        "server recv 1 MiB text, decoded [recv_text_1m]",
        "server recv 64 KiB text, decoded [recv_text_64k]",
        "pure Python: recv 1 MiB binary [recv_binary_1m_pure]",
        "pure Python: recv 1 MiB text [recv_text_1m_pure]",
        "server handshake [handshake]",
    ]
    for adapter, server in (
        ("selector", "wsmachine-selector"),
        ("asyncio", "wsmachine"),
        ("trio", "wsmachine-trio"),
    ):
        rows += [f"loopback echo, {adapter} adapter, {s} [{server}]" for s in asgi_echo.SIZES]
    rows += [f"idle connection memory, {a} adapter" for a in ("selector", "asyncio")]
    rows += [
        f"broadcast 125 B to every client, {a} adapter, {m}"
        for a in ("selector", "asyncio")
        for m in ("paced", "burst")
    ]
    return rows


def _installed(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def test_the_one_command_produces_every_row(tmp_path: Path) -> None:
    """``python -m benchmarks.all --check``: every part runs, every server echoes right.

    picows and trio-websocket, two of issue 13's references, are optional: without them
    their servers must be SKIPPED (not failed) and the rows held against them not judged.
    """
    for peer in ("websockets", "wsproto", "trio"):
        pytest.importorskip(peer, reason=f"{peer}, a reference of issue 13, is not installed")
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 50 + 256:
        pytest.skip("RLIMIT_NOFILE hard limit too low for the scale part")
    output = tmp_path / "all.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.all", "--check", "--json", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=85,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["ok"] is True
    for part, verdict in report["correctness"].items():
        assert verdict["ok"], (part, verdict)
    status = report["results"]["asgi_echo"]["status"]
    for server in ("wsmachine", "wsmachine-selector", "wsmachine-trio", "websockets"):
        assert status[server] == "ok", (server, status)
    missing = set()
    for server, module in (("picows", "picows"), ("trio-websocket", "trio_websocket")):
        if _installed(module):
            assert status[server] == "ok", (server, status)
        else:
            assert status[server] == "SKIPPED", (server, status)
            missing.add(server)
    assert all(v in ("ok", "SKIPPED") for v in status.values()), status

    summary = [row["row"] for row in report["summary"]]
    assert summary == expected_rows()
    for row in report["summary"]:  # measured, and judged against every target
        unjudged = any(m in label for label, _ in row["targets"] for m in missing)
        if not unjudged:
            assert row["measured"] != "not measured", row
            assert row["met"] in (True, False), row
    printed = done.stdout[done.stdout.index("==== Summary") :]
    for name in expected_rows():
        assert name in printed
