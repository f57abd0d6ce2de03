"""The public ``Cache``: one API over the configured chain of tiers.

Read: tiers are asked in order; the first hit wins and is copied into the
tiers above it (those whose write policy is ``always``) with its *remaining*
TTL.  Write: every tier whose policy accepts the write gets it, with the TTL
capped by the tier's ``max_ttl``.  The value is encoded at most once per set
(only when a byte tier is written) and decoded at most once per hit.

A tier that raises is counted, fed to its circuit breaker and skipped: no
backend failure reaches the caller.  Programming errors (bad key, bad TTL,
unserializable value) raise before anything is written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tierkit._build import UNAVAILABLE, BuiltChain, TierSlot, build_chain
from tierkit._codec import Codec
from tierkit._config import Settings, load_settings, redact
from tierkit._flight import SingleFlight
from tierkit._types import MISSING, Clock, Entry, TierHealth, new_entry
from tierkit.errors import CodecError

log = logging.getLogger("tierkit")

T = TypeVar("T")
_STATUS_RANK = {"ok": 0, "skipped": 0, "degraded": 1, "down": 2}


@dataclass(frozen=True)
class TierReport:
    """Health of one tier of the order."""

    name: str
    kind: str
    status: str
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HealthReport:
    """``Cache.health()``: the worst status of the configured tiers, and each tier's."""

    status: str
    tiers: dict[str, TierReport]

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "tiers": {
                name: {
                    "kind": t.kind,
                    "status": t.status,
                    "reason": t.reason,
                    "details": dict(t.details),
                }
                for name, t in self.tiers.items()
            },
        }


def _check_key(key: Any) -> None:
    if type(key) is not str or not key:
        raise TypeError(f"cache keys must be non-empty str, got {key!r} ({type(key).__name__})")


def _check_ttl(ttl: Any) -> None:
    if not ((type(ttl) is int or type(ttl) is float) and ttl > 0):
        raise ValueError(f"ttl must be a positive number of seconds or None, got {ttl!r}")


def _check_tags(tags: Iterable[str]) -> tuple[str, ...]:
    if isinstance(tags, str | bytes):
        raise TypeError(f"tags must be a list of str, not a single {type(tags).__name__} ({tags!r})")
    checked = tuple(tags)
    for tag in checked:
        if type(tag) is not str or not tag:
            raise TypeError(f"tags must be non-empty str, got {tag!r}")
    return checked


class Cache:
    """A multi-tier cache built from configuration.

    ``Cache()`` reads the configuration (environment, dotenv files, Streamlit
    secrets, TOML); keyword arguments override it, e.g.
    ``Cache(namespace="app", order=["memory", "file"])``.  ``settings=`` takes a
    ready :class:`~tierkit.Settings` instead.  ``clock`` replaces ``time.time``
    (tests use :class:`tierkit.testing.FakeClock`).  ``kinds`` adds tier
    classes by kind without packaging them (an application's own tier, a test
    double); they are checked like installed ones.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Clock | None = None,
        kinds: Mapping[str, type] | None = None,
        **overrides: Any,
    ) -> None:
        if settings is not None and overrides:
            raise TypeError("pass either settings= or configuration keywords, not both")
        self.settings = settings if settings is not None else load_settings(**overrides)
        self._clock: Clock = clock or time.time
        chain: BuiltChain = build_chain(self.settings, self._clock, kinds)
        self._chain = chain
        self._codec: Codec = chain.codec
        self._slots: tuple[TierSlot, ...] = tuple(chain.slots)
        self._default_ttl = self.settings.default_ttl
        self._flights = SingleFlight()
        self._misses = 0
        self._closed = False
        first = self._slots[0] if self._slots else None
        # Fast path: the first tier holds objects and is local (the memory tier):
        # its bound get is called straight from Cache.get, without breaker checks;
        # a tier offering a fused front door (a closure over its dict) replaces get.
        self._first = first if first is not None and not first.holds_bytes and not first.remote else None
        self._first_get = self._first.get if self._first is not None else None
        fused = self._fused_get(self._codec)
        if fused is not None:
            self.get = fused  # type: ignore[method-assign,assignment]
        self._writers = tuple(s for s in self._slots if s.write == "always")
        # A hit in tier i is copied into the "always" tiers above it.
        self._backfill_targets = tuple(
            tuple(above for above in self._slots[:i] if above.write == "always")
            for i in range(len(self._slots))
        )
        self._persistent_writers = tuple(s for s in self._slots if s.write != "never")
        self._encode_plain = any(s.holds_bytes for s in self._writers)
        self._encode_persistent = any(s.holds_bytes for s in self._persistent_writers)
        self._backfill_capped = tuple(any(t.max_ttl is not None for t in ts) for ts in self._backfill_targets)

    # -- reads --------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The cached value, or ``default`` on a miss (``tierkit.MISSING`` tells a cached ``None`` apart)."""
        first_get = self._first_get
        if first_get is not None and type(key) is str and key:
            try:
                entry = first_get(key)
            except Exception as exc:
                self._first.failed(exc)  # type: ignore[union-attr]
            else:
                if entry is not None:
                    self._first.hits += 1  # type: ignore[union-attr]
                    return entry[0]
                self._first.misses += 1  # type: ignore[union-attr]
            return self._read_through(key, default, 1, self._codec)
        _check_key(key)
        return self._read_through(key, default, 0, self._codec)

    def _fused_get(self, codec: Codec) -> Callable[[str, Any], Any] | None:
        """``get(key, default)`` fused with the first tier's front door, decoding lower hits with ``codec``.

        ``None`` when the first tier offers no front door (then :meth:`get` is the generic path).
        """
        first = self._first
        front_door = getattr(first.tier, "front_door", None) if first is not None else None
        if first is None or front_door is None:
            return None

        def after_first_miss(key: str, default: Any) -> Any:
            _check_key(key)
            first.misses += 1
            return self._read_through(key, default, 1, codec)

        fused: Callable[[str, Any], Any] | None = front_door(after_first_miss, first)
        return fused

    def _reader(self, codec: Codec) -> Callable[[str, Any], Any]:
        """A ``get(key, default)`` that decodes byte-tier hits with ``codec`` (``@cached`` with a type)."""
        if codec is self._codec:
            return self.get
        fused = self._fused_get(codec)
        if fused is not None:
            return fused

        def get(key: str, default: Any) -> Any:
            _check_key(key)
            return self._read_through(key, default, 0, codec)

        return get

    def _read_through(self, key: str, default: Any, start: int, codec: Codec) -> Any:
        """Ask tiers from ``start`` on; backfill the tiers above a hit."""
        slots = self._slots
        for index in range(start, len(slots)):
            slot = slots[index]
            entry = slot.call(slot.get, key)
            if entry is UNAVAILABLE:
                continue
            if entry is None:
                slot.misses += 1
                continue
            value = entry[0]
            payload = None
            if slot.holds_bytes:
                payload = value
                try:
                    value = codec.decode(payload)
                except CodecError as exc:
                    self._undecodable(slot, key, exc)
                    continue
            slot.hits += 1
            if index:
                self._backfill_one(index, key, value, payload, entry)
            return value
        self._misses += 1
        return default

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Values of the keys that hit (misses are absent), one batch per tier."""
        wanted = list(dict.fromkeys(keys))
        for key in wanted:
            _check_key(key)
        found: dict[str, Any] = {}
        for index, slot in enumerate(self._slots):
            if not wanted:
                break
            entries = slot.call(slot.get_many, wanted)
            if entries is UNAVAILABLE:
                continue
            hits: dict[str, tuple[Any, bytes | None, Entry]] = {}
            if slot.holds_bytes:
                decode = self._codec.decode
                for key, entry in entries.items():
                    try:
                        hits[key] = (decode(entry[0]), entry[0], entry)
                    except CodecError as exc:
                        self._undecodable(slot, key, exc)
            else:
                hits = {key: (entry[0], None, entry) for key, entry in entries.items()}
            slot.hits += len(hits)
            slot.misses += len(wanted) - len(hits)
            if hits:
                found.update((key, hit[0]) for key, hit in hits.items())
                if index:
                    self._backfill(index, hits)
                wanted = [key for key in wanted if key not in hits]
        self._misses += len(wanted)
        return found

    def _backfill(self, index: int, hits: Mapping[str, tuple[Any, bytes | None, Entry]]) -> None:
        """Copy hits from tier ``index`` into the ``always`` tiers above it, one batch per tier."""
        now = self._clock() if self._backfill_capped[index] else 0.0
        for slot in self._backfill_targets[index]:
            batch = {}
            for key, (value, payload, entry) in hits.items():
                copy = self._copy_for(slot, key, value, payload, entry, now)
                if copy is not None:
                    batch[key] = copy
            if batch:
                self._write(slot, batch)

    def _backfill_one(self, index: int, key: str, value: Any, payload: bytes | None, entry: Entry) -> None:
        """:meth:`_backfill` for the single hit of a ``get`` (no batches to build)."""
        now = self._clock() if self._backfill_capped[index] else 0.0
        for slot in self._backfill_targets[index]:
            copy = self._copy_for(slot, key, value, payload, entry, now)
            if copy is not None and slot.call(slot.set, key, copy) is not UNAVAILABLE:
                slot.sets += 1

    def _copy_for(
        self, slot: TierSlot, key: str, value: Any, payload: bytes | None, entry: Entry, now: float
    ) -> Entry | None:
        """The entry to backfill into ``slot``, with the remaining TTL (``None`` if it cannot hold it).

        The hit was just validated against the clock by its tier, so the clock
        is read (``now``) only when a target caps TTLs (``max_ttl``).
        """
        stored = value
        if slot.holds_bytes:
            if payload is None:
                try:
                    payload = self._codec.encode(key, value)
                except TypeError:
                    return None  # an object-tier value the codec cannot write: leave byte tiers alone
            stored = payload
        expires_at = entry[1] if slot.max_ttl is None else slot.cap(entry[1], now)
        return new_entry((stored, expires_at, entry[2]))

    def _undecodable(self, slot: TierSlot, key: str, exc: CodecError) -> None:
        """Count an undecodable entry as a miss; remove it only if its bytes are bad."""
        slot.errors += 1
        if not exc.corrupt:
            slot.misses += 1
            log.debug("tier %r: %r not decodable in this process: %s", slot.name, key, exc)
            return
        slot.corrupt += 1
        try:
            slot.delete(key)
        except Exception as delete_exc:
            slot.failed(delete_exc)

    # -- writes -------------------------------------------------------------------

    def set(
        self,
        key: str,
        value: Any,
        ttl: float | None = None,
        *,
        tags: Iterable[str] = (),
        persistent: bool = False,
    ) -> None:
        """Store ``value`` in every tier whose write policy accepts it.

        ``ttl`` in seconds (``None``: the configured ``default_ttl``, which may
        be no expiry); ``tags`` for :meth:`invalidate`; ``persistent=True`` also
        writes the tiers with the ``persistent`` policy (the file tier).
        """
        self._set_one(key, value, ttl, tags, persistent, self._codec)

    def set_many(
        self,
        items: Mapping[str, Any],
        ttl: float | None = None,
        *,
        tags: Iterable[str] = (),
        persistent: bool = False,
    ) -> None:
        """:meth:`set` for several keys, one batch per tier."""
        self._set_many(items, ttl, tags, persistent, self._codec)

    def _set_one(
        self, key: str, value: Any, ttl: float | None, tags: Iterable[str], persistent: bool, codec: Codec
    ) -> None:
        """The single-key write, kept apart from :meth:`_set_many`: it is the common one."""
        if type(key) is not str or not key:
            _check_key(key)
        writers, encode, tag_tuple, now, expires_at = self._write_plan(ttl, tags, persistent)
        payload = codec.encode(key, value) if encode else None
        for slot in writers:
            exp = expires_at if slot.max_ttl is None else slot.cap(expires_at, now)
            entry = new_entry((payload if slot.holds_bytes else value, exp, tag_tuple))
            if slot.call(slot.set, key, entry) is not UNAVAILABLE:
                slot.sets += 1

    def _set_many(
        self, items: Mapping[str, Any], ttl: float | None, tags: Iterable[str], persistent: bool, codec: Codec
    ) -> None:
        for key in items:
            _check_key(key)
        writers, encode, tag_tuple, now, expires_at = self._write_plan(ttl, tags, persistent)
        payloads = {key: codec.encode(key, value) for key, value in items.items()} if encode else {}
        for slot in writers:
            exp = slot.cap(expires_at, now)
            source = payloads if slot.holds_bytes else items
            self._write(slot, {key: new_entry((value, exp, tag_tuple)) for key, value in source.items()})

    def _write(self, slot: TierSlot, batch: Mapping[str, Entry]) -> None:
        if len(batch) == 1:
            [(key, entry)] = batch.items()
            done = slot.call(slot.set, key, entry)
        else:
            done = slot.call(slot.set_many, batch)
        if done is not UNAVAILABLE:
            slot.sets += len(batch)

    def _write_plan(
        self, ttl: float | None, tags: Iterable[str], persistent: bool
    ) -> tuple[tuple[TierSlot, ...], bool, tuple[str, ...], float, float | None]:
        """Check a write's arguments; return the tiers to write, whether to encode, tags, now, deadline."""
        if ttl is None:
            ttl = self._default_ttl
        if ttl is not None:
            _check_ttl(ttl)
        tag_tuple = _check_tags(tags) if tags else ()
        now = self._clock()
        expires_at = None if ttl is None else now + ttl
        if persistent:
            return self._persistent_writers, self._encode_persistent, tag_tuple, now, expires_at
        return self._writers, self._encode_plain, tag_tuple, now, expires_at

    def get_or_set(
        self,
        key: str,
        factory: Callable[[], T],
        ttl: float | None = None,
        *,
        tags: Iterable[str] = (),
        persistent: bool = False,
    ) -> T:
        """The cached value, or ``factory()`` stored and returned.

        Concurrent callers for the same key in this process wait for one
        ``factory`` call (single flight) instead of stampeding.
        """
        value = self.get(key, MISSING)
        if value is not MISSING:
            return value  # type: ignore[no-any-return]
        return self._compute(key, factory, ttl, tags, persistent, self._codec)

    def _compute(
        self,
        key: str,
        factory: Callable[[], T],
        ttl: float | None,
        tags: Iterable[str],
        persistent: bool,
        codec: Codec,
    ) -> T:
        def lead() -> T:
            value = self._read_through(key, MISSING, 0, codec)  # a previous leader may have stored it
            if value is MISSING:
                value = factory()
                self._set_one(key, value, ttl, tags, persistent, codec)
            return value  # type: ignore[no-any-return]

        return self._flights.run(key, lead)

    # -- removal ------------------------------------------------------------------

    def delete(self, key: str) -> bool:
        """Remove ``key`` from every writable tier; True if any tier held it."""
        _check_key(key)
        removed = False
        for slot in self._persistent_writers:
            outcome = slot.call(slot.delete, key)
            if outcome is not UNAVAILABLE:
                slot.deletes += 1
                removed = bool(outcome) or removed
        return removed

    def invalidate(self, *, tags: Iterable[str] = (), prefix: str | None = None) -> int:
        """Remove entries carrying any of ``tags`` and/or whose key starts with ``prefix``.

        Returns the number of entries removed, summed over tiers.
        """
        tag_tuple = _check_tags(tags)
        if prefix is not None and (type(prefix) is not str or not prefix):
            raise ValueError(f"prefix must be a non-empty str, got {prefix!r}")
        if not tag_tuple and prefix is None:
            raise ValueError("invalidate() needs tags=[...] and/or prefix=...")
        removed = 0
        for slot in self._persistent_writers:
            if tag_tuple:
                count = slot.call(slot.tier.tierkit_invalidate_tags, tag_tuple)
                removed += count if count is not UNAVAILABLE else 0
            if prefix is not None:
                count = slot.call(slot.tier.tierkit_invalidate_prefix, prefix)
                removed += count if count is not UNAVAILABLE else 0
        return removed

    def clear(self, tiers: Sequence[str] | None = None) -> None:
        """Remove every entry of this cache's namespace, in every writable tier or in ``tiers``."""
        if tiers is not None:
            unknown = sorted(set(tiers) - {s.name for s in self._slots})
            if unknown:
                raise ValueError(f"clear(tiers=...) names tiers not in the chain: {', '.join(unknown)}")
            chosen = set(tiers)
        else:
            chosen = {s.name for s in self._persistent_writers}
        self._broadcast("tierkit_clear", only=chosen)

    # -- control plane ------------------------------------------------------------

    def _broadcast(self, hook: str, only: Collection[str] | None = None) -> dict[str, Any]:
        """Call ``hook`` on every tier through pluggy, isolating each tier's failure."""
        results: dict[str, Any] = {}
        slots = {s.name: s for s in self._slots}
        for impl in getattr(self._chain.pm.hook, hook).get_hookimpls():
            name = impl.plugin_name
            if only is not None and name not in only:
                continue
            try:
                results[name] = impl.function()
            except Exception as exc:
                slots[name].failed(exc)
                results[name] = exc
        return results

    def health(self) -> HealthReport:
        """Each tier's status (ok / degraded / down / skipped) with the reason."""
        answers = self._broadcast("tierkit_health")
        reports: dict[str, TierReport] = {}
        for slot in self._slots:
            answer = answers.get(slot.name, TierHealth("ok"))
            if isinstance(answer, Exception):
                answer = TierHealth("down", redact(f"health check failed: {type(answer).__name__}: {answer}"))
            status, reason = answer.status, answer.reason
            state = slot.breaker.state
            if state != "closed" and status != "down":
                status = "down" if state == "open" else "degraded"
                reason = f"circuit breaker {state} after: {slot.breaker.last_error}"
            details = dict(answer.details)
            details["breaker"] = state
            reports[slot.name] = TierReport(slot.name, slot.kind, status, reason, details)
        for skipped in self._chain.skipped:
            reports[skipped.name] = TierReport(skipped.name, skipped.kind, skipped.status, skipped.reason)
        order = {name: i for i, name in enumerate(self.settings.tier_names())}
        ordered = dict(sorted(reports.items(), key=lambda item: order.get(item[0], len(order))))
        worst = max((_STATUS_RANK[r.status] for r in ordered.values()), default=0)
        overall = {0: "ok", 1: "degraded", 2: "down"}[worst]
        return HealthReport(overall, ordered)

    def stats(self) -> dict[str, Any]:
        """Counters of the chain and of each tier (cheap: no scan of any store)."""
        extra = self._broadcast("tierkit_stats")
        tiers: dict[str, Any] = {}
        for slot in self._slots:
            figures: dict[str, Any] = {
                "kind": slot.kind,
                "hits": slot.hits,
                "misses": slot.misses,
                "sets": slot.sets,
                "deletes": slot.deletes,
                "errors": slot.errors,
                "corrupt": slot.corrupt,
                "breaker": slot.breaker.state,
            }
            own = extra.get(slot.name)
            if isinstance(own, Mapping):
                figures.update(redact(dict(own)))
            tiers[slot.name] = figures
        for skipped in self._chain.skipped:
            tiers[skipped.name] = {
                "kind": skipped.kind,
                "status": skipped.status,
                "reason": skipped.reason,
            }
        hits = sum(slot.hits for slot in self._slots)
        gets = hits + self._misses
        return {
            "namespace": self.settings.namespace,
            "gets": gets,
            "hits": hits,
            "misses": self._misses,
            "hit_ratio": round(hits / gets, 4) if gets else None,
            "tiers": tiers,
        }

    @property
    def tiers(self) -> tuple[str, ...]:
        """Names of the tiers in the chain, in order (skipped tiers left out)."""
        return tuple(slot.name for slot in self._slots)

    def close(self) -> None:
        """Release every tier's resources; the cache must not be used afterwards."""
        if self._closed:
            return
        self._closed = True
        self._broadcast("tierkit_close")
        for slot in self._slots:
            self._chain.pm.unregister(slot.tier)

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<tierkit.Cache namespace={self.settings.namespace!r} tiers={list(self.tiers)!r}>"


_default_cache: Cache | None = None
_default_lock = threading.Lock()


def get_cache() -> Cache:
    """The process-wide default cache, built from configuration on first use."""
    global _default_cache
    cache = _default_cache
    if cache is None:
        with _default_lock:
            if _default_cache is None:
                _default_cache = Cache()
            cache = _default_cache
    return cache
