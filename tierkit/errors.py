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
    """Stored bytes could not be decoded (corrupt, tampered or from an unknown codec)."""
