"""A WebSocket client on a plain blocking socket: send some messages, print the echoes, close.

Run ``python docs/examples/echo_client.py ws://127.0.0.1:8765/ [MESSAGE ...]`` against
``echo_server.py`` (or any echo server).
"""

import socket
import sys
from urllib.parse import urlsplit

from wsmachine import Accepted, ClientConnection, Close, Rejected, State, Text


def echo(url, messages):
    """Send ``messages`` to the echo server at ``url``; return the replies."""
    parts = urlsplit(url)
    conn = ClientConnection(parts.netloc, parts.path or "/")
    replies = []
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=10) as sock:
        sock.sendall(conn.data_to_send())  # the constructor queued the upgrade request
        while not conn.should_close():  # after a clean close: until the server closes TCP
            data = sock.recv(65536)
            for event in conn.receive_data(data) if data else conn.receive_eof():
                if isinstance(event, Accepted):
                    for message in messages:
                        conn.send_text(message)
                    if not messages:
                        conn.close()
                elif isinstance(event, Text):
                    replies.append(event.data)
                    if len(replies) == len(messages) and conn.state is State.OPEN:
                        conn.close(1000, "thanks")
                elif isinstance(event, Rejected):
                    raise SystemExit(f"refused with HTTP {event.status_code}: {event.body!r}")
                elif isinstance(event, Close) and event.error is not None:
                    raise SystemExit(f"connection failed: {event.error}")
            sock.sendall(conn.data_to_send())
    return replies


if __name__ == "__main__":
    for reply in echo(sys.argv[1], sys.argv[2:] or ["Hello", "WebSocket"]):
        print(reply)
