"""The backplane: one truth across the processes of a namespace.

Local tiers (memory, session) keep copies of what a shared tier (Redis) holds.
When any process changes a key through the chain, it publishes the change on
the backplane; every other process removes its local copies as the message
arrives (milliseconds).  The transport is a tier's (``tierkit_backplane``
hook, e.g. Redis pub/sub); this module holds what makes it correct:

* **own echoes** — each message names the process that sent it; a process
  ignores its own (its local tiers already hold the new value).
* **the backfill race** — a read that fetched an old value from the shared tier
  *before* an invalidation arrived must not copy it into a local tier *after*:
  reads take a :meth:`Backplane.stamp` before asking the shared tier, and the
  backfill happens only if nothing touching the key arrived since, checked and
  written under the lock the message handler applies invalidations under.
* **disconnects** — a process cannot know what it missed while unsubscribed:
  the moment the subscription drops it empties its local tiers and stops
  filling them (reads go to the shared tier), and once subscribed again it
  empties them once more and resumes.

A transport may ride on its tier's writes (:attr:`Transport.outbox`): the
backplane then hands the tier each message before the write that it announces,
the tier sends both in one round trip, and the message is on the server, in
write order, before the write returns.  A write that did not carry its message
(the tier failed, or wrote some other way) is announced by the sender thread.

**Carried values** — a message the tier sends atomically with its write (a
script: ``SET`` then ``PUBLISH``) may carry the stored value; a process that
holds the key in a local tier then *replaces* its copy instead of dropping it.
Only an atomic write may: messages are then in the server's write order, so the
last one applied is the value the shared tier holds.  A value sent apart from
its write (a pipeline, the sender thread) could land after a newer write's
message and stay: those messages only drop.  A process's own messages carry the
backplane's :attr:`InvalidationLog.seq` taken before its local write (the
*stamp*): when a carried value replaced a local copy in between, the echo is
applied too, so an older value put in its local tier is put right in server order.

"Local tiers" are the process's own copies: tiers that are not remote and are
written ``always`` (memory, session).  A persistent tier (the file tier) is
left alone: its store is shared by the host's processes, so another process's
message would delete what this host has just written, and it is the fallback
for the time the shared tier is down.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import os
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import orjson

from tierkit._config import redact
from tierkit._events import Event, emit
from tierkit._types import Entry

if TYPE_CHECKING:
    from tierkit._breaker import Breaker
    from tierkit._chain import TierSlot
    from tierkit._codec import Codec

log = logging.getLogger("tierkit")

T = TypeVar("T")

MAX_TRACKED_KEYS = 100_000
"""Keys whose last invalidation is remembered for the backfill check; beyond, every older read is refused."""
START_WAIT = 2.0
"""Seconds a new cache waits for the first answer of its subscription (subscribed or failed)."""
GATHER = 0.002
"""Seconds the sender thread gathers queued changes before it publishes them coalesced: a tight loop
of sets measured 2.0x a bare SET with 0.5 ms, 1.3x with 2 ms (python -m benchmarks --only redis_set)."""
MESSAGE_NAMES = 1000
"""Most keys (or tags) one message names."""
FLUSH_WAIT = 1.0
"""Seconds closing a cache (or the interpreter's exit) waits for queued messages to go out."""
LOG_LENGTH = 10_000
"""Invalidations kept for tiers that catch up lazily (the session tier); older ones collapse into a clear."""
CATCH_UP_EVERY = 0.001
"""Seconds between a reading process's catch-ups on its own thread (:class:`CatchUp`): how long a busy
process may serve a local copy after the message that changes it has arrived."""

State = Literal["connecting", "subscribed", "disconnected", "closed"]


class Listener(Protocol):
    """What a transport tells the backplane, from its own thread."""

    def on_subscribed(self) -> None: ...
    def on_message(self, data: bytes) -> None: ...
    def on_disconnected(self, reason: str) -> None: ...


class Transport(Protocol):
    """What a tier's ``tierkit_backplane`` hook returns: a channel shared by the namespace's processes.

    ``subscribe`` starts delivering in a thread of its own and must call
    ``on_subscribed`` each time the subscription is (re)established,
    ``on_disconnected`` as soon as it is lost, and ``on_message`` for each
    message in between, in order.  ``publish`` may raise (the chain counts it).

    Optional: ``details()``, a dict of the transport's own figures, shown in the backplane's
    health and stats (e.g. whether writes by other programs are watched).

    Optional: ``outbox``, a :class:`contextvars.ContextVar` (default ``None``) for a
    transport whose tier can send a message in the same round trip as a write.  The
    backplane sets it to the message just before it calls that tier's write hook; the
    tier, having written *and* sent the message, sets it back to ``None`` — anything
    else (no such transport, the hook failed, the tier wrote without it) leaves the
    message to :meth:`Transport.publish` from the sender thread.  When :func:`carries`
    says so and the tier's write and ``PUBLISH`` are one atomic step, the tier may
    append the stored value (as it stores it) to the message it sends.

    Optional: ``unpack_value(raw, now)``, the :class:`~tierkit.Entry` in stored bytes a
    message carries (``None`` if expired or not readable): with it, receivers replace
    their local copies with carried values; without it, every message drops.

    Optional: ``drain()``, for a transport that can deliver on the calling thread: it calls
    the listener, on that thread, for what has arrived, and returns without waiting for more
    (raising nothing).  Readers then catch up themselves (:class:`CatchUp`), and the
    transport's thread may leave the messages to them while they do (it must still deliver
    what no reader drains soon, e.g. while the process is idle).
    """

    channel: str

    def publish(self, message: bytes) -> None: ...
    def subscribe(self, listener: Listener) -> None: ...
    def close(self) -> None: ...


class CatchUp:
    """When a process's reads next bring its local copies up to date, on their own thread.

    A subscriber thread that applies each burst of messages as it arrives must take the
    GIL from a thread that is busy serving hits: both pay a context switch, and in a
    CPU-bound process that cost more than the messages themselves (docs/coherence.md).
    With a transport that can ``drain`` on the calling thread, hit paths serve a local
    copy only while the clock is before :attr:`until`, and past it call :meth:`catch_up`
    first: the messages of the last millisecond are applied by the reader, in one go.
    """

    __slots__ = ("_clock", "_drain", "until")

    def __init__(self, clock: Callable[[], float], drain: Callable[[], None]) -> None:
        self.until = float("-inf")
        """The clock time up to which local copies may be served without a catch-up."""
        self._clock = clock
        self._drain = drain

    def catch_up(self) -> None:
        """Apply what has arrived (the transport's ``drain``); fresh for :data:`CATCH_UP_EVERY` more."""
        self.until = self._clock() + CATCH_UP_EVERY  # first: the process's other readers need not wait
        self._drain()


Op = tuple[Literal["keys", "tags", "prefix", "clear"], tuple[str, ...]]
"""One invalidation: what it names (keys, tags, a prefix, or everything)."""


def encode(origin: str, op: Op) -> bytes:
    """The wire form of an invalidation: ``{"o": origin, "keys"|"tags"|"prefix"|"clear": [...]}``."""
    return orjson.dumps({"o": origin, op[0]: list(op[1])})


TAIL = b"\x00"
"""Separates a message's JSON head from its binary tail (JSON text never holds a NUL byte): the writer's
stamp (8 bytes, little endian), then the stored value when the message carries one."""
STAMP_SIZE = 8


def with_tail(message: bytes, stamp: int) -> bytes:
    """``message`` with the writer's ``stamp``: a tier may append the stored value to it (:func:`carries`)."""
    return message + TAIL + stamp.to_bytes(STAMP_SIZE, "little")


def carries(message: bytes) -> bool:
    """Whether a tier may append the stored value to ``message`` (the backplane allowed it)."""
    return len(message) > STAMP_SIZE and message[-STAMP_SIZE - 1] == 0


def split(data: bytes) -> tuple[bytes, bytes | None]:
    """A message's JSON head and the stored value it carries (``None``: none)."""
    at = data.find(TAIL)
    if at < 0:
        return data, None
    return data[:at], data[at + 1 + STAMP_SIZE :] or None


def decode(data: bytes) -> tuple[str, Op] | None:
    """An invalidation from the wire, or ``None`` if it is not one (the channel is untrusted input)."""
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if type(message) is not dict or len(message) != 2 or type(message.get("o")) is not str:
        return None
    for what in ("keys", "tags", "prefix", "clear"):
        names = message.get(what)
        if type(names) is list and all(type(n) is str and n for n in names):
            if (what == "prefix" and len(names) != 1) or (what != "clear" and not names):
                return None
            return message["o"], (what, tuple(names))
    return None


_UNDECODED, _UNREADABLE = object(), object()
"""A carried value not decoded yet; one that could not be (:meth:`Backplane._replace`)."""

Mark = tuple[str, int]
"""Where a place stands in an :class:`InvalidationLog`: (the log's id, the last number applied)."""


class InvalidationLog:
    """The recent invalidations, numbered, for tiers whose copies live in many places (sessions).

    Such a tier (one with a ``follow_invalidations(log)`` method) keeps, per place,
    the :attr:`mark` it is synced to and calls :meth:`catch_up` before serving from
    a place whose mark ``is not`` the log's.  A place too far behind — or synced to
    another log (a session pickled in another process) — gets a clear.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: deque[tuple[int, Op]] = deque(maxlen=LOG_LENGTH)
        self.seq = 0
        self.mark: Mark = (os.urandom(8).hex(), 0)

    def append(self, op: Op) -> None:
        with self._lock:
            self.seq += 1
            self._ops.append((self.seq, op))
            self.mark = (self.mark[0], self.seq)

    def renew(self) -> None:
        """A new identity and lock (a forked child's log diverges from its parent's)."""
        self._lock = threading.Lock()
        self.mark = (os.urandom(8).hex(), self.seq)

    def catch_up(
        self,
        mark: Mark | None,
        delete: Callable[[str], Any],
        invalidate_tags: Callable[[list[str]], Any],
        invalidate_prefix: Callable[[str], Any],
        clear: Callable[[], Any],
    ) -> Mark:
        """Apply what happened after ``mark`` through the place's hooks; the mark to keep.

        ``mark=None``: a new, empty place (nothing to apply).
        """
        with self._lock:
            now = self.mark
            ops = self._ops
            if mark is None or mark == now:
                return now
            if mark[0] != now[0] or not ops or ops[0][0] > mark[1] + 1:
                missed: list[Op] = [("clear", ())]
            else:
                missed = [op for number, op in ops if number > mark[1]]
        for op in missed:
            apply_op(op, delete, invalidate_tags, invalidate_prefix, clear)
        return now


def apply_op(
    op: Op,
    delete: Callable[[str], Any],
    tags: Callable[[list[str]], Any],
    prefix: Callable[[str], Any],
    clear: Callable[[], Any],
) -> None:
    """Apply one invalidation through a tier's hooks."""
    what, names = op
    if what == "keys":
        for key in names:
            delete(key)
    elif what == "tags":
        tags(list(names))
    elif what == "prefix":
        prefix(names[0])
    else:
        clear()


_live: weakref.WeakSet[Backplane] = weakref.WeakSet()


def coalesce(ops: Sequence[Op]) -> list[Op]:
    """Fewer messages that remove the same: every op only removes local copies, so their order
    does not matter and a clear covers all the rest."""
    if any(kind == "clear" for kind, _ in ops):
        return [("clear", ())]
    merged: dict[str, dict[str, None]] = {"keys": {}, "tags": {}}
    out: list[Op] = []
    for kind, names in ops:
        if kind == "prefix":
            out.append((kind, names))
        else:
            merged[kind].update(dict.fromkeys(names))
    for kind in ("keys", "tags"):
        every = list(merged[kind])
        out += [(kind, tuple(every[i : i + MESSAGE_NAMES])) for i in range(0, len(every), MESSAGE_NAMES)]
    return out


class _Sender:
    """Sends the writer's messages from a thread of its own.

    A write then pays a queue put, not a second round trip (the ``PUBLISH``).  The
    thread gathers what is queued for :data:`GATHER` seconds and sends it coalesced:
    a burst of writes costs a few messages, and the others learn of each change well
    inside the propagation window.
    """

    def __init__(self, send: Callable[[Op], None]) -> None:
        self._send = send
        self._queue: queue.SimpleQueue[Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    def put(self, op: Op) -> None:
        if self._thread is None:
            with self._starting:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="tierkit-backplane-send", daemon=True
                    )
                    self._thread.start()
        self._queue.put(op)

    def _run(self) -> None:
        running = True
        while running:
            first = self._queue.get()
            if first is None:
                return
            time.sleep(GATHER)
            batch = [first]
            while not self._queue.empty() and len(batch) < MESSAGE_NAMES:
                op = self._queue.get_nowait()
                if op is None:
                    running = False
                    break
                batch.append(op)
            for op in coalesce(batch):
                self._send(op)

    def flush(self, timeout: float) -> None:
        """Send what is queued (waiting up to ``timeout`` seconds), then stop the thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)


class Backplane:
    """This process's end of the namespace's backplane: publishes changes, applies the others'.

    ``local`` are the chain's local tiers (their copies are what goes stale);
    ``connect`` makes a transport (called again in a forked child, whose parent's
    subscriber thread did not follow it).
    """

    def __init__(
        self,
        connect: Callable[[], Transport],
        local: Sequence[TierSlot],
        namespace: str,
        transport: Transport,
        codec: Codec | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lock = threading.Lock()
        """Held while an invalidation is applied, and by a backfill between its check and its write."""
        self.local = tuple(local)
        self.namespace = namespace
        self.log = InvalidationLog()
        self.suspended = True
        self.state: State = "connecting"
        self.received = self.published = self.publish_errors = self.malformed = 0
        self.disconnects = self.subscriptions = 0
        self.replaced = self.bad_values = 0
        """Local copies replaced by carried values; carried values that could not be read (dropped)."""
        self.codec = codec
        self.clock = clock
        self._replaced_at = 0  # log.seq of the last copy replaced by a carried value
        self._since: contextvars.ContextVar[int | None] = contextvars.ContextVar("since", default=None)
        self._connect = connect
        self._origin = ""
        self._mark = b""
        self._pid = 0
        self._coarse = 0  # log.seq of the last invalidation that names no single key (tags, prefix, clear)
        self._keys: dict[str, int] = {}
        self._failing = False
        self._drain_failed = False
        self._sender = _Sender(self._send)
        self.breaker: Breaker | None = None
        """The breaker of the tier whose transport this is (set by :func:`start`)."""
        self.rider: TierSlot | None = None
        """The tier whose writes carry their own messages (its transport has an outbox; set by start)."""
        self._outbox: contextvars.ContextVar[bytes | None] | None = getattr(transport, "outbox", None)
        self.fresh = None if getattr(transport, "drain", None) is None else CatchUp(clock, self._drain)
        """Readers' catch-ups, when the transport can deliver on their thread (``drain``)."""
        self._unpack: Callable[[bytes, float], Entry | None] | None = getattr(transport, "unpack_value", None)
        self._replacing = tuple(
            slot for slot in self.local if getattr(slot.tier, "follow_invalidations", None) is None
        )
        """Local tiers whose copies a carried value replaces (a session tier catches up through the log)."""
        for slot in self.local:
            follow = getattr(slot.tier, "follow_invalidations", None)
            if follow is not None:
                follow(self.log)
        self.transport = transport
        self._answered = threading.Event()
        _ = self.origin  # the mark on_message reads
        transport.subscribe(self)
        # A cache is usually used at once: wait for the subscription (or its failure) so that local
        # tiers serve from the first call; bounded, the transport's own timeouts come first.
        self._answered.wait(START_WAIT)
        _live.add(self)

    @property
    def origin(self) -> str:
        """This process's name on the channel (a forked child gets its own)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._origin = f"{self._pid}-{os.urandom(6).hex()}"
            self._mark = encode(self._origin, ("clear", ()))[: -len(b'"clear":[]}')]
        return self._origin

    @property
    def own_mark(self) -> bytes:
        """How this process's messages begin on the wire: its echoes are skipped before decoding
        (with every write carrying its message, each ``set`` comes back to its own process)."""
        _ = self.origin  # renewed after a fork
        return self._mark

    # -- the writer's side ----------------------------------------------------------------------

    def publish(self, op: Op) -> None:
        """Tell the other processes, from the sender thread (:class:`_Sender`).

        Not tried while the shared tier's circuit breaker is open: it would cost a timeout per write.
        """
        if self.breaker is not None and self.breaker.state == "open":
            self._failed(ConnectionError("the shared tier's circuit breaker is open"))
            return
        self._sender.put(op)

    def carried(self, op: Op, write: Callable[..., T], *args: Any, value: bool = True) -> tuple[T, bool]:
        """``write(*args)`` — a call of :attr:`rider`'s write hook — with the message announcing
        ``op`` in its outbox; its outcome and whether the tier sent the message with the write.

        The message carries the stamp of the local write before it (:meth:`wrote_local`) and,
        with ``value`` (the value was encoded with the codec receivers decode with), lets the
        tier append the stored value.  When the tier did not send it, the caller announces
        ``op`` with :meth:`publish`.
        """
        outbox = self._outbox
        assert outbox is not None
        since = self._since.get()
        self._since.set(None)
        message = encode(self._origin, op)  # renewed in a forked child (_restart_in_child)
        stamp = self.log.seq if since is None else since
        outbox.set(with_tail(message, stamp) if value else message)
        try:
            outcome = write(*args)
        finally:
            sent = outbox.get() is None
            outbox.set(None)
        if sent:
            self._failing = False
            self.published += 1
        return outcome, sent

    def wrote_local(self) -> None:
        """A write of this thread is putting its value in a local tier (call under :attr:`lock`): the
        message that announces it carries the stamp of this moment (the earliest, if several)."""
        if self._since.get() is None:
            self._since.set(self.log.seq)

    def _send(self, op: Op) -> None:
        try:
            self.transport.publish(encode(self._origin, op))
        except Exception as exc:
            self._failed(exc)
            return
        self._failing = False
        self.published += 1

    def _drain(self) -> None:
        try:
            getattr(self.transport, "drain")()  # noqa: B009 — an optional capability; renewed after a fork
        except Exception:  # a transport's bug never reaches a read: its own thread still delivers
            if not self._drain_failed:
                self._drain_failed = True
                log.warning(
                    "backplane of namespace %r: the transport's drain() raised; its own thread "
                    "delivers the messages instead",
                    self.namespace,
                    exc_info=True,
                )

    def _failed(self, exc: Exception) -> None:
        """Count a message the others will not get; logged once per streak of failures, not per write."""
        self.publish_errors += 1
        if not self._failing:
            self._failing = True
            log.warning(
                "backplane of namespace %r: publish failed (%s); other processes keep their "
                "local copies of what changed until their TTL",
                self.namespace,
                type(exc).__name__,
            )

    # -- the reader's side ----------------------------------------------------------------------

    def catch_up_if_due(self) -> None:
        """Apply what has arrived when this process's readers are due a catch-up (:class:`CatchUp`)."""
        fresh = self.fresh
        if fresh is not None and self.clock() >= fresh.until:
            fresh.catch_up()

    def stamp(self) -> int:
        """Taken before reading a shared tier (see :meth:`keep`), after catching up if it is due."""
        self.catch_up_if_due()
        return self.log.seq

    def keep(self, keys: Collection[str], stamp: int) -> Collection[str]:
        """The ``keys`` whose values read after ``stamp`` may go into local tiers (hold :attr:`lock`).

        All of them when no invalidation arrived since ``stamp`` (the usual case: no call per key).
        """
        if self.suspended or self._coarse > stamp:
            return ()
        if self.log.seq == stamp:
            return keys
        seen = self._keys
        return [key for key in keys if seen.get(key, 0) <= stamp]

    # -- the listener (the transport's thread) --------------------------------------------------

    def on_message(self, data: bytes) -> None:
        own = data.startswith(self._mark)  # renewed in a forked child before its thread starts
        if own:
            at = data.find(TAIL)  # the writer's stamp; inline: every write comes back to its own process
            stamp = int.from_bytes(data[at + 1 : at + 1 + STAMP_SIZE], "little") if at > 0 else 0
            if self._replaced_at <= stamp:
                return  # our own write, no copy replaced since its local write: our copies hold its outcome
        head, value = split(data)
        if own:
            # A carried value replaced a copy since, maybe with an older value than ours: our own
            # message is applied too, in server order like any other (a drop without a value).
            decoded = decode(head)
            if decoded is None:
                return  # a garbled echo of ours
        else:
            decoded = decode(head)
            if decoded is None:
                self.malformed += 1
                return
            if decoded[0] == self._origin:  # renewed in a forked child before its thread starts
                return
            self.received += 1
        op = decoded[1]
        with self.lock:
            self._record(op)
            if value is not None and op[0] == "keys" and len(op[1]) == 1 and self._replace(op[1][0], value):
                return
            for slot in self.local:
                self._apply(slot, op)

    def _replace(self, key: str, raw: bytes) -> bool:
        """Replace the local copies of ``key`` with the carried stored bytes ``raw`` (hold :attr:`lock`);
        False if they are not readable (the caller drops the copies instead).  Never adds a key a
        tier does not hold; caps the deadline by the tier's ``max_ttl`` as a backfill does.  The value
        is decoded only once a tier is found holding the key (most messages name keys nobody here read)."""
        unpack, codec = self._unpack, self.codec
        if unpack is None or codec is None:
            return False
        now = self.clock()
        try:
            entry = unpack(raw, now)
            if entry is None or entry[2] or type(entry[0]) is not bytes:
                raise ValueError("expired, tagged or not an entry")  # only untagged sets carry values
        except Exception:  # untrusted bytes: whatever fails to read is dropped, never raised
            self.bad_values += 1
            return False
        value: Any = _UNDECODED
        for slot in self.local:
            if slot not in self._replacing:
                self._apply(slot, ("keys", (key,)))
                continue
            try:
                if not slot.delete(key):
                    continue
            except Exception as exc:
                self._missed(slot, ("keys", (key,)), exc)
                continue
            if value is _UNDECODED and not slot.holds_bytes:
                try:
                    value = codec.decode(entry[0])
                except Exception:  # untrusted bytes: the copies stay dropped, nothing is raised
                    self.bad_values += 1
                    value = _UNREADABLE
            if value is _UNREADABLE and not slot.holds_bytes:
                continue
            try:
                slot.set(key, Entry(entry[0] if slot.holds_bytes else value, slot.cap(entry[1], now), ()))
            except Exception as exc:
                self._missed(slot, ("keys", (key,)), exc)
                continue
            self.replaced += 1
            self._replaced_at = self.log.seq
        return True

    def on_subscribed(self) -> None:
        """(Re)subscribed: what was missed meanwhile is unknown, so local copies go, then are used again."""
        with self.lock:
            self._drop_local()
            self.suspended = False
            self.state = "subscribed"
            self.subscriptions += 1
        self._answered.set()
        if self.subscriptions > 1:
            self._event("backplane_subscribed", "backplane subscribed again; local tiers emptied and in use")

    def on_disconnected(self, reason: str) -> None:
        """Lost: local tiers are emptied and stay unused (reads go to the shared tier) until resubscribed."""
        with self.lock:
            was = self.state
            self.suspended = True
            self.state = "disconnected"
            self._drop_local()
        self._answered.set()
        if was != "disconnected":
            self.disconnects += 1
            self._event(
                "backplane_disconnected",
                "backplane lost (%(reason)s); local tiers emptied and unused until it is back",
                reason,
            )

    def _drop_local(self) -> None:
        op: Op = ("clear", ())
        self._record(op)
        for slot in self.local:
            self._apply(slot, op)

    def _record(self, op: Op) -> None:
        log_ = self.log
        log_.append(op)
        if op[0] != "keys":
            self._coarse = log_.seq
            self._keys.clear()
            return
        keys = self._keys
        if len(keys) + len(op[1]) > MAX_TRACKED_KEYS:
            keys.clear()
            self._coarse = log_.seq
        for key in op[1]:
            keys[key] = log_.seq

    @classmethod
    def _apply(cls, slot: TierSlot, op: Op) -> None:
        try:
            apply_op(op, slot.delete, slot.invalidate_tags, slot.invalidate_prefix, slot.clear)
        except Exception as exc:
            cls._missed(slot, op, exc)

    @staticmethod
    def _missed(slot: TierSlot, op: Op, exc: Exception) -> None:
        """``slot`` failed to apply ``op``: counted, and pending until the tier is back."""
        slot.failed(exc)
        what, names = op
        if what == "clear":
            slot.remember_clear()
        elif what == "keys":
            slot.remember(keys=names)
        elif what == "tags":
            slot.remember(tags=names)
        else:
            slot.remember(prefix=names[0])

    def _event(self, event: Event, message: str, reason: str = "") -> None:
        emit(
            event,
            message,
            tier="backplane",
            kind=self.transport.channel,
            namespace=self.namespace,
            reason=reason,
        )

    # -- control --------------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """The backplane's figures for health and stats."""
        report: dict[str, Any] = {
            "state": self.state,
            "suspended": self.suspended,
            "channel": self.transport.channel,
            "received": self.received,
            "published": self.published,
            "publish_errors": self.publish_errors,
            "malformed": self.malformed,
            "replaced": self.replaced,
            "bad_values": self.bad_values,
            "disconnects": self.disconnects,
            "subscriptions": self.subscriptions,
        }
        details = getattr(self.transport, "details", None)
        if details is not None:
            try:
                report.update(details())
            except Exception:  # health and stats must not raise for a third-party transport
                log.debug("backplane transport details failed", exc_info=True)
        return report

    def close(self) -> None:
        self.state = "closed"
        self.suspended = True
        _live.discard(self)
        self._sender.flush(FLUSH_WAIT)
        self.transport.close()

    def _restart_in_child(self) -> None:
        """After ``fork``: the parent's subscriber thread did not follow; subscribe anew (suspended)."""
        self.lock = threading.Lock()
        self._sender = _Sender(self._send)  # the parent's thread did not follow; it sends what it queued
        self.suspended = True
        self.state = "connecting"
        self.subscriptions = 0
        self.log.renew()
        _ = self.origin  # this process's own name and mark, before its subscriber thread starts
        with self.lock:
            self._drop_local()
        self.transport = self._connect()
        self._outbox = getattr(self.transport, "outbox", None)
        self.transport.subscribe(self)


def _after_fork() -> None:
    for backplane in list(_live):
        if backplane.state != "closed":
            backplane._restart_in_child()


def _flush_all() -> None:
    """At exit: what this process changed last still reaches the others."""
    for backplane in list(_live):
        backplane._sender.flush(FLUSH_WAIT)


os.register_at_fork(after_in_child=_after_fork)
atexit.register(_flush_all)


def start(
    slots: Sequence[TierSlot],
    namespace: str,
    codec: Codec | None = None,
    clock: Callable[[], float] = time.time,
) -> tuple[Backplane, str] | None:
    """The backplane of a chain and the tier whose transport it uses; ``None`` when there is no use
    for one (no local tier) or no tier offers one.  A transport that fails to start is logged, not raised:
    the chain then runs as with ``backplane = "off"``.
    """
    local = [slot for slot in slots if not slot.remote and slot.write == "always"]
    if not local:
        return None
    for slot in slots:
        hook = getattr(slot.tier, "tierkit_backplane", None)
        if not slot.remote or hook is None:
            continue
        try:
            transport = hook()
            if transport is None:
                continue
            backplane = Backplane(hook, local, namespace, transport, codec, clock)
            backplane.breaker = slot.breaker
            if getattr(transport, "outbox", None) is not None:
                backplane.rider = slot
            return backplane, slot.name
        except Exception as exc:
            reason = redact(f"{type(exc).__name__}: {exc}")
            log.error(
                "tier %r could not start the backplane (%s); local tiers are not kept coherent",
                slot.name,
                reason,
            )
            return None
    return None
