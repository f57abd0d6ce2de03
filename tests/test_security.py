"""Security: stored bytes are untrusted, pickle keys are strong, secrets never show.

* Decoding never imports a module named by stored data and rebuilds only allowed classes.
* The pickle codec refuses weak or published signing keys and rotates keys.
* Passwords never appear in ``tierkit config`` output, reprs or exception text.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import logging
import os
import re
import secrets
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tierkit
from tierkit import Cache, CodecError, ConfigError, Entry
from tierkit._codec import _CLASS_DECODERS, _DECODERS, JsonCodec, PickleCodec, check_signing_key
from tierkit._config import redact

from ._file_helpers import open_tier
from ._run import run_module

ROOT = Path(__file__).resolve().parent.parent
codec = JsonCodec()
_TAGS = {*_DECODERS, *_CLASS_DECODERS}


# -- the allow-list: stored data never imports anything -------------------------------------------


@pytest.fixture
def hostile_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A module on sys.path whose import leaves a marker file: importing it is running code."""
    name = f"tierkit_hostile_{secrets.token_hex(4)}"
    marker = tmp_path / "imported"
    source = tmp_path / "hostile"
    source.mkdir()
    (source / f"{name}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "import enum\nclass Thing(enum.Enum):\n    A = 1\n"
    )
    monkeypatch.syspath_prepend(str(source))
    yield name, marker
    assert name not in sys.modules, "decoding imported the module a payload named"
    assert not marker.exists(), "decoding ran the module a payload named"


def hostile_payloads(module: str) -> list[bytes]:
    cls = f"{module}:Thing"
    return [
        b'e{"\\u0000t":"enum","v":"A","c":"%s"}' % cls.encode(),
        b'e{"\\u0000t":"flag","v":1,"c":"%s"}' % cls.encode(),
        b'e{"\\u0000t":"dataclass","v":{"a":1},"c":"%s"}' % cls.encode(),
        b'e{"\\u0000t":"model","v":{"d":{},"x":null,"s":[],"p":null},"c":"%s"}' % cls.encode(),
        b'e{"\\u0000t":"namedtuple","v":[1],"c":"%s"}' % cls.encode(),
        b'e[1,{"k":{"\\u0000t":"enum","v":"A","c":"%s"}}]' % cls.encode(),
    ]


def test_the_codec_never_imports_a_module_a_payload_names(hostile_module: tuple[str, Path]) -> None:
    name, _ = hostile_module
    for payload in hostile_payloads(name):
        with pytest.raises(CodecError, match=rf"{name}\.Thing.*tierkit\.register_types\(Thing\)") as raised:
            codec.decode(payload)
        assert raised.value.corrupt is False  # a miss here, left for processes that may read it


def test_a_hostile_entry_in_a_file_tier_is_a_miss_and_imports_nothing(
    hostile_module: tuple[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tierkit")
    name, _ = hostile_module
    cache = Cache(order=["file"], tiers={"file": {"options": {"directory": str(tmp_path / "store")}}})
    store = open_tier(tmp_path / "store", "default")
    payload = hostile_payloads(name)[0]
    store.tierkit_set("k", Entry(payload, None, ()))
    assert cache.get("k", "miss") == "miss"
    assert store.tierkit_get("k") is not None  # left in place: not corrupt, just not allowed here
    figures = cache.stats()["tiers"]["file"]
    assert figures["errors"] == 1 and figures["corrupt"] == 0  # decoded, refused, not removed
    assert "tierkit.register_types(Thing)" in caplog.text and name in caplog.text


class Colour(enum.Enum):
    RED = 1


@dataclasses.dataclass
class Counted:
    inits = 0
    n: int

    def __post_init__(self) -> None:
        type(self).inits += 1


def test_an_allowed_class_is_rebuilt_only_as_what_it_was_registered_as() -> None:
    tierkit.register_types(Colour, Counted)
    forged_enum = b'e{"\\u0000t":"dataclass","v":{"n":1},"c":"%s:Colour"}' % __name__.encode()
    forged_dataclass = b'e{"\\u0000t":"flag","v":1,"c":"%s:Counted"}' % __name__.encode()
    for payload in (forged_enum, forged_dataclass):
        with pytest.raises(CodecError, match="is not stored as") as raised:
            codec.decode(payload)
        assert raised.value.corrupt is True
    before = Counted.inits
    rebuilt = codec.decode(b'e{"\\u0000t":"dataclass","v":{"n":7},"c":"%s:Counted"}' % __name__.encode())
    assert rebuilt == Counted(7)
    assert (
        Counted.inits == before + 1
    )  # the Counted(7) above; decoding ran neither __init__ nor __post_init__


def test_register_types_refuses_what_the_codec_cannot_rebuild() -> None:
    for bad in (object, int, dict, "Colour", Colour.RED):
        with pytest.raises(TypeError, match="is not an Enum, dataclass, pydantic model or namedtuple"):
            tierkit.register_types(bad)  # type: ignore[arg-type]


SHARED = """
    import dataclasses, enum
    import pydantic

    class Status(enum.StrEnum):
        OPEN = "open"

    class Line(pydantic.BaseModel):
        sku: str = pydantic.Field(alias="SKU")

    @dataclasses.dataclass(frozen=True)
    class Order:
        status: Status
        lines: list[Line]
"""
WRITER = """
import sys, tierkit, shared_types as t
cache = tierkit.Cache(order=["file"], tiers={"file": {"options": {"directory": sys.argv[1]}}})
cache.set("order", t.Order(t.Status.OPEN, [t.Line(SKU="a-1")]), persistent=True)
"""


def test_classes_another_process_wrote_are_read_once_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shared_types.py").write_text(textwrap.dedent(SHARED))
    (tmp_path / "writer.py").write_text(WRITER)
    monkeypatch.syspath_prepend(str(tmp_path))
    written = run_module("writer", str(tmp_path / "store"), cwd=tmp_path, PYTHONPATH=str(tmp_path))
    assert written.returncode == 0, written.stderr
    import shared_types as t  # type: ignore[import-not-found]

    cache = Cache(order=["file"], tiers={"file": {"options": {"directory": str(tmp_path / "store")}}})
    assert cache.get("order", "miss") == "miss"  # not allowed yet: a miss, not an import
    assert cache.stats()["tiers"]["file"]["errors"] == 1  # it was read, and refused
    tierkit.register_types(t.Order)  # Status and Line come with it, from Order's annotations
    assert cache.get("order") == t.Order(t.Status.OPEN, [t.Line(SKU="a-1")])
    assert type(cache.get("order").status) is t.Status


# -- pickle signing keys ------------------------------------------------------------------------


STRONG = secrets.token_urlsafe(32)


@pytest.mark.parametrize(
    "key",
    [
        "change-me",
        "x" * 31,
        "correct horse battery staple",
        "a" * 200,
        "00" * 64,
        "0123456789abcdef" * 4,  # hex, 32 bytes, but 8 distinct values
        base64.b64encode(bytes(range(8)) * 4).decode(),
        secrets.token_hex(16),  # 16 random bytes, written as 32 hex digits
        secrets.token_urlsafe(24),
    ],
)
def test_weak_pickle_keys_are_refused_with_how_to_make_one(key: str) -> None:
    with pytest.raises(ConfigError, match=r"secrets\.token_urlsafe\(32\)") as raised:
        Cache(order=["memory", "file"], codec="pickle", signing_key=key)
    assert key not in str(raised.value)


@pytest.mark.parametrize(
    "key",
    [
        STRONG,
        secrets.token_hex(32),
        base64.b64encode(secrets.token_bytes(32)).decode(),
        secrets.token_bytes(32),
    ],
)
def test_strong_pickle_keys_are_accepted(key: str | bytes) -> None:
    raw = key if isinstance(key, bytes) else key.encode()
    assert check_signing_key(raw) == raw


def test_no_signing_key_printed_in_the_docs_is_accepted() -> None:
    pattern = re.compile(r"""(?:signing_key|SIGNING_KEY|secret_key)\s*[=:]\s*["']?([^"'\s,)\]]+)""")
    shown = {m.group(1) for page in (ROOT / "docs").rglob("*.md") for m in pattern.finditer(page.read_text())}
    literal = {key for key in shown if not key.startswith(("$", "secrets.", "os.", "<", "..."))}
    assert "change-me" in literal  # the scan finds the keys the pages show
    for key in literal:
        with pytest.raises(ConfigError):
            check_signing_key(key.encode())


def test_a_forged_pickle_does_not_run_with_the_docs_example_key(tmp_path: Path) -> None:
    # With 'change-me' accepted, one signed entry confirms the key and a forged pickle runs on get().
    with pytest.raises(ConfigError, match="example from the documentation"):
        Cache(order=["memory", "file"], codec="pickle", signing_key="change-me")


def test_keys_rotate_sign_with_the_first_verify_with_any(tmp_path: Path) -> None:
    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    options = {"file": {"options": {"directory": str(tmp_path)}}}
    before = Cache(order=["file"], tiers=options, codec="pickle", signing_key=old)
    before.set("written-with-old", {1, 2}, persistent=True)
    during = Cache(order=["file"], tiers=options, codec="pickle", signing_key=[new, old])
    assert during.get("written-with-old") == {1, 2}
    during.set("written-with-new", (3,), persistent=True)
    after = Cache(order=["file"], tiers=options, codec="pickle", signing_key=[new])
    assert after.get("written-with-new") == (3,)
    assert after.get("written-with-old", "gone") == "gone"  # signed by a retired key: rejected
    assert before.get("written-with-new", "gone") == "gone"


def test_a_list_of_keys_checks_each_and_names_which_is_weak() -> None:
    with pytest.raises(ConfigError, match=r"signing_key #2 of 2"):
        PickleCodec([STRONG.encode(), b"short"])


def test_signing_keys_come_from_the_environment_as_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    monkeypatch.setenv("TIERKIT_SIGNING_KEY", f'["{new}", "{old}"]')
    settings = tierkit.load_settings()
    assert isinstance(settings.signing_key, list)
    assert [k.get_secret_value() for k in settings.signing_key] == [new, old]
    assert new not in repr(settings) and old not in repr(settings)


# -- secrets never show -------------------------------------------------------------------------

PASSWORD = "pa@ss:w0rd@x"
URLS = [
    f"redis://user:{PASSWORD}@127.0.0.1:1/0",
    f"redis://:{PASSWORD}@127.0.0.1:1/0",
    f"redis://127.0.0.1:1/0?password={PASSWORD}",
    f"rediss://127.0.0.1:1/0?db=0&pass={PASSWORD}&ssl_cert_reqs=none",
    "redis://127.0.0.1:1/0?password=pa@ss:w0rd",
]


def leaked(text: str) -> bool:
    """True if the password, or a telling part of it, is in ``text``."""
    return any(part in text for part in (PASSWORD, "w0rd", "pa@ss"))


@pytest.mark.parametrize("url", URLS)
def test_redact_masks_every_form_of_url_password(url: str) -> None:
    shown = redact(url)
    assert not leaked(shown), shown
    assert "127.0.0.1:1/0" in shown or "***" in shown


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("as_json", [False, True], ids=["human", "json"])
def test_tierkit_config_never_prints_the_password(url: str, as_json: bool) -> None:
    result = run_module(
        "tierkit", "config", *(["--json"] if as_json else []), TIERKIT_TIERS__REDIS__OPTIONS__URL=url
    )
    assert result.returncode == 0, result.stderr
    assert "url" in result.stdout
    assert not leaked(result.stdout + result.stderr), result.stdout


def test_a_misnested_setting_does_not_leak_in_the_error_or_its_traceback() -> None:
    env = {"TIERKIT_TIERS__REDIS__URL": URLS[0]}
    cli = run_module("tierkit", "config", **env)
    assert cli.returncode != 0 and "tiers.redis.url" in cli.stdout + cli.stderr
    assert not leaked(cli.stdout + cli.stderr)
    raw = subprocess.run(  # an uncaught error prints its whole chain
        [sys.executable, "-c", "import tierkit; tierkit.load_settings()"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
        timeout=60,
    )
    assert "ConfigError" in raw.stderr and "tiers.redis.url" in raw.stderr
    assert not leaked(raw.stdout + raw.stderr), raw.stderr


def test_settings_repr_and_str_redact_passwords() -> None:
    for url in URLS:
        settings = tierkit.load_settings(tiers={"redis": {"options": {"url": url}}})
        assert not leaked(repr(settings)) and not leaked(str(settings))
        assert not leaked(repr(settings.tiers["redis"]))
        cache = Cache(order=["memory"], tiers={"redis": {"options": {"url": url}}})
        assert not leaked(repr(cache.settings))


def test_validation_errors_hide_their_inputs() -> None:
    with pytest.raises(ConfigError) as raised:
        tierkit.load_settings(tiers={"redis": {"url": URLS[0]}})
    assert raised.value.__cause__ is None and raised.value.__context__ is None
    assert not leaked(str(raised.value))
    with pytest.raises(Exception) as direct:  # a Settings built by hand raises pydantic's own error
        tierkit.Settings(tiers={"redis": {"url": URLS[0]}})  # type: ignore[dict-item]
    assert not leaked(str(direct.value))


# -- any bytes decode to a value or a CodecError ------------------------------------------------

VALID = [
    codec.encode("k", value)
    for value in (
        {"a": (1, 2), "b": {1, 2}, "c": b"x", "d": Colour.RED, "e": Counted(1)},
        [dt.datetime(2026, 1, 1, tzinfo=ZoneInfo("Europe/Paris")), dt.time(1, tzinfo=dt.UTC), Decimal("1.5")],
        {(1, 2): uuid.UUID(int=5), "big": 2**70, "nan": float("nan"), "td": dt.timedelta(3)},
    )
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_altered_payloads_decode_or_raise_codec_error(payload: bytes, data: st.DataObject) -> None:
    position = data.draw(st.integers(1, len(payload) - 1))
    replacement = data.draw(st.binary(min_size=0, max_size=8))
    altered = payload[:position] + replacement + payload[position + data.draw(st.integers(0, 8)) :]
    try:
        codec.decode(altered)
    except CodecError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(["\x00t", "v", "c", "d", "x", "s", "p"]), inner, max_size=4)
            | st.fixed_dictionaries(
                {"\x00t": st.sampled_from(sorted(_TAGS)), "v": inner},
                optional={"c": st.sampled_from([f"{__name__}:Colour", f"{__name__}:Counted", "os:system"])},
            )
        ),
        max_leaves=12,
    )
)
def test_forged_envelopes_decode_or_raise_codec_error(tree: Any) -> None:
    tierkit.register_types(Colour, Counted)
    try:
        codec.decode(b"e" + orjson.dumps(tree))
    except CodecError:
        pass
