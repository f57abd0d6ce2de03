"""Checks that fail with what was expected and what came back.

``tierkit.testing`` is imported by tier authors' tests, where pytest does not rewrite its
``assert`` statements: a bare ``assert`` would fail with an empty ``AssertionError``.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from typing import Any, NoReturn

from tierkit._types import Entry

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 160
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 12


def show(value: Any) -> str:
    """``value``'s repr, shortened, with its type when the repr does not make it plain."""
    text = _repr.repr(value)
    if value is None or isinstance(value, bool | int | float | str | bytes | list | tuple | dict | set):
        return text
    return f"{type(value).__name__} {text}"


def fail(what: str, expected: str, actual: Any) -> NoReturn:
    """Raise ``AssertionError("<what>: expected <expected>, got <actual>")``."""
    raise AssertionError(f"{what}: expected {expected}, got {show(actual)}")


def expect(condition: bool, what: str, expected: str, actual: Any) -> None:
    """Fail unless ``condition`` holds; ``expected`` describes what should have come back."""
    if not condition:
        fail(what, expected, actual)


def expect_equal(actual: Any, expected: Any, what: str) -> None:
    """Fail unless ``actual == expected`` and both have the same type."""
    if actual != expected or type(actual) is not type(expected):
        fail(what, show(expected), actual)


def expect_hit(got: Any, what: str) -> Entry:
    """``got`` as an :class:`~tierkit.Entry`; fail if it is a miss or not an ``Entry``."""
    if got is None:
        fail(what, "a hit (an Entry)", got)
    expect(isinstance(got, Entry), what, "a tierkit.Entry", got)
    return got  # type: ignore[no-any-return]


def expect_miss(got: Any, what: str) -> None:
    expect(got is None, what, "a miss (None)", got)


def expect_entry(got: Any, expected: Entry, what: str) -> Entry:
    """Fail unless ``got`` is an ``Entry`` holding ``expected``'s value, deadline and tags."""
    entry = expect_hit(got, what)
    expect_equal(entry.value, expected.value, f"{what}: value")
    if expected.expires_at is None:
        expect_equal(entry.expires_at, None, f"{what}: expires_at")
    else:
        close = (
            isinstance(entry.expires_at, int | float) and abs(entry.expires_at - expected.expires_at) < 0.01
        )
        expect(close, f"{what}: expires_at", f"{expected.expires_at!r} (±0.01)", entry.expires_at)
    expect_tags(entry.tags, expected.tags, what)
    return entry


def expect_tags(tags: Any, expected: tuple[str, ...], what: str) -> None:
    """Fail unless ``tags`` is a tuple of ``str`` holding the ``expected`` tags (in any order)."""
    expect(type(tags) is tuple, f"{what}: tags", "a tuple of str", tags)
    expect(all(type(tag) is str for tag in tags), f"{what}: tags", "a tuple of str", tags)
    expect(sorted(tags) == sorted(expected), f"{what}: tags", show(expected), tags)


def expect_keys(found: Any, expected: set[str], what: str) -> None:
    """Fail unless ``found`` is a mapping whose keys are exactly ``expected``."""
    expect(isinstance(found, Mapping), what, "a mapping of key to Entry", found)
    expect(set(found) == expected, what, f"the keys {sorted(expected)!r}", sorted(found))
