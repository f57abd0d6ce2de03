"""Which session is current: a context variable, set by :func:`bind`."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from tierkit_session._streamlit import streamlit_session_state

# A ContextVar, not a thread-local: each thread *and* each asyncio task sees its
# own value, and tasks created inside ``bind`` inherit the binding.
_bound: ContextVar[MutableMapping[str, Any] | None] = ContextVar("tierkit_session", default=None)


@contextmanager
def bind(session: MutableMapping[str, Any]) -> Iterator[MutableMapping[str, Any]]:
    """Make ``session`` the current session store for the duration of the block.

    ``session`` is any mutable mapping that lives as long as the user's session
    and keeps Python objects, typically the web framework's server-side session
    dict.  Bindings nest; leaving a block restores the previous one, even when
    the block raises.
    """
    token = _bound.set(session)
    try:
        yield session
    finally:
        _bound.reset(token)


def current_session() -> MutableMapping[str, Any] | None:
    """The current session store: the innermost :func:`bind`, else Streamlit's, else ``None``."""
    session = _bound.get()
    if session is None:
        return streamlit_session_state()
    return session
