"""The demo chat across processes and machines: a relay through Redis pub/sub
(``python -m wsmachine serve --redis redis://HOST:PORT/DB``).

Each server process delivers a message to its own clients at once, and publishes it once, as
the :class:`~wsmachine.demo.room.Said` its room made (both forms, the sender's id and name
in them), on the channel. Every process subscribes and delivers what the others published to
its own clients, exactly as they would render it; a process skips its own envelopes, so no
client gets a message twice.

The selector loop stays single-threaded and never waits for Redis. Two threads talk to it:

- the *listener* holds the subscription; it hands what arrives to the loop in batches through
  the loop's ``call_soon_threadsafe``;
- the *worker* publishes what the loop queued (pipelined, in order) and keeps presence: a key
  per process, ``wsmachine:CHANNEL:presence:NODE`` = its number of clients, with an expiry
  that heartbeats renew, so a dead process ages out; the others' sum is handed to the loop.

Delivery is at most once. While Redis is unreachable each thread retries with exponential
backoff and jitter; local delivery goes on; what could not be published is dropped and
counted, and a gap in a sender's sequence numbers counts what this process missed. The
outage is logged once when it starts and once when it ends.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .room import Said

__all__ = [
    "DEFAULT_CHANNEL",
    "Backoff",
    "Envelope",
    "Relay",
    "RelayError",
    "RelayStats",
    "check",
    "decode",
    "encode",
    "shown_url",
]

#: The channel used when none is named.
DEFAULT_CHANNEL = "wsmachine-chat"

# What a lost, refused or timed-out Redis connection raises (redis-py wraps most OSErrors).
_LINK_ERRORS: Final = (redis.ConnectionError, redis.TimeoutError, OSError)
_STOP: Final = object()
# A request, from the listener to the worker, to count the other processes' clients again.
_RECOUNT: Final = object()
# From the listener, subscribed again: Redis may have restarted empty, so announce this
# process's presence again, then recount.
_RESYNC: Final = object()
# Hand-overs to the loop are batched: fewer wake-ups when messages come fast.
_BATCH = 512


class RelayError(Exception):
    """Redis cannot be used: unreachable at start, or a URL it does not understand."""


def shown_url(url: str) -> str:
    """``url`` fit for a log line: without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + netloc).geturl()


def check(url: str) -> None:
    """Reach Redis at ``url`` once (blocking, a few seconds at most): for a clear error at
    start rather than a server that relays nothing.

    :raises RelayError: Redis cannot be reached, or ``url`` is not a Redis URL; the message
        says which, in one line.
    """
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=2.0)
    except ValueError as exc:
        raise RelayError(f"not a Redis URL: {shown_url(url)} ({exc})") from None
    try:
        client.ping()
    except redis.RedisError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise RelayError(
            f"cannot reach Redis at {shown_url(url)}: {reason} (is redis-server running?)"
        ) from None
    finally:
        client.close()


# -- the envelope on the channel -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message on the channel: a chat message (``said``) or a presence note."""

    #: The publishing process's tag.
    node: str
    #: Its chat messages are numbered from 1 (0 for a presence note).
    seq: int
    #: The chat message as the sender's room made it; ``None`` for a presence note.
    said: Said | None


def encode(envelope: Envelope) -> bytes:
    """The bytes published for ``envelope`` (JSON; a binary message in base64)."""
    fields: dict[str, Any] = {"node": envelope.node, "seq": envelope.seq}
    said = envelope.said
    if said is None:
        fields["presence"] = True
    elif isinstance(said.json, str) and isinstance(said.plain, str):
        fields["json"], fields["plain"] = said.json, said.plain
    else:
        assert isinstance(said.json, bytes)
        fields["binary"] = base64.b64encode(said.json).decode("ascii")
    return json.dumps(fields, separators=(",", ":")).encode("utf-8")


def decode(data: bytes | str) -> Envelope:
    """The envelope in ``data``.

    :raises ValueError: ``data`` is not an envelope (another program publishes on the
        channel, or a different version of this one).
    """
    try:
        fields = json.loads(data)
        node, seq = fields["node"], fields["seq"]
        if not isinstance(node, str) or not isinstance(seq, int):
            raise TypeError("node must be a string, seq an integer")
        if fields.get("presence"):
            return Envelope(node, seq, None)
        if "binary" in fields:
            payload = base64.b64decode(fields["binary"], validate=True)
            return Envelope(node, seq, Said(payload, payload))
        text, plain = fields["json"], fields["plain"]
        if not isinstance(text, str) or not isinstance(plain, str):
            raise TypeError("json and plain must be strings")
        return Envelope(node, seq, Said(text, plain))
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not a chat envelope: {exc} in {data[:60]!r}") from None


# -- retrying --------------------------------------------------------------------------------


class Backoff:
    """Delays between reconnection attempts: doubling from ``first`` up to ``cap``, each
    drawn between half and all of that ("equal jitter"), so that processes cut off together
    do not come back in step."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        if not 0 < first <= cap:
            raise ValueError(f"backoff needs 0 < first <= cap, not first={first} cap={cap}")
        self.first = first
        self.cap = cap
        self.attempts = 0
        self._random = random.SystemRandom()

    def reset(self) -> None:
        """The link works again: the next outage starts from ``first``."""
        self.attempts = 0

    def next(self) -> float:
        """The delay before the next attempt."""
        ceiling = min(self.cap, self.first * 2 ** min(self.attempts, 32))
        self.attempts += 1
        return self._random.uniform(ceiling / 2, ceiling)


@dataclass(slots=True)
class RelayStats:
    """What the relay did, for logs and tests (updated by its threads)."""

    #: Chat messages this process published.
    published: int = 0
    #: Chat messages from other processes handed to the loop.
    received: int = 0
    #: Chat messages of this process dropped: Redis was unreachable or the queue full.
    not_published: int = 0
    #: Chat messages of other processes that never arrived (gaps in their sequences).
    not_received: int = 0
    #: Outages: times the link to Redis was lost.
    outages: int = 0
    #: Envelopes on the channel that were not ours to read (logged once).
    foreign: int = 0


class _Outage:
    """Whether either thread's link to Redis is down; the first failure and the last
    recovery of an outage each make one log line."""

    def __init__(self, stats: RelayStats) -> None:
        self._lock = threading.Lock()
        self._down: set[str] = set()
        self._since = 0.0
        self._dropped_before = 0
        self._stats = stats

    def down(self, link: str, error: BaseException) -> str | None:
        with self._lock:
            started = not self._down
            self._down.add(link)
            if not started:
                return None
            self._since = time.monotonic()
            self._dropped_before = self._stats.not_published
            self._stats.outages += 1
        reason = " ".join(str(error).split()) or type(error).__name__
        return (
            f"redis: connection lost ({reason}); local delivery goes on, reconnecting "
            "with backoff; messages meanwhile are not relayed"
        )

    def up(self, link: str) -> str | None:
        with self._lock:
            if link not in self._down:
                return None
            self._down.discard(link)
            if self._down:
                return None
            took = time.monotonic() - self._since
            dropped = self._stats.not_published - self._dropped_before
        return (
            f"redis: reconnected after {took:.1f} s; {dropped} message(s) from here "
            "could not be published (at-most-once delivery)"
        )


# -- the relay -------------------------------------------------------------------------------


class Relay:
    """Relays one process's chat through a Redis channel; see the module's description.

    Callbacks run in the loop's thread, through ``call_soon``: ``deliver`` with a batch of
    messages from other processes, ``elsewhere`` with their number of clients when it
    changes, ``log`` with a line to log.

    :param url: ``redis://HOST:PORT/DB`` (or ``rediss://``, ``unix://``).
    :param node: this process's tag, unique among the processes on the channel.
    :param call_soon: the loop's thread-safe call.
    :param heartbeat: seconds between presence renewals; a process's presence expires after
        three.
    :param max_pending: messages queued for publishing at most; more are dropped (counted).
    """

    def __init__(
        self,
        url: str,
        *,
        channel: str = DEFAULT_CHANNEL,
        node: str,
        call_soon: Callable[[Callable[[], None]], None],
        deliver: Callable[[list[Said]], None],
        elsewhere: Callable[[int], None],
        log: Callable[[str], None],
        heartbeat: float = 2.0,
        max_pending: int = 10_000,
        backoff: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        self.url = url
        self.channel = channel
        self.node = node
        self.stats = RelayStats()
        self._call_soon = call_soon
        self._deliver = deliver
        self._elsewhere = elsewhere
        self._log = log
        self._heartbeat = heartbeat
        self._max_pending = max_pending
        self._backoff = backoff
        self._presence_prefix = f"wsmachine:{channel}:presence:"
        self._outage = _Outage(self.stats)
        self._stopping = threading.Event()
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._pending = 0  # chat messages in the queue; the loop adds, the worker takes
        self._pending_lock = threading.Lock()
        self._seq = 0
        self._threads: list[threading.Thread] = []
        try:
            # Retries are ours (with backoff, counted, logged), not the client's.
            # An idle subscription PINGs every 10 s, and TCP keepalive is on, so that a link
            # that died without a word is noticed too.
            self._client = redis.Redis.from_url(
                url,
                socket_connect_timeout=2.0,
                socket_timeout=5.0,
                socket_keepalive=True,
                health_check_interval=10,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            raise RelayError(f"not a Redis URL: {shown_url(url)} ({exc})") from None

    # -- the loop's side (its thread only) ---------------------------------------------

    def publish(self, said: Said) -> None:
        """Queue ``said`` for the channel; never blocks. Dropped (and counted) when more
        than ``max_pending`` wait."""
        self._seq += 1  # a drop here leaves a gap the others count too
        with self._pending_lock:
            if self._pending >= self._max_pending:
                self.stats.not_published += 1
                return
            self._pending += 1
        self._queue.put(Envelope(self.node, self._seq, said))

    def set_local(self, count: int) -> None:
        """This process now has ``count`` clients (the worker tells the others)."""
        self._queue.put(count)

    def start(self) -> None:
        """Start the listener and the worker threads."""
        for name, target in (("listener", self._listen), ("worker", self._work)):
            thread = threading.Thread(target=target, name=f"redis-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def where(self) -> str:
        """The Redis server (its URL without password) and the channel, for a log line."""
        return f"{shown_url(self.url)} channel {self.channel!r}"

    def summary(self) -> str:
        """One line: what was relayed, and what was lost."""
        stats = self.stats
        return (
            f"redis: {stats.published} message(s) published, {stats.received} received; "
            f"lost: {stats.not_published} not published, {stats.not_received} not received, "
            f"in {stats.outages} outage(s)"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop both threads; the worker first withdraws this process's presence."""
        self._stopping.set()
        self._queue.put(_STOP)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._client.close()

    # -- the listener thread -------------------------------------------------------------

    def _listen(self) -> None:
        backoff = Backoff(*self._backoff)
        last_seq: dict[str, int] = {}
        while not self._stopping.is_set():
            # redis before 8.2 leaves pubsub() untyped; 8.2 types it.
            pubsub = self._client.pubsub()  # type: ignore[no-untyped-call, unused-ignore]
            try:
                pubsub.subscribe(self.channel)
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is None:
                        continue
                    if message.get("type") == "subscribe":
                        # Its answer proves the link; a resync learns who came and went.
                        self._link_up("listener", backoff)
                        self._queue.put(_RESYNC)
                        continue
                    batch = [message]
                    while len(batch) < _BATCH and (more := pubsub.get_message(timeout=0.0)):
                        batch.append(more)
                    self._receive(batch, last_seq)
            except _LINK_ERRORS as exc:
                self._link_down("listener", exc)
                self._stopping.wait(backoff.next())
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()

    def _receive(self, batch: list[dict[str, Any]], last_seq: dict[str, int]) -> None:
        saids: list[Said] = []
        for message in batch:
            if message.get("type") != "message":
                continue
            try:
                envelope = decode(message["data"])
            except ValueError as exc:
                self.stats.foreign += 1
                if self.stats.foreign == 1:
                    self._report(f"redis: ignoring what is not ours on the channel: {exc}")
                continue
            if envelope.node == self.node:
                continue  # delivered here already, when it was sent
            if envelope.said is None:
                self._queue.put(_RECOUNT)
                continue
            before = last_seq.get(envelope.node)
            if before is not None and envelope.seq > before + 1:
                missed = envelope.seq - before - 1
                self.stats.not_received += missed
                self._report(
                    f"redis: {missed} message(s) of process {envelope.node} never arrived "
                    f"(at-most-once delivery; {self.stats.not_received} in all)"
                )
            last_seq[envelope.node] = max(envelope.seq, before or 0)
            if len(last_seq) > 4096:  # processes come and go: forget the oldest
                del last_seq[next(iter(last_seq))]
            saids.append(envelope.said)
        if saids:
            self.stats.received += len(saids)
            self._call_soon(lambda: self._deliver(saids))

    # -- the worker thread ---------------------------------------------------------------

    def _work(self) -> None:
        backoff = Backoff(*self._backoff)
        key = self._presence_prefix + self.node
        ttl_ms = int(self._heartbeat * 3000)
        local = 0
        told_local = -1
        # After a reconnect the others announce themselves again one by one: until all could
        # have (a presence lifetime), the count of the others may rise but not fall, so that
        # pages do not show a dip.
        grace_until = 0.0
        told_elsewhere = -1
        next_beat = time.monotonic()
        retry_at = 0.0
        up = True
        while True:
            wait = max(0.0, next_beat - time.monotonic())
            try:
                items = [self._queue.get(timeout=wait)]
            except queue.Empty:
                items = []
            while len(items) < _BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            envelopes = [item for item in items if isinstance(item, Envelope)]
            with self._pending_lock:
                self._pending -= len(envelopes)
            recount = _RECOUNT in items
            resync = _RESYNC in items
            for item in items:
                if isinstance(item, int):
                    local = item
            now = time.monotonic()
            beat = now >= next_beat
            if beat:
                next_beat = now + self._heartbeat
            if _STOP in items:
                self._withdraw(key)
                return
            # The listener subscribed again: Redis is back, no need to wait out the backoff.
            if not up and now < retry_at and not resync:
                self._dropped(len(envelopes))  # no waiting on a dead link
                continue
            try:
                pipe = self._client.pipeline(transaction=False)
                for envelope in envelopes:
                    pipe.publish(self.channel, encode(envelope))
                announce = local != told_local or not up or resync
                if beat or announce:
                    pipe.set(key, local, px=ttl_ms)
                if announce:
                    pipe.publish(self.channel, encode(Envelope(self.node, 0, None)))
                if len(pipe):
                    pipe.execute()
                self.stats.published += len(envelopes)
                told_local = local
                if not up or resync:
                    grace_until = time.monotonic() + ttl_ms / 1000
                if not up:
                    up = True
                    self._link_up("worker", backoff)
                if recount or resync or beat:
                    elsewhere = self._count_elsewhere(key)
                    if time.monotonic() < grace_until:
                        elsewhere = max(elsewhere, told_elsewhere)
                    if elsewhere != told_elsewhere:
                        told_elsewhere = elsewhere
                        self._call_soon(functools.partial(self._elsewhere, elsewhere))
            except _LINK_ERRORS as exc:
                self._dropped(len(envelopes))
                up = False
                retry_at = time.monotonic() + backoff.next()
                self._link_down("worker", exc)

    def _dropped(self, count: int) -> None:
        with self._pending_lock:  # the loop's thread counts its drops too
            self.stats.not_published += count

    def _count_elsewhere(self, own: str) -> int:
        keys = [k for k in self._client.scan_iter(match=self._presence_prefix + "*", count=500)]
        total = 0
        for name, value in zip(keys, self._client.mget(keys) if keys else [], strict=True):
            if value is not None and name != own.encode():
                with contextlib.suppress(ValueError):
                    total += max(0, int(value))
        return total

    def _withdraw(self, key: str) -> None:
        """Leave at once rather than ageing out (best effort: Redis may be down)."""
        with contextlib.suppress(*_LINK_ERRORS):
            pipe = self._client.pipeline(transaction=False)
            pipe.delete(key)
            pipe.publish(self.channel, encode(Envelope(self.node, 0, None)))
            pipe.execute()

    # -- both threads --------------------------------------------------------------------

    def _link_up(self, link: str, backoff: Backoff) -> None:
        backoff.reset()
        if (line := self._outage.up(link)) is not None:
            self._report(line)

    def _link_down(self, link: str, error: BaseException) -> None:
        if (line := self._outage.down(link, error)) is not None:
            self._report(line)

    def _report(self, line: str) -> None:
        self._call_soon(lambda: self._log(line))
