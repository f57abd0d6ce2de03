"""``python -m tierkit``: the ``tierkit`` command."""

from __future__ import annotations

import sys

from tierkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
