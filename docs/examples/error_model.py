"""The two kinds of error, shown: your mistakes raise, the peer's are reported as events.

Run ``python docs/examples/error_model.py``.
"""

from wsmachine import (
    ClientConnection,
    Close,
    LocalProtocolError,
    Rejected,
    ServerConnection,
)


def open_server(**options):
    """A server connection past its handshake."""
    client, server = ClientConnection("example.com"), ServerConnection(**options)
    [handshake] = server.receive_data(client.data_to_send())
    server.accept(handshake)
    server.data_to_send()  # the 101 response; a real server would write it
    return server


def client_frame(opcode, payload, fin=True):
    """A short client frame, masked with the all-zero key so the payload reads as is."""
    return bytes([0x80 * fin | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


print("== Local errors raise at once ==")
client = ClientConnection("example.com")
for call in (lambda: client.send_text("too early"), lambda: open_server().close(1006)):
    try:
        call()
    except LocalProtocolError as exc:
        print("LocalProtocolError:", exc)

print("\n== Peer errors: a failing Close is queued and reported ==")
cases = {
    "unmasked frame": ({}, b"\x81\x02hi"),
    "invalid UTF-8": ({}, client_frame(0x1, b"\xff\xfe")),
    "message too big": (
        {"max_message_size": 10},
        client_frame(0x2, b"x" * 6, fin=False) + client_frame(0x0, b"x" * 6),
    ),
}
for name, (options, data) in cases.items():
    server = open_server(**options)
    [event] = server.receive_data(data)
    assert isinstance(event, Close) and event.error is not None
    sent = server.data_to_send()  # the Close frame the machine queued: opcode 0x8, then code
    code_on_wire = int.from_bytes(sent[2:4], "big")
    print(f"{name}: Close.code={event.code:d}, code sent={code_on_wire}", end=", ")
    print(f"should_close={server.should_close()}")
    print(f"    {event.error}")

print("\n== Bad opening requests: an HTTP error is queued and reported ==")
head = "GET / HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
requests = {
    "no key": head + "Sec-WebSocket-Version: 13\r\n\r\n",
    "POST": head.replace("GET", "POST") + key + "Sec-WebSocket-Version: 13\r\n\r\n",
    "version 8": head + key + "Sec-WebSocket-Version: 8\r\n\r\n",
    "huge head": head + "X-Padding: " + "a" * 20_000,
}
for name, request in requests.items():
    server = ServerConnection()
    [event] = server.receive_data(request.encode())
    assert isinstance(event, Rejected) and event.error is not None
    status_line = server.data_to_send().split(b"\r\n", 1)[0].decode()
    print(f"{name}: {status_line!r}, state={server.state.name}")
    print(f"    {event.error}")
