"""Per-user session stores for the session tier, kept in this process and keyed by a session id.

Web frameworks' default sessions (Flask's cookie, Starlette's ``SessionMiddleware``)
are serialized to JSON and cannot hold cached objects, so the integrations keep
a session id in the framework's session and the tier's store here.  The stores
are bounded: past ``max_sessions`` the least recently used session's store goes.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tierkit._cache import Cache

Binder = Callable[[MutableMapping[str, Any]], "AbstractContextManager[Any] | None"]

SID_KEY = "tierkit_sid"
"""Key of the session id inside the framework's session."""


def session_binders(cache: Cache) -> tuple[Binder, ...]:
    """The ``bind_session`` of each tier class of ``cache``'s chain that keeps per-user sessions."""
    binders: list[Binder] = []
    for slot in cache.chain.slots:
        bind = getattr(type(slot.tier), "bind_session", None)  # optional: tiers of 0.1.0 have none
        if bind is not None and bind({}) is not None and bind not in binders:
            binders.append(bind)
    return tuple(binders)


@contextmanager
def bound(binders: tuple[Binder, ...], store: MutableMapping[str, Any]) -> Iterator[None]:
    """Every binder's binding of ``store``, for the duration of the block."""
    with ExitStack() as stack:
        for bind in binders:
            binding = bind(store)
            if binding is not None:
                stack.enter_context(binding)
        yield


class SessionStores:
    """Session id → that session's store, least recently used first, at most ``max_sessions``."""

    def __init__(self, max_sessions: int = 10_000) -> None:
        if max_sessions <= 0:
            raise ValueError(f"max_sessions must be positive, got {max_sessions!r}")
        self.max_sessions = max_sessions
        self._stores: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def for_session(self, session: MutableMapping[str, Any]) -> dict[str, Any]:
        """The store of the framework session ``session``, giving it a session id on first use."""
        sid = session.get(SID_KEY)
        if not isinstance(sid, str):
            sid = secrets.token_urlsafe(16)
            session[SID_KEY] = sid
        with self._lock:
            store = self._stores.get(sid)
            if store is None:
                store = self._stores[sid] = {}
                while len(self._stores) > self.max_sessions:
                    self._stores.popitem(last=False)
            else:
                self._stores.move_to_end(sid)
            return store

    def __len__(self) -> int:
        return len(self._stores)
