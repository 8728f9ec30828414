"""A WebSocket echo server on plain blocking sockets, one thread per connection.

Run ``python docs/examples/echo_server.py [PORT]`` (default 8765; 0 picks a free port) and
connect with ``python docs/examples/echo_client.py ws://127.0.0.1:PORT/``.
"""

import socket
import sys
import threading
import time
from contextlib import suppress

from wsmachine import Binary, Handshake, HTTPRequest, ServerConnection, Text


def handle(sock):
    """Serve one client until the machine says to close TCP."""
    conn = ServerConnection()
    with sock, suppress(OSError):  # a timeout or a reset just ends the connection
        while not conn.should_close():
            # Timeouts belong to the adapter: idle 60 s, but 5 s once closing (§7.1.1).
            sock.settimeout(5 if conn.close_expected() else 60)
            data = sock.recv(65536)
            events = conn.receive_data(data) if data else conn.receive_eof()
            for event in events:  # accept() may append events: frames sent with the request
                if isinstance(event, Handshake):
                    events += conn.accept(event)
                elif isinstance(event, HTTPRequest):
                    conn.reject(event, status=426, headers=[("Upgrade", "websocket")])
                elif not conn.can_send:
                    pass  # this side already sent its Close: no more data (§5.5.1)
                elif isinstance(event, Text):
                    conn.send_text(event.data)
                elif isinstance(event, Binary):
                    conn.send_binary(event.data)
                # Ping: the Pong is already queued. Close: the echo is owed, and goes out
                # with data_to_send() below, after the replies to the messages before it.
            sock.sendall(conn.data_to_send())
        # Linger, as the adapters do: closing a socket that still holds unread bytes resets
        # the connection, and the peer may lose our Close. End our stream, drain the peer's.
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(2)
        give_up = time.monotonic() + 2
        while sock.recv(65536) and time.monotonic() < give_up:
            pass


def main(port=8765):
    with socket.create_server(("127.0.0.1", port)) as listener:
        print(f"listening on ws://127.0.0.1:{listener.getsockname()[1]}/", flush=True)
        while True:
            sock, _ = listener.accept()
            threading.Thread(target=handle, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8765)
