"""Plain-text output shared by the command line and the demo: JSON that never fails, tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel


def jsonable(value: Any) -> Any:
    """``orjson`` default for report values and cached values it does not know natively."""
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__qualname__} is not JSON serializable")


def dumps(value: Any) -> str:
    return orjson.dumps(
        value, default=jsonable, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
    ).decode()


def print_json(value: Any) -> None:
    print(dumps(value))


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return orjson.dumps(value, default=jsonable).decode()
    return str(value)


def table(rows: Iterable[Sequence[object]], headers: Sequence[str] = (), indent: str = "") -> str:
    """Plain left-aligned columns separated by two spaces (``None`` shown as ``-``)."""
    cells = [[cell(v) for v in row] for row in ([headers] if headers else []) + list(rows)]
    if not cells:
        return ""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join(
        indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )
