"""The scale benchmark's harness with small numbers: it measures what it says (no timing)."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

scale = pytest.importorskip("benchmarks.scale")
pytest.importorskip("websockets")

CONNECTIONS = 50
CLIENTS = 20
BROADCASTS = 5


def test_expected_stream_is_frames_of_125_bytes() -> None:
    stream = scale.expected_stream(7, 3)
    assert len(stream) == 3 * scale.FRAME_SIZE
    frames = [stream[i : i + scale.FRAME_SIZE] for i in range(0, len(stream), scale.FRAME_SIZE)]
    for index, frame in zip(range(7, 10), frames, strict=True):
        assert frame[:2] == b"\x81\x7d"
        assert frame[2:] == f"broadcast {index:09d} ".ljust(125, "x").encode()


def test_small_run_measures_memory_and_checks_every_broadcast(tmp_path: Path) -> None:
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < CONNECTIONS + scale.FD_MARGIN:
        pytest.skip("RLIMIT_NOFILE hard limit too low")
    output = tmp_path / "scale.json"
    status = scale.main(
        [
            "--connections",
            str(CONNECTIONS),
            "--clients",
            str(CLIENTS),
            "--broadcasts",
            str(BROADCASTS),
            "--repeat",
            "1",
            "--timeout",
            "60",
            "--json",
            str(output),
        ]
    )
    assert status == 0
    result = json.loads(output.read_text(encoding="utf-8"))

    idle = {row["server"]: row for row in result["idle"]["rows"]}
    assert set(idle) == set(scale.SERVERS)
    for row in idle.values():
        assert row["note"] is None, row
        assert row["bytes_per_connection"] > 0, row
        (sample,) = row["samples"]
        assert sample["rss_after"] > sample["rss_before"] > 0

    # A broadcast run raises unless every client received every message, in order, and the
    # server sent each to every client; a server with a failed run has a note and no rate.
    broadcast = {row["server"]: row for row in result["broadcast"]["rows"]}
    assert set(broadcast) == set(scale.SERVERS)
    for row in broadcast.values():
        assert row["note"] is None, row
        assert len(row["samples"]) == 1
        assert row["broadcasts_per_second"] > 0


def test_a_missing_broadcast_is_detected() -> None:
    """The client's check fails when a server sends fewer broadcasts than expected."""
    server, port = scale.start_server("selector", CLIENTS)
    client = None
    try:
        client = scale.start_client(port, CLIENTS, 30)
        scale.wait_open(server, CLIENTS, 30)
        done = server.ask("broadcast 0 2 paced")
        assert done["sent"] == 2 * CLIENTS
        check = client.ask("expect 0 3 2")  # one more than was sent: short everywhere
        assert check["bad"] == CLIENTS
        assert "expected" in check["detail"]
        done = server.ask("broadcast 2 3 burst")
        check = client.ask("expect 2 3 30")
        assert check == {"complete": CLIENTS, "bad": 0, "detail": None}
    finally:
        scale.stop_all([c for c in (client, server) if c is not None])
