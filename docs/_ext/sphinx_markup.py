"""Griffe extension: make tierkit's Sphinx-flavoured docstrings render well in mkdocstrings.

tierkit's docstrings (the hookspecs above all) follow pytest's shape: a summary,
``:param:`` / ``:return:`` fields, then notes such as "Stops at the first
non-``None`` result.  Required."  Two things go wrong when mkdocstrings renders
them as they are:

* Sphinx roles (``:class:`~tierkit.Entry```) are not Markdown and show literally; they
  become optional cross-references: a link where the target is documented, plain code
  where it is not (a private helper), never a broken link.
* griffe's Sphinx parser attaches prose that follows the field list to the last
  field, so "Required." would disappear into the *Returns* table; that prose is
  moved in front of the fields.

The docstrings in the source are not changed; only what the docs render.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj):`(~?)([\w.]+)(\(\))?`")
_FIELD = re.compile(
    r"^:(param|parameter|arg|argument|key|keyword|type|raises?|except|exception|"
    r"var|ivar|cvar|vartype|returns?|rtype|yields?)\b"
)
_PACKAGES = ("tierkit", "tierkit_session", "tierkit_redis")


def _role(match: re.Match[str], obj: griffe.Object) -> str:
    """An optional cross-reference: a link where the target is documented, plain code elsewhere."""
    tilde, target, call = match.groups()
    title = target.rsplit(".", 1)[-1] if tilde else target
    if "." not in target:  # relative, as Sphinx allows: resolve in the object's scope
        try:
            target = obj.resolve(target)
        except Exception:  # a name griffe cannot place: leave it as written
            pass
    return f'<autoref identifier="{target}" optional><code>{title}{call or ""}</code></autoref>'


def _prose_after_fields_first(text: str) -> str:
    """Move paragraphs that follow the field list in front of it."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _FIELD.match(line)), None)
    if start is None:
        return text
    fields: list[str] = []
    prose: list[str] = []
    in_prose = False
    previous_blank = False
    for line in lines[start:]:
        if not line.strip():
            (prose if in_prose else fields).append(line)
            previous_blank = True
            continue
        if _FIELD.match(line):
            in_prose = False
        elif previous_blank and not line.startswith((" ", "\t")):
            in_prose = True
        (prose if in_prose else fields).append(line)
        previous_blank = False
    if not prose:
        return text
    head = lines[:start]
    while head and not head[-1].strip():
        head.pop()
    body = list(prose)
    while body and not body[0].strip():
        body.pop(0)
    while fields and not fields[-1].strip():
        fields.pop()
    return "\n".join([*head, "", *body, "", *fields]).strip("\n")


def rewrite(text: str, obj: griffe.Object) -> str:
    return _ROLE.sub(lambda match: _role(match, obj), _prose_after_fields_first(text))


def _objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)  # type: ignore[arg-type]


class SphinxMarkup(griffe.Extension):
    """Rewrite the docstrings of tierkit's packages once a package is loaded (names resolve then)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.path not in _PACKAGES:
            return
        for obj in _objects(pkg):
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj.docstring.value, obj)
