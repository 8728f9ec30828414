"""An echo server on asyncio's callback API: wsmachine driven by an event loop it does not know.

Everything here is transport work: read, write, close, pause, time out. Every protocol
decision comes from the connection object.
Run ``python docs/examples/asyncio_server.py [PORT]`` (default 8765; 0 picks a free port).
"""

import asyncio
import sys

from wsmachine import Binary, Handshake, HTTPRequest, ServerConnection, Text

HANDSHAKE_TIMEOUT = 10.0  # seconds for the client to finish its upgrade request
CLOSE_TIMEOUT = 5.0  # seconds for the peer to finish the closing handshake
LINGER_TIMEOUT = 2.0  # seconds to drain the peer's bytes after our end of the stream


class WebSocketProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.conn = ServerConnection()
        self.timer = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT, transport.abort)
        self.closing = False
        self.lingering = False
        self.peer_ended = False

    # -- input: bytes and EOF go in, events come out ---------------------------------------
    def data_received(self, data):
        if not self.lingering:  # lingering: the connection is over, drop what still comes
            self.handle(self.conn.receive_data(data))

    def eof_received(self):
        self.peer_ended = True
        if not self.lingering:
            self.handle(self.conn.receive_eof())
        # Returning None: asyncio closes the transport.

    def connection_lost(self, exc):
        self.timer.cancel()

    def handle(self, events):
        for event in events:
            if isinstance(event, Handshake):
                self.timer.cancel()
                events += self.conn.accept(event)
            elif isinstance(event, HTTPRequest):
                self.conn.reject(event, status=200, body=b"This is a WebSocket echo server.\n")
            elif not self.conn.can_send:
                pass  # this side already sent its Close: no more data (§5.5.1)
            elif isinstance(event, Text):
                self.conn.send_text(event.data)
            elif isinstance(event, Binary):
                self.conn.send_binary(event.data)
        self.flush()

    # -- output: after every input and every call, write and maybe close --------------------
    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.transport.write(data)
        if self.conn.should_close():
            self.linger()
        elif self.conn.close_expected() and not self.closing:
            self.closing = True  # the peer has CLOSE_TIMEOUT to answer our Close
            self.timer.cancel()
            self.timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.transport.abort)

    def linger(self):
        """End our stream, then drain the peer's until its EOF or LINGER_TIMEOUT.

        Closing a socket that still holds unread bytes (the rest of a message too big, a
        frame after the Close) resets the connection, and the peer may lose our Close with it.
        """
        if self.peer_ended or not self.transport.can_write_eof():
            self.transport.close()  # asyncio writes what is buffered, then closes
        elif not self.lingering:
            self.lingering = True
            self.transport.write_eof()  # after the buffered bytes, like close()
            self.transport.resume_reading()  # drain even if backpressure paused reading
            self.timer.cancel()
            self.timer = asyncio.get_running_loop().call_later(LINGER_TIMEOUT, self.transport.close)

    # -- backpressure: stop reading while the peer does not read ----------------------------
    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()


async def main(port=8765):
    server = await asyncio.get_running_loop().create_server(WebSocketProtocol, "127.0.0.1", port)
    print(f"listening on ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8765))
