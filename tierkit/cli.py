"""The ``tierkit`` command: inspect the installed tiers, the configuration and the cache.

Exit status: 0 success; 1 a miss, a tier down, or a value not stored; 2 a usage or
configuration error (the message names the tier and the field).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from tierkit import __version__
from tierkit._cache import Cache
from tierkit._config import (
    DOTENV_FILES,
    Settings,
    config_file,
    declared_sources,
    load_settings,
    plain_variables,
    redact,
    setting_origins,
)
from tierkit._discovery import GROUP, KindReport, describe_installed, load_tier_class
from tierkit._text import cell, dumps, print_json, table
from tierkit._types import MISSING
from tierkit.errors import TierkitError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
Inspect and use a tierkit cache from the shell: the chain of tiers, its configuration,
its health and its entries.

Settings come from the same places as tierkit.Cache(): TIERKIT_* environment variables
and the plain variables tier plugins declare, .env / .env.local, the sources tier plugins
add, then tierkit.toml or [tool.tierkit] in pyproject.toml (or the file named by
TIERKIT_CONFIG). --namespace, --order and --config override them; `tierkit config`
lists every source.

Every tierkit command runs in a new process, so in-process tiers start empty each time:
get, set, delete and clear reach the entries that tiers outside the process (the file
tier, shared tiers) keep between processes."""

EPILOG = """\
examples:
  tierkit tiers                         installed tier plugins and their hooks
  tierkit health                        is every configured tier up? (exit 1 if one is down)
  tierkit config --json                 effective settings, secrets redacted
  tierkit set greeting '"hello"' --persistent --ttl 3600
  tierkit get greeting
  tierkit inspect greeting              which tier holds it, until when
  tierkit --namespace myapp stats
  tierkit demo                          a guided tour on the embedded default

exit status: 0 ok; 1 miss, tier down or value not stored; 2 usage or configuration error"""

SET_HELP = """\
Store KEY = VALUE (a JSON document) in the tiers that take the write.

Without --persistent the write goes where an application's cache.set() goes: the
tiers with write policy 'always'. Only those outside this process (a shared tier)
outlive this command, so without one configured tierkit refuses (exit 2) instead of
storing a value that vanishes on exit: add --persistent to write the file tier too."""

STATS_HELP = """\
Per-tier counters and figures. Hit and miss counters belong to the process that counts
them: here, this command's own (new) process; figures such as entries and bytes are what
the tiers hold.

--watch refreshes a live view of each tier (hit ratio, reads, writes and errors per second,
breaker, status, entries, bytes). Another process cannot see an application's counters:
with --from URL it reads them from the application's metrics endpoint (served by
tierkit.integrations.prometheus.TierkitCollector); without it, it shows what the shared
tiers hold (file tier entries, bytes, evictions; a remote tier's server-wide figures) and
each tier's health from here."""


class CommandError(Exception):
    """An expected failure: its message goes to stderr and ``code`` becomes the exit status."""

    def __init__(self, message: str, code: int = EXIT_FAIL) -> None:
        super().__init__(message)
        self.code = code


# -- output helpers ---------------------------------------------------------------------------


def _one_line(message: str) -> str:
    """Fold a multi-line error (one line per invalid field) into one line."""
    lines = [line.strip() for line in str(redact(message)).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {'; '.join(lines[1:])}"
    return "; ".join(lines)


# -- configuration and cache ------------------------------------------------------------------


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.namespace is not None:
        overrides["namespace"] = args.namespace
    if args.order is not None:
        overrides["order"] = _comma_list(args.order)
    if args.config is not None:
        overrides["config"] = args.config
    return overrides


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(**_overrides(args))


def _cache(args: argparse.Namespace) -> Cache:
    return Cache(_settings(args))


# -- tiers ------------------------------------------------------------------------------------


def _kind_dict(report: KindReport) -> dict[str, Any]:
    return {
        "kind": report.kind,
        "distribution": report.distribution,
        "version": report.version,
        "target": report.target,
        "valid": report.ok,
        "holds": report.holds,
        "hooks": list(report.hooks),
        "options": report.options,
        "error": report.error,
    }


def _short_hooks(report: KindReport) -> str:
    return " ".join(hook.removeprefix("tierkit_") for hook in report.hooks)


def cmd_tiers(args: argparse.Namespace) -> int:
    reports = installed = describe_installed()
    if args.kind is not None:
        reports = [r for r in installed if r.kind == args.kind]
        if not reports:
            kinds = ", ".join(sorted({r.kind for r in installed})) or "none"
            raise CommandError(f"tier kind {args.kind!r} is not installed (installed: {kinds})", EXIT_USAGE)
    if args.json:
        print_json({"group": GROUP, "tiers": [_kind_dict(r) for r in reports]})
    elif args.kind is not None:
        print("\n\n".join(_describe_kind(r) for r in reports))
    else:
        print(_tiers_table(reports))
    return EXIT_OK


def _tiers_table(reports: list[KindReport]) -> str:
    if not reports:
        return f"No tier plugins installed (entry-point group {GROUP!r})."
    rows = [(r.kind, r.distribution, r.version, r.holds, "yes" if r.ok else "NO", r.target) for r in reports]
    parts = [
        f"Tier kinds installed (entry-point group {GROUP!r}):\n",
        table(rows, ("KIND", "DISTRIBUTION", "VERSION", "HOLDS", "VALID", "CLASS")),
        "\nHooks implemented (tierkit_*):",
        table([(r.kind, _short_hooks(r)) for r in reports if r.ok], indent="  "),
    ]
    broken = [r for r in reports if not r.ok]
    if broken:
        parts += ["\nLoad errors:", *(f"  {r.kind}: {r.error}" for r in broken)]
    parts.append("\nOptions of one kind: tierkit tiers KIND")
    return "\n".join(parts)


def _describe_kind(report: KindReport) -> str:
    lines = [
        f"{report.kind}: {report.target} from {report.distribution} {report.version}",
        f"  valid: {'yes' if report.ok else 'NO: ' + str(report.error)}",
    ]
    if report.ok:
        lines += [f"  holds: {report.holds}", f"  hooks: {_short_hooks(report)}", "  options:"]
        width = max((len(name) for name in report.options), default=0)
        for name, text in report.options.items():
            lines.append(
                textwrap.fill(
                    text or "(undocumented)",
                    width=100,
                    initial_indent=f"    {name.ljust(width)}  ",
                    subsequent_indent=" " * (width + 6),
                )
            )
    return "\n".join(lines)


# -- config -----------------------------------------------------------------------------------


def _sources(args: argparse.Namespace) -> dict[str, Any]:
    """Where the configuration came from (names only: values may be secret)."""
    overrides = _overrides(args)
    plain = plain_variables(**overrides)
    environment = sorted(n for n in os.environ if n.startswith("TIERKIT_") or n in plain)
    toml = args.config if args.config is not None else config_file()
    return {
        "config_file": str(toml.resolve()) if toml is not None else None,
        "dotenv_files": [str(Path(n).resolve()) for n in DOTENV_FILES if Path(n).is_file()],
        "environment": environment,
        "plain_variables": plain,
        "precedence": declared_sources(**overrides),
    }


def effective_config(args: argparse.Namespace) -> dict[str, Any]:
    """The merged settings (secrets redacted), the chain order they give, and their sources."""
    settings = _settings(args)
    dumped: dict[str, Any] = redact(settings.model_dump(mode="json"))
    return {
        "sources": _sources(args),
        "order": settings.tier_names(),
        "order_is_default": not settings.explicit_order,
        "settings": dumped,
        "origins": setting_origins(**_overrides(args)),
    }


def _flatten(value: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, value


def cmd_config(args: argparse.Namespace) -> int:
    config = effective_config(args)
    if args.json:
        print_json(config)
        return EXIT_OK
    sources = config["sources"]
    print(f"configuration file: {sources['config_file'] or 'none (tierkit.toml, pyproject.toml)'}")
    for label, key in (("dotenv files", "dotenv_files"), ("environment", "environment")):
        print(f"{label}: {', '.join(sources[key]) or 'none'}")
    print(f"plain variables read: {', '.join(sources['plain_variables']) or 'none'}")
    print(f"sources, highest first: {'; '.join(sources['precedence'])}")
    note = "default; tiers that cannot run here are skipped" if config["order_is_default"] else "configured"
    print(f"\nchain order: {' -> '.join(config['order'])} ({note})\n")
    origins = config["origins"]
    rows = [
        (key, orjson.dumps(value).decode(), origins.get(key, "default"))
        for key, value in _flatten(config["settings"])
    ]
    print(table(rows, ("SETTING", "VALUE", "FROM")))
    return EXIT_OK


# -- health and stats -------------------------------------------------------------------------


def cmd_health(args: argparse.Namespace) -> int:
    with _cache(args) as cache:
        report: dict[str, Any] = redact(cache.health().to_dict())
    down = [name for name, tier in report["tiers"].items() if tier["status"] == "down"]
    if args.json:
        print_json(report)
    else:
        rows = [(name, t["kind"], t["status"], t["reason"]) for name, t in report["tiers"].items()]
        print(table(rows, ("TIER", "KIND", "STATUS", "REASON")))
        print(f"\noverall: {report['status']}" + (f" ({', '.join(down)} down)" if down else ""))
    return EXIT_FAIL if down else EXIT_OK


_COUNTERS = ("hits", "misses", "sets", "deletes", "errors")
_COMMON = {"kind", "breaker", "corrupt", "status", "reason", *_COUNTERS}


def cmd_stats(args: argparse.Namespace) -> int:
    if args.watch:
        return _watch_stats(args)
    for option, value in (
        ("--from", args.source),
        ("--interval", args.interval),
        ("--iterations", args.iterations),
    ):
        if value is not None:
            raise CommandError(f"{option} needs --watch: without it, stats prints one reading", EXIT_USAGE)
    with _cache(args) as cache:
        stats: dict[str, Any] = redact(cache.stats())
        order = {name: i for i, name in enumerate(cache.settings.tier_names())}
    stats["tiers"] = dict(sorted(stats["tiers"].items(), key=lambda item: order.get(item[0], len(order))))
    if args.json:
        print_json(stats)
        return EXIT_OK
    print(f"namespace: {stats['namespace']}")
    print("(the counters are this command's own process; the tier figures are what the tiers hold)\n")
    rows = []
    for name, fig in stats["tiers"].items():
        state = fig.get("breaker") or f"{fig.get('status')}: {fig.get('reason')}"
        rows.append((name, fig["kind"], *(fig.get(c) for c in _COUNTERS), state))
    print(table(rows, ("TIER", "KIND", *(c.upper() for c in _COUNTERS), "STATE")))
    figures = [
        (name, "  ".join(f"{k}={cell(v)}" for k, v in fig.items() if k not in _COMMON))
        for name, fig in stats["tiers"].items()
        if "breaker" in fig
    ]
    print("\nTier figures:\n" + table(figures, indent="  "))
    return EXIT_OK


def _watch_stats(args: argparse.Namespace) -> int:
    """``stats --watch``: the application's endpoint (``--from``), else the shared tiers read from here."""
    from tierkit.integrations._watch import CacheSource, EndpointSource, WatchError, watch  # only --watch

    if args.json:
        raise CommandError("--watch shows a live table; --json is for one reading", EXIT_USAGE)
    interval = args.interval or 1.0
    try:
        if args.source is None:
            with _cache(args) as cache:
                watch(CacheSource(cache), interval, args.iterations, table, sys.stdout)
        else:
            watch(EndpointSource(args.source, args.namespace), interval, args.iterations, table, sys.stdout)
    except WatchError as exc:
        raise CommandError(str(exc)) from None
    except ValueError as exc:  # a --from that cannot work
        raise CommandError(str(exc), EXIT_USAGE) from None
    return EXIT_OK


# -- entries ----------------------------------------------------------------------------------


def cmd_get(args: argparse.Namespace) -> int:
    with _cache(args) as cache:
        value = cache.get(args.key, MISSING)
        namespace, tiers = cache.settings.namespace, cache.tiers
    if value is MISSING:
        raise CommandError(
            f"{args.key!r} not found in namespace {namespace!r} (tiers asked: {', '.join(tiers)})"
        )
    try:
        text = dumps(value)
    except TypeError:
        print(
            f"tierkit: warning: a {type(value).__qualname__} is not JSON; shown with repr()", file=sys.stderr
        )
        text = repr(value)
    print(text)
    return EXIT_OK


def _json_value(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CommandError(
            f"VALUE is not valid JSON ({exc}); a string needs JSON quotes, e.g. '\"hello\"'", EXIT_USAGE
        ) from exc


def _holds_bytes(kind: str) -> bool:
    """Whether tiers of ``kind`` store encoded bytes outside this process (file, shared tiers)."""
    return getattr(load_tier_class(kind), "holds", None) == "bytes"


def cmd_set(args: argparse.Namespace) -> int:
    value = _json_value(args.value)
    with _cache(args) as cache:
        cache.set(args.key, value, args.ttl, tags=args.tags, persistent=args.persistent)
        tiers: dict[str, Any] = cache.stats()["tiers"]
        ttl = args.ttl if args.ttl is not None else cache.settings.default_ttl
    written = [n for n, fig in tiers.items() if fig.get("sets") and _holds_bytes(fig["kind"])]
    failed = [n for n, fig in tiers.items() if fig.get("errors")]
    if failed:
        print(f"tierkit: warning: not written to {', '.join(failed)} (see tierkit health)", file=sys.stderr)
    if not written:
        if failed:
            raise CommandError(f"{args.key!r} was not stored: {', '.join(failed)} failed")
        raise CommandError(
            f"{args.key!r} was not stored: no tier outside this process takes "
            f"{'this write' if args.persistent else 'a write without --persistent'} here; "
            "use --persistent for the file tier, or configure a shared tier (see tierkit health)",
            EXIT_USAGE,
        )
    expiry = f"expires in {ttl:g} s" if ttl is not None else "no expiry"
    print(f"stored {args.key!r} in {', '.join(written)} ({expiry})")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    with _cache(args) as cache:
        removed = cache.delete(args.key)
        namespace = cache.settings.namespace
    if not removed:
        raise CommandError(f"{args.key!r} not found in namespace {namespace!r}")
    print(f"deleted {args.key!r}")
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    with _cache(args) as cache:
        reports = cache.inspect(args.key)
        namespace = cache.settings.namespace
    if args.json:
        print_json(
            {"key": args.key, "namespace": namespace, "tiers": {n: r.to_dict() for n, r in reports.items()}}
        )
    else:
        rows = [
            (
                name,
                r.kind,
                r.status,
                "-" if r.status != "held" else ("no expiry" if r.ttl is None else f"{r.ttl:g} s"),
                r.size,
                ",".join(r.tags) or None,
                r.breaker,
                r.reason or None,
            )
            for name, r in reports.items()
        ]
        print(f"key {args.key!r} in namespace {namespace!r}:")
        print(table(rows, ("TIER", "KIND", "STATUS", "TTL", "SIZE", "TAGS", "BREAKER", "REASON")))
    held = any(r.status == "held" for r in reports.values())
    return EXIT_OK if held else EXIT_FAIL


def cmd_clear(args: argparse.Namespace) -> int:
    with _cache(args) as cache:
        unknown = [name for name in args.tier or () if name not in cache.tiers]
        if unknown:
            raise CommandError(
                f"no tier named {', '.join(unknown)} in the chain ({', '.join(cache.tiers)})", EXIT_USAGE
            )
        cache.clear(args.tier)
        where = ", ".join(args.tier) if args.tier else "every writable tier"
        print(f"cleared namespace {cache.settings.namespace!r} in {where}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from tierkit import _demo  # imported here: only the demo needs it

    return _demo.run()


# -- parser -----------------------------------------------------------------------------------


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def _key(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The ``tierkit`` argument parser (its ``--help`` is part of the docs)."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="tierkit", description=DESCRIPTION, epilog=EPILOG, formatter_class=formatter
    )
    parser.add_argument("--version", action="version", version=f"tierkit {__version__}")
    parser.add_argument(
        "--namespace", metavar="NAME", help="cache namespace to use (overrides configuration)"
    )
    parser.add_argument(
        "--order",
        metavar="TIERS",
        help="chain order as a comma list, e.g. memory,file (overrides configuration)",
    )
    parser.add_argument(
        "--config", metavar="FILE", type=Path, help="read this TOML file instead of tierkit.toml"
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="machine-readable output (JSON)")

    def command(name: str, handler: Callable[[argparse.Namespace], int], summary: str, **kw: Any) -> Any:
        cmd = sub.add_parser(name, help=summary, description=kw.pop("description", summary), **kw)
        cmd.set_defaults(handler=handler)
        return cmd

    tiers = command(
        "tiers",
        cmd_tiers,
        "installed tier kinds: distribution, version, hooks, validation",
        description="List every installed tier plugin (entry-point group 'tierkit.tiers'): its "
        "distribution and version, the hooks it implements and whether it passed validation. "
        "Plugins that fail to import are reported, not fatal.",
        parents=[as_json],
    )
    tiers.add_argument("kind", nargs="?", help="show one kind in detail, with its options")
    command(
        "config",
        cmd_config,
        "effective configuration (all sources merged, secrets redacted)",
        description="Show the effective settings with every source merged, where they came from, "
        "and the chain order. Passwords in URLs and secret fields are redacted.",
        parents=[as_json],
    )
    command(
        "health",
        cmd_health,
        "status of each tier; exit 1 if a configured tier is down",
        description="One line per tier in chain order: ok, degraded, down or skipped (not "
        "configured or not installed), with the reason. Exit status 1 if any tier is down.",
        parents=[as_json],
    )
    stats = command(
        "stats",
        cmd_stats,
        "counters and figures of each tier, once or live (--watch)",
        description=STATS_HELP,
        formatter_class=formatter,
        parents=[as_json],
    )
    stats.add_argument(
        "--watch", action="store_true", help="refresh a live view every --interval seconds (Ctrl-C stops)"
    )
    stats.add_argument(
        "--from",
        dest="source",
        metavar="URL",
        help="with --watch: read an application's metrics endpoint (TierkitCollector), e.g. "
        "http://127.0.0.1:9464/metrics",
    )
    stats.add_argument(
        "--interval", type=_positive, metavar="SECONDS", help="with --watch: seconds between refreshes (1)"
    )
    stats.add_argument("--iterations", type=_count, metavar="N", help="with --watch: stop after N refreshes")
    get = command(
        "get",
        cmd_get,
        "print a cached value as JSON (exit 1 on a miss)",
        description="Print the value of KEY as JSON. Exit status 1 on a miss. Only the tiers that "
        "outlive a process (file, shared tiers) can hold it: the memory tier of a new process is empty.",
    )
    get.add_argument("key", metavar="KEY", type=_key)
    set_ = command("set", cmd_set, "store a JSON value", description=SET_HELP, formatter_class=formatter)
    set_.add_argument("key", metavar="KEY", type=_key)
    set_.add_argument("value", metavar="JSON", help="the value as JSON, e.g. '{\"a\": 1}' or '\"text\"'")
    set_.add_argument("--ttl", type=_positive, metavar="SECONDS", help="expire after this many seconds")
    set_.add_argument("--tags", type=_comma_list, default=[], metavar="A,B", help="tags for invalidation")
    set_.add_argument(
        "--persistent", action="store_true", help="also write the persistent tiers (the file tier)"
    )
    inspect = command(
        "inspect",
        cmd_inspect,
        "which tier holds a key, until when (exit 1 if none)",
        description="For each tier of the order: whether it holds KEY, the seconds left, the size "
        "stored, the tags and the breaker state. Nothing is copied between tiers or counted. In-process "
        "tiers of this new process are empty: it shows what the shared tiers hold.",
        parents=[as_json],
    )
    inspect.add_argument("key", metavar="KEY", type=_key)
    delete = command("delete", cmd_delete, "remove a key from every tier (exit 1 if absent)")
    delete.add_argument("key", metavar="KEY", type=_key)
    clear = command(
        "clear",
        cmd_clear,
        "remove every entry of the namespace",
        description="Remove every entry of the namespace from every writable tier, or only from "
        "the tiers named with --tier. Other namespaces are untouched.",
    )
    clear.add_argument("--tier", action="append", metavar="NAME", help="clear only this tier (repeatable)")
    command(
        "demo",
        cmd_demo,
        "a guided tour of tierkit on the embedded default",
        description="Run a short, reproducible tour in its own namespace 'tierkit-demo': the chain, "
        "a slow function under @cached (cold vs warm), a second process served by the file tier, "
        "invalidation, and what a shared tier changes. Global options do not apply to it.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tierkit`` console script; returns the exit status."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except CommandError as exc:
        print(f"tierkit: error: {_one_line(str(exc))}", file=sys.stderr)
        return exc.code
    except TierkitError as exc:
        print(f"tierkit: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `tierkit tiers --json | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
