"""MkDocs hook: parts of pages generated from the code at build time, so they cannot drift.

Markers (HTML comments, each alone on a line) are replaced before the page is rendered:

* ``<!-- cli-help -->`` / ``<!-- cli-help: tiers -->``: the ``--help`` text of ``tierkit`` or
  of one of its commands, from ``tierkit.cli.build_parser()``;
* ``<!-- options-table: tierkit.tiers.memory:MemoryTier -->``: a table of a tier's options
  (name, type, default, description) from the tier class's pydantic ``Options`` model.

``tests/test_docs.py`` checks the markers against the real parser and models.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

MARKER = re.compile(r"^<!--\s*(?P<what>cli-help|options-table)(?::\s*(?P<arg>[\w.:]+))?\s*-->[ \t]*$", re.M)
HELP_WIDTH = "100"


def cli_help(command: str | None = None) -> str:
    """``tierkit [command] --help``, as the console prints it at a 100-column terminal."""
    from tierkit.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    try:
        argv = [command, "--help"] if command else ["--help"]
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            build_parser().parse_args(argv)
        return out.getvalue()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def commands() -> list[str]:
    """The subcommands of ``tierkit``, in the parser's order."""
    from tierkit.cli import build_parser

    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def _type_name(annotation: Any) -> str:
    """A short, readable name for a field's type: ``float``, ``Path | None``, ``'a' | 'b'``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        if any(getattr(meta, "path_type", None) == "file" for meta in args[1:]):
            return "file path"
        return _type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in args)
    if annotation is type(None):
        return "None"
    if annotation is SecretStr:
        return "str (secret)"
    if origin is not None:
        return f"{_type_name(origin)}[{', '.join(_type_name(arg) for arg in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    value = field.default
    if value is PydanticUndefined and field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "its defaults" if type(value).model_fields else "`{}`"
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "none"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1 << 20:
        for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20)):
            if value % size == 0:
                return f"`{value}` ({value // size} {unit})"
    return f"`{value!r}`"


def options_table(target: str) -> str:
    """A Markdown table of a tier's options: ``module:TierClass`` (its ``Options``) or a model."""
    module, _, name = target.partition(":")
    model = getattr(importlib.import_module(module), name)
    if isinstance(model, type) and not issubclass(model, BaseModel):
        model = getattr(model, "Options", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"{target} is neither a tier class with an Options model nor a pydantic model")
    rows = ["| Option | Type | Default | Meaning |", "|---|---|---|---|"]
    for field_name, field in model.model_fields.items():
        description = (field.description or "").replace("\n", " ").replace("<", "&lt;")
        description = description.replace("[", "\\[").replace("]", "\\]").replace("|", "\\|")
        cells = (f"`{field_name}`", f"`{_type_name(field.annotation)}`", _default(field), description)
        rows.append("| " + " | ".join(cells) + " |")  # a `|` inside backticks does not split a cell
    return "\n".join(rows)


def render(markdown: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match["what"] == "cli-help":
            return f"```text\n{cli_help(match['arg'])}```"
        return options_table(match["arg"])

    return MARKER.sub(replace, markdown)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return render(markdown)
