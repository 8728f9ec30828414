"""The chat room's rules, without I/O: who is in it, how a newcomer is greeted, and what each
member receives for a message.

The demo server (``python -m wsmachine serve``, on the selector adapter) and the asyncio chat
server of the docs both keep a :class:`Room`, so the page behaves the same on either.

Two kinds of member share a room:

- The page asks for the JSON protocol (``?format=json`` on its URL). It is greeted, alone,
  with ``{"type": "welcome", "id": 3, "name": "guest-3", "online": 2}``; it sends
  ``{"type": "message", "name": "alice", "text": "hi"}``, and every JSON member receives
  ``{"type": "message", "id": 3, "from": "alice", "text": "hi"}`` (``id`` tells a tab its
  own messages).
- Any other client sends and receives plain text; its lines reach the page under the name
  the room gave it (``guest-N``).

Binary messages are passed on as they are, to both kinds.

A room may span processes (:mod:`wsmachine.demo.relay`): each process keeps its own
:class:`Room` with a ``node`` tag, so that ids and names stay unique across processes
(``"qmxa.3"``, ``guest-qmxa.3``), and learns how many members the others have
(:attr:`Room.elsewhere`). JSON members then also receive ``{"type": "presence", "online": 5}``
when that total changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["JSON_QUERY", "MAX_NAME", "Member", "Room", "Said", "clean_name", "wants_json"]

#: The query by which the page asks for the JSON protocol.
JSON_QUERY = "format=json"
#: Longest name a member may choose (longer ones are cut).
MAX_NAME = 32


def wants_json(path: str) -> bool:
    """Whether a client that asked for ``path`` (with its query) speaks the JSON protocol."""
    return JSON_QUERY in path.partition("?")[2].split("&")


def clean_name(value: object) -> str:
    """A name fit to show: printable, single spaces, at most :data:`MAX_NAME` characters
    (``""`` if nothing is left)."""
    if not isinstance(value, str):
        return ""
    return " ".join("".join(c for c in value if c.isprintable()).split())[:MAX_NAME]


@dataclass(eq=False, slots=True)
class Member:
    """One client in the room: its number, the name shown for it, and its protocol."""

    #: Unique in the room, from 1; in a room with a node tag, ``"tag.N"``.
    id: int | str
    #: Shown with its messages; a JSON member may change it with each message.
    name: str
    #: Whether it speaks the page's JSON protocol.
    json: bool


class Said(NamedTuple):
    """What the members receive for one message: JSON members one form, the others another."""

    #: For JSON members.
    json: str | bytes
    #: For plain-text members.
    plain: str | bytes

    def to(self, member: Member) -> str | bytes:
        """The form ``member`` receives."""
        return self.json if member.json else self.plain


class Room:
    """The members and the rules; the server sends what it returns.

    :param node: a tag for this process when the room spans several; it prefixes the ids
        (and so the generated names), which then stay unique across processes.
    """

    def __init__(self, node: str = "") -> None:
        #: Who is in the room.
        self.members: set[Member] = set()
        #: How many members the other processes of the room have (as last heard).
        self.elsewhere = 0
        self.node = node
        self._last_id = 0

    @property
    def online(self) -> int:
        """How many members in all: here and elsewhere."""
        return len(self.members) + self.elsewhere

    def join(self, *, json: bool) -> Member:
        """A new member, named ``guest-N`` (``guest-tag.N`` in a room with a node tag)."""
        self._last_id += 1
        number = f"{self.node}.{self._last_id}" if self.node else self._last_id
        member = Member(number, f"guest-{number}", json)
        self.members.add(member)
        return member

    def leave(self, member: Member) -> None:
        """``member`` left (no error if it was not in the room)."""
        self.members.discard(member)

    def welcome(self, member: Member) -> str | None:
        """The greeting for ``member`` alone (a new tab disturbs nobody); ``None`` for a
        plain-text member, which expects nothing."""
        if not member.json:
            return None
        greeting = {"type": "welcome", "id": member.id, "name": member.name}
        return json.dumps({**greeting, "online": self.online})

    def presence(self) -> str:
        """What JSON members receive when the number of members in all changes."""
        return json.dumps({"type": "presence", "online": self.online})

    def say(self, sender: Member, message: str | bytes) -> Said | None:
        """What the members receive for ``message`` from ``sender``; ``None`` for a JSON
        chat message without text (nothing to pass on)."""
        if isinstance(message, bytes):
            return Said(message, message)
        text = message
        if sender.json:
            try:
                parsed = json.loads(message)
            except ValueError:
                parsed = None
            # Anything but a chat message (a line typed in the browser's console) is its own
            # text.
            if isinstance(parsed, dict) and parsed.get("type") == "message":
                if not isinstance(parsed.get("text"), str):
                    return None
                text = parsed["text"]
                sender.name = clean_name(parsed.get("name")) or sender.name
        framed = {"type": "message", "id": sender.id, "from": sender.name, "text": text}
        return Said(json.dumps(framed), text)
