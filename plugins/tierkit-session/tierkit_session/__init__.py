"""tierkit-session: a tierkit tier that caches Python objects in the user's session.

Public API:

* :class:`SessionTier` — the tier class, registered under the ``session`` kind
  in the ``tierkit.tiers`` entry-point group (see ``pyproject.toml``).
* :class:`SessionOptions` — its options (``SessionTier.Options``).
* :func:`bind` — make a host session mapping current for a request.
* :func:`current_session` — the session mapping the tier would use right now.

Importing this package never imports streamlit.
"""

from __future__ import annotations

from tierkit_session._binding import bind, current_session
from tierkit_session._tier import SessionOptions, SessionTier

__all__ = ["SessionOptions", "SessionTier", "bind", "current_session"]
