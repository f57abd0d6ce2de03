"""Values and secrets across processes: exact round trips through a shared Redis, keys, passwords."""

from __future__ import annotations

import secrets
import textwrap
from pathlib import Path

import pytest

import tierkit
from tierkit import MISSING, ConfigError

from .._run import run_module
from ._redis import RedisServer
from ._suite import ROOT, Scenario
from .test_hostile_store import shared_cache

MODELS = """
    import dataclasses, datetime as dt, enum
    import pydantic

    class Level(enum.IntEnum):
        HIGH = 2

    class Mood(enum.StrEnum):
        CALM = "calm"

    class Perm(enum.IntFlag):
        R = 4
        W = 2

    class Account(pydantic.BaseModel):
        user_name: str = pydantic.Field(alias="userName")

        @pydantic.field_validator("user_name")
        @classmethod
        def _shout(cls, value):
            return value + "!"

    @dataclasses.dataclass(frozen=True, slots=True)
    class Shift:
        starts: dt.time
        level: Level
        mood: Mood
        perm: Perm
        account: Account
        runs: int = 0

        def __post_init__(self):
            object.__setattr__(self, "runs", self.runs + 1)
"""
WRITER = """
import datetime as dt, sys
from zoneinfo import ZoneInfo
import tierkit
from shared_models import Account, Level, Mood, Perm, Shift

tiers = {"redis": {"options": {"url": sys.argv[1]}}}
cache = tierkit.Cache(namespace=sys.argv[2], order=["redis"], tiers=tiers)
paris = dt.time(9, tzinfo=ZoneInfo("Europe/Paris"))
cache.set("shift", Shift(paris, Level.HIGH, Mood.CALM, Perm.R | Perm.W, Account(userName="ann")))
ist = dt.timezone(dt.timedelta(hours=5, minutes=30), "IST")
cache.set("odd", {"surrogate": "\\udc80", "huge": 10**5000, "offset": dt.datetime(2026, 1, 1, tzinfo=ist)})
"""


def test_values_written_by_another_process_come_back_exactly(
    record: Scenario, redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enums, dataclasses, aliased models and zoned times another process wrote come back exact (item 9)."""
    (tmp_path / "shared_models.py").write_text(textwrap.dedent(MODELS))
    (tmp_path / "writer.py").write_text(WRITER)
    monkeypatch.syspath_prepend(str(tmp_path))
    reader = shared_cache(redis_server)
    namespace = reader.settings.namespace
    written = run_module("writer", redis_server.url, namespace, cwd=tmp_path, PYTHONPATH=str(tmp_path))
    assert written.returncode == 0, written.stderr
    import shared_models as m  # type: ignore[import-not-found]

    before = reader.get("shift", MISSING)
    tierkit.register_types(m.Shift)  # Level, Mood, Perm and Account come with it
    shift = reader.get("shift")
    odd = reader.get("odd")
    record.did(
        "another process set a slotted dataclass of IntEnum, StrEnum, IntFlag, aliased model, zoned time"
    )
    record.did(
        "and a dict of a lone surrogate, a 5,000-digit int and a named fixed offset; this one read them"
    )
    record.saw(
        before_register=repr(before),
        level=type(shift.level).__name__,
        mood=type(shift.mood).__name__,
        perm=repr(shift.perm),
        post_init_runs=shift.runs,
        account=repr(shift.account.user_name),
        zone=str(shift.starts.tzinfo),
        offset=odd["offset"].tzname(),
    )
    assert before is MISSING
    assert type(shift.level) is m.Level and type(shift.mood) is m.Mood and shift.perm == m.Perm.R | m.Perm.W
    assert shift.runs == 1 and shift.account.user_name == "ann!"  # neither __post_init__ nor validator re-ran
    assert str(shift.starts.tzinfo) == "Europe/Paris"
    assert (
        odd == {"surrogate": "\udc80", "huge": 10**5000, "offset": odd["offset"]}
        and odd["offset"].tzname() == "IST"
    )
    reader.close()


SECRET = "pa@ss:w0rd"
LEAK_URLS = (
    f"redis://user:{SECRET}@127.0.0.1:1/0",
    f"redis://127.0.0.1:1/0?password={SECRET}",
)


def test_no_password_reaches_config_output_reprs_or_errors(record: Scenario) -> None:
    """tierkit config (and --json), a mis-nested variable's error, repr(settings): no password (item 17)."""
    outputs = []
    for url in LEAK_URLS:
        for args in (("config",), ("config", "--json")):
            done = run_module("tierkit", *args, TIERKIT_TIERS__REDIS__OPTIONS__URL=url)
            assert done.returncode == 0, done.stderr
            outputs.append(done.stdout + done.stderr)
    misnested = run_module("tierkit", "config", TIERKIT_TIERS__REDIS__URL=LEAK_URLS[0])
    traceback = run_module("tests.faults._print_settings", TIERKIT_TIERS__REDIS__URL=LEAK_URLS[0], cwd=ROOT)
    shown = run_module(
        "tests.faults._print_settings", TIERKIT_TIERS__REDIS__OPTIONS__URL=LEAK_URLS[0], cwd=ROOT
    )
    outputs += [misnested.stdout + misnested.stderr, traceback.stderr, shown.stdout]
    leaks = sum(any(part in text for part in (SECRET, "w0rd", "pa@ss")) for text in outputs)
    record.did(
        "ran tierkit config and config --json with passwords (with '@' and ':') in a URL's userinfo and query"
    )
    record.did(
        "ran tierkit config and an uncaught load_settings() with the URL mis-nested, printed repr(settings)"
    )
    record.saw(outputs=len(outputs), outputs_with_the_password=leaks)
    assert "ConfigError" in traceback.stderr and "Settings(" in shown.stdout
    assert leaks == 0, outputs


def test_rotating_the_pickle_key_over_a_shared_redis(record: Scenario, redis_server: RedisServer) -> None:
    """Weak pickle keys are refused; keys rotate as a list: sign with the first, verify with any (item 18)."""
    refused = 0
    for weak in ("change-me", "x" * 40, secrets.token_hex(16)):
        with pytest.raises(ConfigError, match=r"token_urlsafe\(32\)"):
            shared_cache(redis_server, codec="pickle", signing_key=weak)
        refused += 1
    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    before = shared_cache(redis_server, codec="pickle", signing_key=old)
    namespace = before.settings.namespace
    before.set("old", {1, 2})

    def with_keys(*keys: str) -> tierkit.Cache:
        tiers = {"redis": {"options": {"url": redis_server.url}}}
        return tierkit.Cache(
            namespace=namespace, order=["redis"], tiers=tiers, codec="pickle", signing_key=list(keys)
        )

    during = with_keys(new, old)
    read_during = during.get("old")
    during.set("new", (3,))
    after = with_keys(new)
    read_after = after.get("new")
    retired = after.get("old", MISSING)
    record.did("refused 3 weak keys; wrote with [old], read and wrote with [new, old], read with [new]")
    record.saw(
        weak_refused=refused,
        read_during=repr(read_during),
        read_after=repr(read_after),
        retired=repr(retired),
    )
    assert refused == 3 and read_during == {1, 2} and read_after == (3,) and retired is MISSING
    for cache in (before, during, after):
        cache.close()
