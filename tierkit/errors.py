"""The exception hierarchy: every error tierkit raises on purpose is a :class:`TierkitError`."""

from __future__ import annotations


class TierkitError(Exception):
    """Base class of tierkit's own errors."""


class ConfigError(TierkitError, ValueError):
    """The configuration is invalid: unknown tier kind, bad option, bad order.

    Raised when a cache is built, before anything is read or written.  The
    message names the tier, its kind and the offending field.
    """


class PluginError(TierkitError):
    """A tier plugin is broken: fails to import, misses required hooks, bad options model."""


class CodecError(TierkitError):
    """Stored bytes could not be decoded.

    ``corrupt`` is True when the bytes themselves are bad (torn, tampered, not
    what they claim to be): the chain removes such an entry.  It is False when
    the bytes are fine but this process cannot rebuild the value (the value's
    class is not importable here, another codec wrote it): the chain treats
    the entry as a miss and leaves it for the processes that can read it.
    """

    def __init__(self, message: str, *, corrupt: bool = True) -> None:
        super().__init__(message)
        self.corrupt = corrupt


class NotACounter(TierkitError, TypeError):
    """``incr``/``decr`` met a value that is not an integer counter.

    A tier's ``tierkit_incr`` raises it (the chain passes it to the caller
    instead of counting a failure of the tier); ``Cache.incr`` raises it with
    the key named.  A ``TypeError``, as ``"text" + 1`` would be.
    """
