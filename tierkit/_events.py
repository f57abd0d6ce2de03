"""Events as structured log records, for log pipelines to alert on.

Each event is one record on the ``tierkit.events`` logger whose ``extra`` fields
are stable: ``tierkit_event`` (the event's name, below), ``tier``, ``kind``,
``namespace`` and ``reason`` (secrets redacted).  The message is for people;
pipelines match the fields.
"""

from __future__ import annotations

import logging
from typing import Final, Literal

from tierkit._config import redact

log = logging.getLogger("tierkit.events")

Event = Literal[
    "breaker_opened",
    "breaker_closed",
    "tier_left_out",
    "corrupt_entry_removed",
    "store_moved_aside",
    "invalidations_pending",
    "backplane_disconnected",
    "backplane_subscribed",
]

LEVELS: Final[dict[Event, int]] = {
    "breaker_opened": logging.WARNING,
    "breaker_closed": logging.INFO,
    "tier_left_out": logging.WARNING,
    "corrupt_entry_removed": logging.WARNING,
    "store_moved_aside": logging.ERROR,
    "invalidations_pending": logging.WARNING,
    "backplane_disconnected": logging.WARNING,
    "backplane_subscribed": logging.INFO,
}
"""Every event and the level it is logged at (the documented list)."""


def emit(event: Event, message: str, *, tier: str, kind: str, namespace: str, reason: str = "") -> None:
    """Log ``event`` with its stable fields (``message`` may use them as ``%(tier)s`` …)."""
    level = LEVELS[event]
    if log.isEnabledFor(level):
        fields = {"tier": tier, "kind": kind, "namespace": namespace, "reason": str(redact(reason))}
        log.log(level, message, fields, extra={"tierkit_event": event, **fields})
