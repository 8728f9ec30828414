"""What ``close_expected()``, ``should_close()`` and ``closed_first`` say in each closing
situation, per role.

Every row is produced by driving a real client and server through the situation in memory.
Run ``python docs/examples/closing_states.py``.
"""

from wsmachine import ClientConnection, ServerConnection


def open_pair():
    client, server = ClientConnection("example.com"), ServerConnection()
    [handshake] = server.receive_data(client.data_to_send())
    server.accept(handshake)
    client.receive_data(server.data_to_send())
    return {"client": client, "server": server}


def other(role):
    return "server" if role == "client" else "client"


def is_open(pair, role):
    """Nothing happens: the connection stays open."""


def we_sent_close(pair, role):
    pair[role].close()


def close_exchanged(pair, role):
    pair[role].close()
    pair[other(role)].receive_data(pair[role].data_to_send())
    pair[role].receive_data(pair[other(role)].data_to_send())


def peer_sent_close(pair, role):
    pair[other(role)].close()
    pair[role].receive_data(pair[other(role)].data_to_send())  # the echo is now owed


def echo_written(pair, role):
    peer_sent_close(pair, role)
    pair[role].data_to_send()  # hands over the echo


def exchanged_then_eof(pair, role):
    close_exchanged(pair, role)
    pair[role].receive_eof()


def peer_broke_protocol(pair, role):
    pair[role].receive_data(b"\x83\x00" if role == "client" else b"\x83\x80\0\0\0\0")  # opcode 3


def failing_close_written(pair, role):
    peer_broke_protocol(pair, role)
    pair[role].data_to_send()  # hands over the failing Close


def stream_ended(pair, role):
    pair[role].receive_eof()


def handshake_refused(pair, role):
    client, server = ClientConnection("example.com"), ServerConnection()
    [handshake] = server.receive_data(client.data_to_send())
    server.reject(handshake, status=403)
    client.receive_data(server.data_to_send())
    pair.update(client=client, server=server)


situations = [
    ("open", is_open),
    ("this side sent Close, no answer yet", we_sent_close),
    ("the peer sent Close, echo owed", peer_sent_close),
    ("  ... echo written (data_to_send)", echo_written),
    ("both Close frames exchanged", close_exchanged),
    ("  ... and then the peer closed TCP", exchanged_then_eof),
    ("the peer broke the protocol", peer_broke_protocol),
    ("  ... failing Close written", failing_close_written),
    ("TCP ended without a Close", stream_ended),
    ("the handshake was refused", handshake_refused),
]

print(f"{'situation':36} {'role':6} {'state':14} {'close_expected':14} {'should_close':12} first")
for name, drive in situations:
    for role in ("server", "client"):
        pair = open_pair()
        drive(pair, role)
        conn = pair[role]
        expected, should, first = conn.close_expected(), conn.should_close(), conn.closed_first
        print(f"{name:36} {role:6} {conn.state.name:14} {expected!s:14} {should!s:12} {first}")
