"""Small in-process tiers for chain tests: a byte tier and a tier that can be made to fail."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from tierkit import Entry, Tier, TierContext, TierHealth, hookimpl


class DictOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    fail: bool = False


class DictTier(Tier):
    """Objects in a plain dict; ``failing = True`` makes every data hook raise."""

    Options = DictOptions
    holds: ClassVar[Any] = "objects"
    stores: ClassVar[dict[str, dict[str, Entry]]] = {}  # by tier name, so tests can look inside

    def __init__(self, options: BaseModel, context: TierContext) -> None:
        super().__init__(options, context)
        assert isinstance(options, DictOptions)
        self.failing = options.fail
        self.data: dict[str, Entry] = self.stores.setdefault(context.name, {})
        self.clock = context.clock
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.failing:
            raise ConnectionError(f"{self.context.name} is down")

    @hookimpl
    def tierkit_get(self, key: str) -> Entry | None:
        self._check()
        entry = self.data.get(key)
        if entry is None or (entry.expires_at is not None and entry.expires_at <= self.clock()):
            return None
        return entry

    @hookimpl
    def tierkit_get_many(self, keys: Sequence[str]) -> Mapping[str, Entry]:
        found = {}
        for key in keys:
            entry = self.tierkit_get(key)
            if entry is not None:
                found[key] = entry
        return found

    @hookimpl
    def tierkit_set(self, key: str, entry: Entry) -> None:
        self._check()
        if self.holds == "bytes":
            assert isinstance(entry.value, bytes), entry
        self.data[key] = entry

    @hookimpl
    def tierkit_delete(self, key: str) -> bool:
        self._check()
        return self.data.pop(key, None) is not None

    @hookimpl
    def tierkit_invalidate_tags(self, tags: Sequence[str]) -> int:
        self._check()
        doomed = [k for k, e in self.data.items() if set(e.tags) & set(tags)]
        for key in doomed:
            del self.data[key]
        return len(doomed)

    @hookimpl
    def tierkit_invalidate_prefix(self, prefix: str) -> int:
        self._check()
        doomed = [k for k in self.data if k.startswith(prefix)]
        for key in doomed:
            del self.data[key]
        return len(doomed)

    @hookimpl
    def tierkit_clear(self) -> None:
        self._check()
        self.data.clear()

    @hookimpl
    def tierkit_health(self) -> TierHealth:
        return TierHealth("down", "switched off") if self.failing else TierHealth("ok")


class BytesTier(DictTier):
    """The same store holding encoded bytes, like redis or file."""

    holds: ClassVar[Any] = "bytes"


class RemoteBytesTier(BytesTier):
    """A byte tier the chain guards with a circuit breaker."""

    remote = True


KINDS: dict[str, type] = {"dict": DictTier, "bytes": BytesTier, "remote": RemoteBytesTier}
