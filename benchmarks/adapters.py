"""One adapter per library: the timed loops, written the way an application would use each API.

Each adapter opens connections with a real handshake (outside the timed region) and runs the
hot loops (inside it). The loops return what they saw (:class:`Received`, :class:`Sent`,
:class:`Handshakes`) so the workload can check it afterwards: a broken library cannot look fast.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar

from .wire import handshake_request, handshake_response

__all__ = [
    "Adapter",
    "AdapterUnavailableError",
    "Handshakes",
    "Received",
    "Sent",
    "UnexpectedEventError",
    "load_adapters",
]

#: Incoming message size limit given to every library (the workloads stay far below it).
MAX_MESSAGE = 1 << 24

#: The upgrade request every server-side handshake reads.
REQUEST = handshake_request()


class AdapterUnavailableError(Exception):
    """The library cannot be imported; the runner reports it and measures the others."""


class UnexpectedEventError(Exception):
    """A library reported something the workload does not produce (a close, an error...)."""


@dataclass(frozen=True, slots=True)
class Received:
    """Complete messages a receive loop delivered."""

    count: int
    #: Sum of message lengths: characters for text, bytes for binary.
    total: int
    #: The last message, as the application got it.
    last: str | bytes | bytearray | None


@dataclass(frozen=True, slots=True)
class Sent:
    """What a send loop produced."""

    count: int
    #: Bytes handed to the transport.
    total: int
    #: The pieces of output after the last send (one bytes object for most libraries).
    last: Sequence[bytes]


@dataclass(frozen=True, slots=True)
class Handshakes:
    """What a server handshake loop produced."""

    count: int
    #: The bytes of the last response.
    last: bytes


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def _check_open(conn: Any, library: str) -> None:
    state = getattr(conn, "state", None)
    if getattr(state, "name", None) != "OPEN":
        raise UnexpectedEventError(f"{library}: not OPEN after the handshake: {state!r}")


class Adapter(ABC):
    """The operations every library provides to the workloads."""

    name: ClassVar[str]

    @abstractmethod
    def describe(self) -> str:
        """Version (and build details) for the report header."""

    @abstractmethod
    def server(self) -> Any:
        """A server connection brought to OPEN by a real handshake."""

    @abstractmethod
    def client(self) -> Any:
        """A client connection brought to OPEN by a real handshake."""

    @abstractmethod
    def receive(self, conn: Any, chunks: Sequence[bytes]) -> Received:
        """Feed ``chunks`` to ``conn``; collect complete messages (text decoded to str). Timed."""

    @abstractmethod
    def send_text(self, conn: Any, text: str, n: int) -> Sent:
        """Send ``text`` ``n`` times, taking the output after each send. Timed."""

    @abstractmethod
    def send_binary(self, conn: Any, data: bytes, n: int) -> Sent:
        """Send ``data`` ``n`` times, taking the output after each send. Timed."""

    @abstractmethod
    def handshakes(self, request: bytes, n: int) -> Handshakes:
        """``n`` times: new server connection, read ``request``, accept, take response. Timed."""


class WsmachineAdapter(Adapter):
    """wsmachine: ``receive_data`` returns events; ``data_to_send`` returns bytes."""

    name = "wsmachine"

    def __init__(self) -> None:
        try:
            import wsmachine
        except Exception as exc:
            raise AdapterUnavailableError(
                f"cannot import wsmachine ({type(exc).__name__}: {exc}); run from the repository "
                "root so the package is importable"
            ) from exc
        self._wsm: Any = wsmachine
        self._messages: Any = (wsmachine.Text, wsmachine.Binary)

    def describe(self) -> str:
        """Version of the package as imported, and whether its C extension is in use."""
        from wsmachine import frames

        compiled = frames.parse_frames is not getattr(frames, "_py_parse_frames", None)
        state = "active" if compiled else "NOT active (pure Python)"
        return (
            f"wsmachine {getattr(self._wsm, '__version__', _version('wsmachine'))} "
            f"(C speed-ups {state})"
        )

    def server(self) -> Any:
        """Read the upgrade request, accept it, drain the 101."""
        conn = self._wsm.ServerConnection(max_message_size=MAX_MESSAGE)
        events = conn.receive_data(REQUEST)
        if len(events) != 1 or not isinstance(events[0], self._wsm.Handshake):
            raise UnexpectedEventError(f"wsmachine: expected one Handshake, got {events!r}")
        extra = conn.accept(events[0])
        if extra:
            raise UnexpectedEventError(f"wsmachine: unexpected events after accept: {extra!r}")
        conn.data_to_send()
        _check_open(conn, self.name)
        return conn

    def client(self) -> Any:
        """Send the upgrade request, read a valid 101."""
        conn = self._wsm.ClientConnection(
            "server.example.com", "/chat", max_message_size=MAX_MESSAGE
        )
        events = conn.receive_data(handshake_response(conn.data_to_send()))
        if len(events) != 1 or not isinstance(events[0], self._wsm.Accepted):
            raise UnexpectedEventError(f"wsmachine: expected one Accepted, got {events!r}")
        _check_open(conn, self.name)
        return conn

    def receive(self, conn: Any, chunks: Sequence[bytes]) -> Received:
        """Complete messages come as Text/Binary events (non-streaming mode)."""
        messages = self._messages
        count = total = 0
        last = None
        for chunk in chunks:
            for event in conn.receive_data(chunk):
                if not isinstance(event, messages) or not event.final:
                    raise UnexpectedEventError(f"wsmachine: {event!r}")
                last = event.data
                count += 1
                total += len(last)
        return Received(count, total, last)

    def receive_into(self, conn: Any, chunks: Sequence[bytes]) -> Received:
        """The receive-into path: each read lands in the machine's own buffer
        (``get_buffer``, a copy standing in for ``sock.recv_into(view)``, ``buffer_updated``);
        a read larger than the view offered goes in over several calls, as a socket's would.
        """
        messages = self._messages
        count = total = 0
        last = None
        for chunk in chunks:
            data = memoryview(chunk)
            size = len(data)
            pos = 0
            while pos < size:
                view = conn.get_buffer()
                n = min(len(view), size - pos)
                view[:n] = data[pos : pos + n]
                pos += n
                for event in conn.buffer_updated(n):
                    if not isinstance(event, messages) or not event.final:
                        raise UnexpectedEventError(f"wsmachine: {event!r}")
                    last = event.data
                    count += 1
                    total += len(last)
        return Received(count, total, last)

    def send_text(self, conn: Any, text: str, n: int) -> Sent:
        """``send_text`` then ``data_to_send``."""
        total = 0
        out = b""
        for _ in range(n):
            conn.send_text(text)
            out = conn.data_to_send()
            total += len(out)
        return Sent(n, total, [out])

    def send_binary(self, conn: Any, data: bytes, n: int) -> Sent:
        """``send_binary`` then ``data_to_send``."""
        total = 0
        out = b""
        for _ in range(n):
            conn.send_binary(data)
            out = conn.data_to_send()
            total += len(out)
        return Sent(n, total, [out])

    def handshakes(self, request: bytes, n: int) -> Handshakes:
        """``ServerConnection`` → ``receive_data`` → ``accept`` → ``data_to_send``."""
        server_connection, handshake = self._wsm.ServerConnection, self._wsm.Handshake
        out = b""
        for _ in range(n):
            conn = server_connection()
            event = conn.receive_data(request)[0]
            if not isinstance(event, handshake):
                raise UnexpectedEventError(f"wsmachine: {event!r}")
            conn.accept(event)
            out = conn.data_to_send()
        return Handshakes(n, out)


class WebsocketsAdapter(Adapter):
    """websockets' sans-IO layer: ``receive_data`` + ``events_received`` yield Frames.

    It hands the application frames, not messages: the loop joins fragments and decodes text,
    as websockets' own I/O layers (the Assembler) do, so every library delivers the same thing.
    """

    name = "websockets"

    def __init__(self) -> None:
        try:
            import websockets
            import websockets.client
            import websockets.frames
            import websockets.server
            import websockets.uri
            import websockets.utils
        except Exception as exc:
            raise AdapterUnavailableError(f"cannot import websockets: {exc}") from exc
        self._ws: Any = websockets
        # websockets.frames imports apply_mask from the C extension when it loads, else
        # falls back to the pure-Python websockets.utils.apply_mask.
        masker = vars(websockets.frames)["apply_mask"]
        self.speedups: bool = masker is not websockets.utils.apply_mask
        opcode = websockets.frames.Opcode
        self._text, self._binary, self._cont = opcode.TEXT, opcode.BINARY, opcode.CONT

    def describe(self) -> str:
        """Version and whether the C extension (websockets.speedups) does the masking."""
        state = "active" if self.speedups else "NOT active (pure Python masking)"
        return f"websockets {_version('websockets')} (C speedups {state})"

    def server(self) -> Any:
        """Read the upgrade request, accept it, send the 101."""
        conn = self._ws.server.ServerProtocol(max_size=MAX_MESSAGE)
        conn.receive_data(REQUEST)
        (request,) = conn.events_received()
        conn.send_response(conn.accept(request))
        conn.data_to_send()
        _check_open(conn, self.name)
        return conn

    def client(self) -> Any:
        """Send the upgrade request, read a valid 101."""
        uri = self._ws.uri.parse_uri("ws://server.example.com/chat")
        conn = self._ws.client.ClientProtocol(uri, max_size=MAX_MESSAGE)
        conn.send_request(conn.connect())
        conn.receive_data(handshake_response(b"".join(conn.data_to_send())))
        (response,) = conn.events_received()
        if response.status_code != 101:
            raise UnexpectedEventError(f"websockets: {response!r}")
        _check_open(conn, self.name)
        return conn

    def receive(self, conn: Any, chunks: Sequence[bytes]) -> Received:
        """Frames → messages: join continuation frames, decode text."""
        text, binary, cont = self._text, self._binary, self._cont
        count = total = 0
        last: str | bytes | None = None
        parts: list[bytes] = []
        kind = None
        for chunk in chunks:
            conn.receive_data(chunk)
            for frame in conn.events_received():
                opcode = frame.opcode
                if opcode is cont:
                    parts.append(frame.data)
                    if not frame.fin:
                        continue
                    payload = b"".join(parts)
                    parts = []
                    opcode = kind
                elif not frame.fin:
                    parts = [frame.data]
                    kind = opcode
                    continue
                else:
                    payload = frame.data
                if opcode is text:
                    last = str(payload, "utf-8")
                elif opcode is binary:
                    last = payload
                else:
                    raise UnexpectedEventError(f"websockets: {frame!r}")
                count += 1
                total += len(last)
        return Received(count, total, last)

    def send_text(self, conn: Any, text: str, n: int) -> Sent:
        """``send_text`` takes bytes: encoding the str is part of the work."""
        total = 0
        out: list[bytes] = []
        for _ in range(n):
            conn.send_text(text.encode())
            out = conn.data_to_send()
            for piece in out:
                total += len(piece)
        return Sent(n, total, out)

    def send_binary(self, conn: Any, data: bytes, n: int) -> Sent:
        """``send_binary`` then ``data_to_send`` (a list of bytes)."""
        total = 0
        out: list[bytes] = []
        for _ in range(n):
            conn.send_binary(data)
            out = conn.data_to_send()
            for piece in out:
                total += len(piece)
        return Sent(n, total, out)

    def handshakes(self, request: bytes, n: int) -> Handshakes:
        """``ServerProtocol`` → ``receive_data`` → ``accept`` → ``send_response``."""
        server_protocol = self._ws.server.ServerProtocol
        out: list[bytes] = []
        for _ in range(n):
            conn = server_protocol()
            conn.receive_data(request)
            conn.send_response(conn.accept(conn.events_received()[0]))
            out = conn.data_to_send()
        return Handshakes(n, b"".join(out))


class WsprotoAdapter(Adapter):
    """wsproto's ``WSConnection``: ``receive_data`` + ``events()``; ``send`` returns bytes.

    It delivers message pieces as they arrive (``message_finished``); the loop joins them.
    """

    name = "wsproto"

    def __init__(self) -> None:
        try:
            import wsproto
            import wsproto.events
        except Exception as exc:
            raise AdapterUnavailableError(f"cannot import wsproto: {exc}") from exc
        self._wsp: Any = wsproto
        self._ev: Any = wsproto.events

    def describe(self) -> str:
        """Version (pure Python)."""
        return f"wsproto {_version('wsproto')}"

    def server(self) -> Any:
        """Read the upgrade request, accept it."""
        conn = self._wsp.WSConnection(self._wsp.ConnectionType.SERVER)
        conn.receive_data(REQUEST)
        (request,) = conn.events()
        if not isinstance(request, self._ev.Request):
            raise UnexpectedEventError(f"wsproto: {request!r}")
        conn.send(self._ev.AcceptConnection())
        _check_open(conn, self.name)
        return conn

    def client(self) -> Any:
        """Send the upgrade request, read a valid 101."""
        conn = self._wsp.WSConnection(self._wsp.ConnectionType.CLIENT)
        request = conn.send(self._ev.Request(host="server.example.com", target="/chat"))
        conn.receive_data(handshake_response(request))
        (accepted,) = conn.events()
        if not isinstance(accepted, self._ev.AcceptConnection):
            raise UnexpectedEventError(f"wsproto: {accepted!r}")
        _check_open(conn, self.name)
        return conn

    def receive(self, conn: Any, chunks: Sequence[bytes]) -> Received:
        """Message pieces → messages: join until ``message_finished``."""
        message, text_message = self._ev.Message, self._ev.TextMessage
        count = total = 0
        last = None
        parts: list[Any] = []
        for chunk in chunks:
            conn.receive_data(chunk)
            for event in conn.events():
                if not isinstance(event, message):
                    raise UnexpectedEventError(f"wsproto: {event!r}")
                if event.message_finished and not parts:
                    last = event.data
                else:
                    parts.append(event.data)
                    if not event.message_finished:
                        continue
                    last = "".join(parts) if isinstance(event, text_message) else b"".join(parts)
                    parts = []
                count += 1
                total += len(last)
        return Received(count, total, last)

    def send_text(self, conn: Any, text: str, n: int) -> Sent:
        """``send(Message(data=str))``."""
        message = self._ev.Message
        total = 0
        out = b""
        for _ in range(n):
            out = conn.send(message(data=text))
            total += len(out)
        return Sent(n, total, [out])

    def send_binary(self, conn: Any, data: bytes, n: int) -> Sent:
        """``send(Message(data=bytes))``."""
        message = self._ev.Message
        total = 0
        out = b""
        for _ in range(n):
            out = conn.send(message(data=data))
            total += len(out)
        return Sent(n, total, [out])

    def handshakes(self, request: bytes, n: int) -> Handshakes:
        """``WSConnection`` → ``receive_data`` → ``events`` → ``send(AcceptConnection())``."""
        ws_connection, server = self._wsp.WSConnection, self._wsp.ConnectionType.SERVER
        request_event, accept = self._ev.Request, self._ev.AcceptConnection
        out = b""
        for _ in range(n):
            conn = ws_connection(server)
            conn.receive_data(request)
            event = next(conn.events())
            if not isinstance(event, request_event):
                raise UnexpectedEventError(f"wsproto: {event!r}")
            out = conn.send(accept())
        return Handshakes(n, bytes(out))


#: In table order: the library under test first.
ADAPTERS: tuple[type[Adapter], ...] = (WsmachineAdapter, WebsocketsAdapter, WsprotoAdapter)


def load_adapters() -> tuple[list[Adapter], dict[str, str]]:
    """Instantiate every adapter that imports; map the others' names to the reason."""
    loaded: list[Adapter] = []
    missing: dict[str, str] = {}
    for cls in ADAPTERS:
        try:
            loaded.append(cls())
        except AdapterUnavailableError as exc:
            missing[cls.name] = str(exc)
    return loaded, missing
