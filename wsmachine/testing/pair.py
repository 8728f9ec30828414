"""A client and a server joined by an in-memory wire, for tests of code built on wsmachine.

Nothing here does I/O: the pair moves the bytes one connection queued into the other's
``receive_data`` and returns the events the receiving side reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from ..adapters.options import ClientOptions, ServerOptions, resolve
from ..connection import ClientConnection, ServerConnection
from ..events import Accepted, Event, Handshake
from ..handshake import HeaderInput

__all__ = ["ConnectionPair", "Exchanged"]


class Exchanged(NamedTuple):
    """The events each side reported during :meth:`ConnectionPair.exchange`, in order."""

    #: Events the server reported (what the client sent).
    server: list[Event]
    #: Events the client reported (what the server sent).
    client: list[Event]


def _pieces(data: bytes, chunks: int | Iterable[int] | None) -> list[bytes]:
    """Cut ``data`` into pieces: whole, of ``chunks`` bytes each, or of the sizes given in turn
    (what is left after the last size is one more piece)."""
    if chunks is None:
        return [data]
    if isinstance(chunks, int):
        if chunks < 1:
            raise ValueError(f"chunk size must be positive, not {chunks}")
        return [data[i : i + chunks] for i in range(0, len(data), chunks)]
    pieces = []
    pos = 0
    for size in chunks:
        if size < 1:
            raise ValueError(f"chunk sizes must be positive, not {size}")
        if pos >= len(data):
            break
        pieces.append(data[pos : pos + size])
        pos += size
    if pos < len(data):
        pieces.append(data[pos:])
    return pieces


class ConnectionPair:
    """A :class:`~wsmachine.ClientConnection` and a :class:`~wsmachine.ServerConnection`
    joined by a fake wire.

    Bytes move only when asked: :meth:`client_to_server` and :meth:`server_to_client` carry
    what one side queued to the other, :meth:`exchange` does so both ways until neither side
    has anything to send. Use :attr:`client` and :attr:`server` directly to send, close and
    inspect state::

        pair = ConnectionPair(client={"subprotocols": ["chat"]}, server=ServerOptions(...))
        request, accepted = pair.handshake()
        pair.client.send_text("hi")
        assert pair.client_to_server() == [Text(data="hi")]

    :param host: the client's ``Host`` header.
    :param path: the client's request target.
    :param client: the client's settings: a :class:`~wsmachine.adapters.options.ClientOptions`, or a
        mapping of its setting names (only the machine's settings matter here).
    :param server: the server's, likewise (:class:`~wsmachine.adapters.options.ServerOptions`).
    """

    __slots__ = ("client", "server")

    client: ClientConnection
    server: ServerConnection

    def __init__(
        self,
        *,
        host: str = "example.com",
        path: str = "/",
        client: ClientOptions | Mapping[str, Any] | None = None,
        server: ServerOptions | Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(client, ClientOptions):
            client = resolve(ClientOptions, None, client or {})
        if not isinstance(server, ServerOptions):
            server = resolve(ServerOptions, None, server or {})
        self.client = client.connection(host, path)
        self.server = server.connection()

    def __repr__(self) -> str:
        return f"<ConnectionPair client={self.client.state.name} server={self.server.state.name}>"

    def client_to_server(self, chunks: int | Iterable[int] | None = None) -> list[Event]:
        """Deliver the bytes the client queued to the server; return the server's events.

        :param chunks: feed the bytes whole (``None``), in pieces of this many bytes, or in
            pieces of these sizes in turn (the rest, if any, as one last piece).
        """
        return _deliver(self.client.data_to_send(), self.server, chunks)

    def server_to_client(self, chunks: int | Iterable[int] | None = None) -> list[Event]:
        """Deliver the bytes the server queued to the client; return the client's events.

        :param chunks: as for :meth:`client_to_server`.
        """
        return _deliver(self.server.data_to_send(), self.client, chunks)

    def exchange(self, *, max_rounds: int = 100) -> Exchanged:
        """Move bytes both ways, client first, until neither side has any to send.

        :param max_rounds: give up after this many round trips.
        :raises RuntimeError: the two sides still had bytes to send after ``max_rounds``.
        """
        server_events: list[Event] = []
        client_events: list[Event] = []
        for _ in range(max_rounds):
            to_server = self.client.data_to_send()
            server_events += _deliver(to_server, self.server, None)
            to_client = self.server.data_to_send()
            client_events += _deliver(to_client, self.client, None)
            if not to_server and not to_client:
                return Exchanged(server=server_events, client=client_events)
        raise RuntimeError(f"the connections were still sending after {max_rounds} rounds")

    def handshake(
        self, *, subprotocol: str | None = None, extra_headers: HeaderInput = ()
    ) -> tuple[Handshake, Accepted]:
        """Run the opening handshake: the server accepts the client's request.

        :param subprotocol: passed to :meth:`~wsmachine.ServerConnection.accept`.
        :param extra_headers: passed to :meth:`~wsmachine.ServerConnection.accept`.
        :returns: the server's :class:`~wsmachine.Handshake` event and the client's
            :class:`~wsmachine.Accepted` event.
        :raises AssertionError: either side reported something else.
        """
        events = self.client_to_server()
        request = events[0] if len(events) == 1 else None
        if not isinstance(request, Handshake):
            raise AssertionError(f"expected one Handshake event at the server, got {events!r}")
        early = self.server.accept(request, subprotocol=subprotocol, extra_headers=extra_headers)
        if early:  # pragma: no cover - a client sends no frame before the 101
            raise AssertionError(f"expected no frames before the 101, got {early!r}")
        events = self.server_to_client()
        accepted = events[0] if len(events) == 1 else None
        if not isinstance(accepted, Accepted):
            raise AssertionError(f"expected one Accepted event at the client, got {events!r}")
        return request, accepted


def _deliver(
    data: bytes, receiver: ClientConnection | ServerConnection, chunks: int | Iterable[int] | None
) -> list[Event]:
    events: list[Event] = []
    if data:
        for piece in _pieces(data, chunks):
            events += receiver.receive_data(piece)
    return events
