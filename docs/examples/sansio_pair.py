"""A whole WebSocket conversation between a client and a server, in memory.

No sockets, no threads, no event loop: the "wire" is a function that hands one side's
outgoing bytes to the other side. Run it with ``python docs/examples/sansio_pair.py``.
"""

from wsmachine import (
    Accepted,
    ClientConnection,
    Close,
    Handshake,
    ServerConnection,
    State,
    Text,
)


def wire(sender, receiver):
    """Move the bytes ``sender`` queued to ``receiver``; return the events they complete."""
    events = receiver.receive_data(sender.data_to_send())
    who = "client" if receiver.client else "server"
    for event in events:
        print(f"{who} got {type(event).__name__}", end="")
        if isinstance(event, Text):
            print(f": {event.data!r}", end="")
        elif isinstance(event, Close):
            print(f": code={event.code:d} reason={event.reason!r}", end="")
        print()
    return events


client = ClientConnection("example.com", "/chat", subprotocols=["chat.v1"])
server = ServerConnection(subprotocols=["chat.v1"])

# 1. The client's constructor queued the upgrade request; the server reports it.
[handshake] = wire(client, server)
assert isinstance(handshake, Handshake)
server.accept(handshake)  # queues "101 Switching Protocols"

# 2. The client checks the 101 and opens.
[accepted] = wire(server, client)
assert isinstance(accepted, Accepted) and accepted.subprotocol == "chat.v1"

# 3. Messages: calls queue bytes, receive_data turns bytes into events.
client.send_text("Hello, server")
for event in wire(client, server):
    if isinstance(event, Text):
        server.send_text(event.data.upper())
wire(server, client)

# 4. Closing: the client starts, the server's machine queues the echo by itself.
client.close(1000, "done")
wire(client, server)
wire(server, client)
assert client.state is server.state is State.CLOSED

# 5. Who closes TCP? The server, first (RFC 6455 §7.1.1); the client waits for EOF.
print("server should_close:", server.should_close())
print("client should_close:", client.should_close(), "(waits for the server's EOF)")
client.receive_eof()  # the server closed TCP
print("client should_close:", client.should_close())
