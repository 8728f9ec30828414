"""Answer the opening request: accept, refuse with a status and body, or serve plain HTTP.

``answer`` is the part you would put in a server; the rest drives it in memory.
Run ``python docs/examples/http_routes.py``.
"""

from wsmachine import (
    ClientConnection,
    Handshake,
    HTTPRequest,
    Rejected,
    ServerConnection,
    State,
)

ALLOWED_ORIGINS = {"https://app.example.com"}
TEXT = [("Content-Type", "text/plain; charset=utf-8")]


def answer(conn, event):
    """Answer the first event of a server connection: a Handshake or an HTTPRequest."""
    if isinstance(event, HTTPRequest):
        if event.method in ("GET", "HEAD") and event.path == "/health":
            conn.reject(event, status=200, headers=TEXT, body=b"ok\n")
        else:
            conn.reject(event, status=404, headers=TEXT, body=b"not found\n")
    elif event.path != "/chat":
        conn.reject(event, status=404, headers=TEXT, body=b"no WebSocket here\n")
    elif event.origin is not None and event.origin not in ALLOWED_ORIGINS:
        # Browsers always send Origin; a foreign page must not use the user's cookies (§10.2).
        conn.reject(event, status=403, headers=TEXT, body=b"origin not allowed\n")
    elif "chat.v1" not in event.subprotocols:
        conn.reject(event, status=400, headers=TEXT, body=b"speak chat.v1\n")
    else:
        return conn.accept(event, subprotocol="chat.v1")
    return []


def try_client(path, origin=None, subprotocols=("chat.v1",)):
    """Run a client's upgrade request through ``answer``; return what the client sees."""
    client = ClientConnection("example.com", path, origin=origin, subprotocols=subprotocols)
    server = ServerConnection()
    [event] = server.receive_data(client.data_to_send())
    assert isinstance(event, Handshake)
    answer(server, event)
    [outcome] = client.receive_data(server.data_to_send())
    return server, outcome


def try_http(request):
    """Run a plain HTTP request through ``answer``; return the raw response."""
    server = ServerConnection()
    [event] = server.receive_data(request)
    assert isinstance(event, HTTPRequest)
    answer(server, event)
    return server, server.data_to_send()


if __name__ == "__main__":
    server, outcome = try_client("/chat", origin="https://app.example.com")
    print("allowed origin  ->", type(outcome).__name__, outcome.subprotocol, server.state.name)

    server, outcome = try_client("/chat", origin="https://evil.example")
    assert isinstance(outcome, Rejected)
    print("foreign origin  ->", outcome.status_code, outcome.body, server.state.name)
    assert server.state is State.REJECTED and server.should_close()

    server, outcome = try_client("/chat", subprotocols=())
    print("no subprotocol  ->", outcome.status_code, outcome.body)

    server, response = try_http(b"GET /health HTTP/1.1\r\nHost: example.com\r\n\r\n")
    print("health check    ->", response.decode().replace("\r\n", " | "))
    assert server.should_close()  # one response per connection: close TCP after writing it
