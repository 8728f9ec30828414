"""The demo over HTTP/2 (RFC 8441): ``serve --http2`` (cleartext, and TLS with ALPN) and
``client --http2``, run as a user runs them; and headless Chromium loading the chat page over
HTTPS, to see whether it opens its WebSocket as a stream of the page's HTTP/2 connection."""

from __future__ import annotations

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("h2.connection")
pytest.importorskip("cryptography.x509")

from tests.certs import make_certificate
from tests.test_demo_browser import CHROMIUM, DevTools, devtools  # noqa: F401
from tests.test_main import ENV, ROOT, free_port, one_line_error, run_cli, stop, wait_for
from wsmachine.adapters.http2 import Client

TIMEOUT = 10.0


class Demo:
    """``python -m wsmachine serve --http2 ...`` on a free port, and its log."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.port = free_port()
        self.log = tmp_path / "serve.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "wsmachine", "serve", "--port", str(self.port), *args],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=ENV,
            )
        self.url = wait_for(self.log, rf"serving (https?://127\.0\.0\.1:{self.port}/)").group(1)

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return make_certificate(tmp_path)


@pytest.fixture
def demos(tmp_path: Path) -> Iterator[list[Demo]]:
    started: list[Demo] = []
    try:
        yield started
    finally:
        for demo in started:
            assert stop(demo.process) == 0, demo.text()


def line_client(url: str, lines: str, *args: str, cert: Path | None = None) -> tuple[int, str, str]:
    env = {**ENV, "SSL_CERT_FILE": str(cert)} if cert is not None else ENV
    result = subprocess.run(
        [sys.executable, "-m", "wsmachine", "client", url, *args],
        cwd=ROOT,
        input=lines,
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


def test_serve_http2_cleartext_with_the_line_client(tmp_path: Path, demos: list[Demo]) -> None:
    demo = Demo(tmp_path, "--http2", "--echo")
    demos.append(demo)
    assert "HTTP/2 cleartext" in demo.text()
    status, out, err = line_client(f"ws://127.0.0.1:{demo.port}/ws", "first\nsecond ✓\n", "--http2")
    assert status == 0, err
    assert out.splitlines() == ["first", "second ✓"]
    assert "closed: 1000" in err
    wait_for(demo.log, r"connect .* path=/ws over HTTP/2 stream 1 name=guest-1")
    wait_for(demo.log, r"disconnect .* code=1000 by=client")
    # HTTP/1.1 on the same port, as before.
    status, out, err = line_client(f"ws://127.0.0.1:{demo.port}/ws", "plain\n")
    assert (status, out.splitlines()) == (0, ["plain"]), err
    assert re.search(r"connect .* path=/ws name=guest-2", demo.text())


def test_serve_http2_over_tls_both_protocols(
    tmp_path: Path, demos: list[Demo], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    demo = Demo(tmp_path, "--http2", "--certfile", str(cert), "--keyfile", str(key))
    demos.append(demo)
    assert demo.url.startswith("https://")
    assert f"WebSocket endpoint wss://127.0.0.1:{demo.port}/ws" in demo.text()
    wss = f"wss://localhost:{demo.port}/ws"
    status, out, err = line_client(wss, "over h2\n", "--http2", cert=cert)
    assert (status, out.splitlines()) == (0, ["over h2"]), err
    status, out, err = line_client(wss, "over 1.1\n", cert=cert)
    assert (status, out.splitlines()) == (0, ["over 1.1"]), err
    log = demo.text()
    assert re.search(r"connect .* over HTTP/2 stream 1 name=guest-1", log), log
    assert re.search(r"connect .* path=/ws name=guest-2 ", log), log
    # Many WebSockets on one TLS connection, and the broadcast reaches every stream.
    context = ssl.create_default_context(cafile=str(cert))
    context.set_alpn_protocols(["h2"])
    sock = context.wrap_socket(
        socket.create_connection(("127.0.0.1", demo.port), timeout=TIMEOUT),
        server_hostname="localhost",
    )
    with Client(sock, f"localhost:{demo.port}", scheme="https") as client:
        streams = [client.open("/ws?format=json") for _ in range(5)]
        for stream in streams:
            assert json.loads(stream.recv())["type"] == "welcome"
        streams[0].send("to every stream")
        for stream in streams:
            said = json.loads(stream.recv())
            assert (said["type"], said["text"]) == ("message", "to every stream")
        for stream in streams:
            stream.close()


def test_a_client_without_tls_at_a_tls_port_fails_in_one_line(
    tmp_path: Path, demos: list[Demo], certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    demo = Demo(tmp_path, "--http2", "--certfile", str(cert), "--keyfile", str(key))
    demos.append(demo)
    result = run_cli("client", f"ws://127.0.0.1:{demo.port}/ws", timeout=30)
    assert result.returncode == 1
    (line,) = one_line_error(result)
    assert line.startswith(f"cannot connect to ws://127.0.0.1:{demo.port}/ws")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("serve", "--certfile", "c.pem"), "--certfile needs --http2"),
        (("serve", "--http2", "--keyfile", "k.pem"), "--keyfile goes with --certfile"),
    ],
)
def test_tls_usage_errors(args: tuple[str, ...], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    (line,) = one_line_error(result)
    assert message in line


def test_a_certificate_that_cannot_be_loaded_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    result = run_cli("serve", "--port", "0", "--http2", "--certfile", str(missing))
    assert result.returncode == 1
    (line,) = one_line_error(result)
    assert line.startswith(f"cannot load the certificate {missing}")


# -- a browser ------------------------------------------------------------------------------


def open_tab(tools: DevTools, url: str) -> str:
    """A tab on ``url`` once the page's WebSocket is open and greeted; its session id."""
    target = tools.call("Target.createTarget", url="about:blank")["targetId"]
    session = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Runtime", "Network"):
        tools.call(f"{domain}.enable", session)
    tools.call("Page.navigate", session, url=url)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if tools.evaluate(session, "typeof demo === 'object' && demo.ws !== null"):
                break
        except AssertionError:
            pass  # the document is being replaced
        time.sleep(0.05)
    else:
        raise AssertionError("the page did not load its script")
    tools.wait(session, "demo.json")
    return session


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="needs Chromium")
def test_chromium_over_tls_and_http2(
    tmp_path: Path,
    demos: list[Demo],
    certificate: tuple[Path, Path],
    devtools: DevTools,  # noqa: F811 - the fixture of test_demo_browser
) -> None:
    """The page loads over HTTPS with HTTP/2 (ALPN); the chat works; and the server's log
    says whether this Chromium opened its WebSocket as an HTTP/2 stream (RFC 8441)."""
    cert, key = certificate
    demo = Demo(tmp_path, "--http2", "--certfile", str(cert), "--keyfile", str(key))
    demos.append(demo)
    url = f"https://localhost:{demo.port}/"
    devtools.call("Security.setIgnoreCertificateErrors", ignore=True)  # ours is self-signed
    first = open_tab(devtools, url)
    second = open_tab(devtools, url)
    assert devtools.evaluate(first, "demo.opened").startswith("wss://")
    protocols = {
        params["response"].get("protocol")
        for owner, method, params in devtools.events
        if owner == first
        and method == "Network.responseReceived"
        and params["response"]["url"] == url
    }
    assert protocols == {"h2"}, protocols  # the page itself came over HTTP/2
    devtools.evaluate(first, "demo.ws.send('hello from an HTTP/2 page')")
    for session in (first, second):
        devtools.wait(
            session,
            "demo.messages.some((m) => m.includes('hello from an HTTP/2 page'))",
        )
    connects = re.findall(r"connect .* path=/ws( over HTTP/2 stream \d+)? name=", demo.text())
    # Chromium opens a WebSocket as a stream of the page's HTTP/2 connection when the server
    # sent SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §3); this one must.
    assert len(connects) == 2 and all(connects), (
        "Chromium did not open its WebSockets as HTTP/2 streams:\n" + demo.text()
    )
    devtools.evaluate(first, "demo.ws.close(1000)")
    wait_for(demo.log, r"disconnect .* code=1000 by=client \(1 connected\)")
