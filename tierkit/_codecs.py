"""Codecs are plugins: found by name in the ``tierkit.codecs`` entry-point group, like tiers.

Only the codecs a cache names are imported.  :class:`Codecs` is what one cache
uses: the configured codec, others by name for ``@cached(codec=...)``, and
compression (:class:`Compressing`) around each of them.
"""

from __future__ import annotations

import operator
import threading
import zlib
from collections.abc import Mapping, Sequence
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from tierkit._codec import Codec
from tierkit._contract import suggest
from tierkit._types import Parts
from tierkit.errors import CodecError, ConfigError, PluginError
from tierkit.hookspecs import PROJECT_NAME

if TYPE_CHECKING:
    from tierkit._config import Settings

GROUP = f"{PROJECT_NAME}.codecs"
"""The entry-point group codec distributions declare (name = codec name, value = a :class:`Codec` class)."""


class ObjectsCodec(Codec):
    """No codec at all: values stay Python objects, so the cache takes any object — and only object tiers.

    Choose it (``codec = "objects"``) for a cache that is memory-only on
    purpose; a chain with it refuses byte tiers (a shared server, files) rather than
    accepting values in development that production would refuse.
    """

    name = "objects"
    stores_bytes = False

    def check(self, key: str, value: Any) -> None:
        return None

    def encode(self, key: str, value: Any) -> bytes:
        raise TypeError(f"cannot write key {key!r} to a byte tier: codec 'objects' keeps values as objects")

    def decode(self, payload: bytes) -> Any:
        raise CodecError("codec 'objects' reads no bytes", corrupt=False)


def installed_codecs() -> dict[str, list[EntryPoint]]:
    """Codec name → entry points declaring it (more than one is a conflict), without importing any."""
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, []).append(ep)
    return dict(sorted(found.items()))


def check_codec_class(cls: Any, name: str) -> list[str]:
    """What is wrong with ``cls`` as the codec ``name`` (empty when nothing is)."""
    if not (isinstance(cls, type) and issubclass(cls, Codec)):
        return [f"{cls!r} is not a subclass of tierkit.Codec"]
    problems = []
    if cls.name != name:
        problems.append(f"its name attribute is {cls.name!r}, not {name!r}")
    for method in ("encode", "decode"):
        if getattr(cls, method) is getattr(Codec, method):
            problems.append(f"it does not implement {method}()")
    return problems


@cache
def load_codec_class(name: str) -> type[Codec]:
    """Import and check the codec class registered as ``name``."""
    eps = installed_codecs().get(name)
    if not eps:
        known = installed_codecs()
        raise ConfigError(
            f"unknown codec {name!r}{suggest(name, known)}; installed codecs: {', '.join(known) or 'none'}"
        )
    if len(eps) > 1:
        raise PluginError(f"codec {name!r} is declared by several distributions: {[ep.value for ep in eps]}")
    ep = eps[0]
    try:
        cls = ep.load()
    except Exception as exc:
        raise PluginError(
            f"codec {name!r} ({ep.value}) failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    problems = check_codec_class(cls, name)
    if problems:
        raise PluginError(f"codec {name!r} ({ep.value}) is not a valid codec: " + "; ".join(problems))
    return cls  # type: ignore[no-any-return]


# -- compression ----------------------------------------------------------------------------------

_ZSTD, _ZLIB = ord("z"), ord("d")
"""Payload markers of compressed payloads (no codec's payload starts with them)."""
_COMPRESSED = frozenset((_ZSTD, _ZLIB))
_first_byte = operator.itemgetter(0)
_ZSTD_LEVEL = 1
_ZLIB_LEVEL = 1
"""Levels chosen by measurement (docs/values.md, "Compression"): the fastest, nearly the best ratio."""
_WORTH = 0.9
"""A compressed payload is kept only if at most this fraction of the original."""


class Compressing(Codec):
    """``inner``, with payloads of at least ``min_bytes`` compressed (``None``: none are).

    Every cache reads compressed payloads whatever its own setting, so processes
    sharing a store need not agree on it.  Payloads that do not shrink by a tenth
    are stored as they are.
    """

    def __init__(self, inner: Codec, min_bytes: int | None, library: str = "zstd") -> None:
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.stores_bytes = inner.stores_bytes  # type: ignore[misc]
        self.keeps_buffers = inner.keeps_buffers
        self.min_bytes = min_bytes
        self._zstd = library == "zstd"
        self._local = threading.local()  # zstandard (de)compressors are not thread-safe
        if min_bytes is not None and self._zstd:
            _zstandard("compression = 'zstd'")

    def check(self, key: str, value: Any) -> None:
        self.inner.check(key, value)

    def encode(self, key: str, value: Any) -> bytes:
        payload = self.inner.encode(key, value)
        min_bytes = self.min_bytes
        if min_bytes is None or len(payload) < min_bytes:
            return payload
        if self._zstd:
            packed = b"z" + self._compressor().compress(payload)
        else:
            packed = b"d" + zlib.compress(payload, _ZLIB_LEVEL)
        return packed if len(packed) <= len(payload) * _WORTH else payload

    def encode_parts(self, key: str, value: Any) -> bytes | Parts:
        # Without compression the inner codec's pieces go through; a payload to compress is joined.
        if self.min_bytes is None:
            return self.inner.encode_parts(key, value)
        return self.encode(key, value)

    def decode(self, payload: bytes) -> Any:
        fmt = payload[0] if payload else -1
        if fmt == _ZSTD:
            payload = self._unzstd(payload)
        elif fmt == _ZLIB:
            try:
                payload = zlib.decompress(memoryview(payload)[1:])
            except zlib.error as exc:
                raise CodecError(f"corrupt compressed payload: {exc}") from exc
        return self.inner.decode(payload)

    def decode_many(self, payloads: Sequence[bytes]) -> list[Any]:
        # Nothing compressed in the batch (the common case): the inner codec's batch decode.
        try:
            compressed = not _COMPRESSED.isdisjoint(map(_first_byte, payloads))
        except IndexError:  # an empty payload: decode says what is wrong with it
            compressed = True
        if compressed:
            return super().decode_many(payloads)
        return self.inner.decode_many(payloads)

    def _compressor(self) -> Any:
        compressor = getattr(self._local, "compressor", None)
        if compressor is None:
            compressor = self._local.compressor = _zstandard("compression").ZstdCompressor(level=_ZSTD_LEVEL)
        return compressor

    def _unzstd(self, payload: bytes) -> bytes:
        decompressor = getattr(self._local, "decompressor", None)
        if decompressor is None:
            try:
                module = _zstandard("reading a zstd-compressed payload")
            except ConfigError as exc:
                raise CodecError(str(exc), corrupt=False) from None
            decompressor = self._local.decompressor = module.ZstdDecompressor()
        try:
            return decompressor.decompress(memoryview(payload)[1:])  # type: ignore[no-any-return]
        except Exception as exc:  # zstandard.ZstdError, or a frame without its size
            raise CodecError(f"corrupt compressed payload: {exc}") from exc


def _zstandard(what: str) -> Any:
    try:
        import zstandard
    except ImportError:
        raise ConfigError(
            f"{what} needs the zstandard package: pip install 'tierkit[zstd]' (or compression = 'zlib')"
        ) from None
    return zstandard


# -- one cache's codecs ---------------------------------------------------------------------------


class Codecs:
    """The codecs of one cache: each built once from its settings, compression around it.

    ``extra`` adds codec classes by name without packaging them (``Cache(codecs=...)``).
    """

    def __init__(self, settings: Settings, extra: Mapping[str, type[Codec]] | None = None) -> None:
        self._settings = settings
        self._extra = dict(extra or {})
        for name, cls in self._extra.items():
            problems = check_codec_class(cls, name)
            if problems:
                raise PluginError(
                    f"codec {name!r} ({cls!r}, given in code) is not valid: " + "; ".join(problems)
                )
        self._bare: dict[str, Codec] = {}
        self._lock = threading.Lock()
        self.default = self.framed(self.bare(settings.codec))
        """The codec the cache's byte tiers use, compression included."""

    def bare(self, name: str) -> Codec:
        """The codec ``name``, built once for this cache, without compression."""
        codec = self._bare.get(name)
        if codec is None:
            with self._lock:
                codec = self._bare.get(name)
                if codec is None:
                    cls = self._extra.get(name) or load_codec_class(name)
                    codec = self._bare[name] = cls.from_settings(self._settings)
        return codec

    def framed(self, codec: Codec) -> Codec:
        """``codec`` with this cache's compression (and reading every compressed payload)."""
        if not codec.stores_bytes:
            return codec
        settings = self._settings
        return Compressing(codec, settings.compress_min_bytes, settings.compression)
