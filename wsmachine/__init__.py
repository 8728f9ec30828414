"""wsmachine: a sans-IO WebSocket (RFC 6455) protocol state machine, both roles, on h11.

The names in ``__all__`` are the public API.
"""

from .close_codes import CloseCode, CloseInfo
from .connection import ClientConnection, Connection, ServerConnection
from .errors import InvalidArgumentError, LocalProtocolError, ProtocolError, RemoteProtocolError
from .events import (
    Accepted,
    Binary,
    Close,
    Event,
    Handshake,
    Headers,
    HTTPRequest,
    Ping,
    Pong,
    Rejected,
    Text,
)
from .headers import ExtensionOffer
from .origin import OriginPolicy
from .state import State

__all__ = [
    "Accepted",
    "Binary",
    "ClientConnection",
    "Close",
    "CloseCode",
    "CloseInfo",
    "Connection",
    "Event",
    "ExtensionOffer",
    "HTTPRequest",
    "Handshake",
    "Headers",
    "InvalidArgumentError",
    "LocalProtocolError",
    "OriginPolicy",
    "Ping",
    "Pong",
    "ProtocolError",
    "Rejected",
    "RemoteProtocolError",
    "ServerConnection",
    "State",
    "Text",
]

__version__ = "0.1.0"
