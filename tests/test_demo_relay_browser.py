"""Two browser tabs on two demo server processes that share one chat through Redis.

The DevTools harness and Chromium fixture are those of ``test_demo_browser``; the
redis-server and server-process fixtures are those of ``test_demo_relay``.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

from tests.test_demo_browser import DevTools, chat, devtools, screenshots
from tests.test_demo_relay import ChatProcess, RedisServer, chat_processes, redis_server

__all__ = ["chat_processes", "devtools", "redis_server", "screenshots"]  # fixtures, used

ONLINE = "document.getElementById('online')"
#: The page's log lines, in JavaScript.
LINES = "[...document.querySelectorAll('#log li')].map((li) => li.textContent)"


def test_two_tabs_on_two_servers_chat_through_redis(
    redis_server: RedisServer,
    chat_processes: Callable[..., ChatProcess],
    devtools: DevTools,
    screenshots: Path,
) -> None:
    one = chat_processes("--port", "0", "--redis", redis_server.url)
    two = chat_processes("--port", "0", "--redis", redis_server.url)
    ann = devtools.open_page(one.http_url)
    bob = devtools.open_page(two.http_url, 390, 844)

    # Each tab shows how many are here across both processes, and updates when it changes.
    for tab in (ann, bob):
        devtools.wait(tab, "demo.online === 2")
        assert devtools.evaluate(tab, f"{ONLINE}.hidden") is False
        assert devtools.evaluate(tab, f"{ONLINE}.textContent") == "\u00b7 2 online"
    ids = {devtools.evaluate(tab, "demo.id") for tab in (ann, bob)}
    assert len(ids) == 2  # unique across the processes

    # Ann types on process one; Bob's tab on process two shows it with her name, once.
    devtools.type(ann, "#name", "Ann")
    devtools.type(ann, "#text", "hello from one", enter=True)
    devtools.wait(bob, "demo.messages.some((m) => m.includes('hello from one'))")
    devtools.wait(ann, "demo.messages.some((m) => m.includes('hello from one'))")
    heard = chat(devtools, bob)
    assert [(m["from"], m["text"]) for m in heard] == [("Ann", "hello from one")]
    assert len(chat(devtools, ann)) == 1  # not twice to the sender's own tab
    assert "Ann:" in devtools.evaluate(bob, LINES)[-1]
    assert "(you)" in devtools.evaluate(ann, LINES)[-1]

    devtools.type(bob, "#name", "Bob")
    devtools.type(bob, "#text", "and back from two", enter=True)
    devtools.wait(ann, "demo.messages.some((m) => m.includes('and back from two'))")

    # Redis restarts: the tabs stay connected and show nothing odd; the chat resumes.
    lines_before = devtools.evaluate(ann, f"{LINES}.length")
    received_before = {tab: devtools.evaluate(tab, "demo.messages.length") for tab in (ann, bob)}
    redis_server.stop(signal.SIGKILL)
    one.wait_for(r"redis: connection lost")
    redis_server.start()
    one.wait_for(r"redis: reconnected")
    two.wait_for(r"redis: reconnected")
    devtools.type(bob, "#text", "after the restart", enter=True)
    devtools.wait(ann, "demo.messages.some((m) => m.includes('after the restart'))")
    assert devtools.evaluate(ann, f"{LINES}.length") == lines_before + 1
    for tab in (ann, bob):
        assert devtools.evaluate(tab, "demo.ws.readyState") == 1
        assert devtools.evaluate(tab, "document.getElementById('status').textContent").startswith(
            "connected to"
        )
        assert devtools.evaluate(tab, f"{ONLINE}.textContent") == "\u00b7 2 online"
        counts = devtools.evaluate(
            tab,
            f"""demo.messages.slice({received_before[tab]}).map((m) => JSON.parse(m))
                .filter((m) => m.type === "presence").map((m) => m.online)""",
        )
        assert set(counts) <= {2}, f"the count wavered: {counts}"

    # Bob leaves: Ann's tab counts one, without a line in the log.
    devtools.evaluate(bob, "demo.ws.close(1000); demo.closing")
    devtools.wait(ann, "demo.online === 1")
    assert devtools.evaluate(ann, f"{ONLINE}.textContent") == "\u00b7 1 online"
    assert devtools.evaluate(ann, f"{LINES}.length") == lines_before + 1
    assert devtools.evaluate(bob, f"{ONLINE}.hidden") is True  # no stale count when closed
    devtools.screenshot(ann, screenshots / "relay-ann.png")
    devtools.screenshot(bob, screenshots / "relay-bob.png")
    for tab in (ann, bob):
        assert devtools.problems(tab) == []
    assert one.stop() == 0
    assert two.stop() == 0
