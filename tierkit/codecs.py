"""The built-in codecs, registered under the ``tierkit.codecs`` entry-point group like third-party ones.

``json`` (the default), ``pickle`` (signed, opt-in) and ``objects`` (no codec:
object tiers only).  Write your own by subclassing :class:`tierkit.Codec`
(docs/values.md) and test it with :class:`tierkit.testing.CodecConformance`.
"""

from __future__ import annotations

from tierkit._codec import Codec, JsonCodec, PickleCodec
from tierkit._codecs import GROUP, ObjectsCodec, installed_codecs

__all__ = ["GROUP", "Codec", "JsonCodec", "ObjectsCodec", "PickleCodec", "installed_codecs"]
