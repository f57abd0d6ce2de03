"""The conformance kit against a real third-party-style tier: diskcache, bytes, persistent,
namespaces sharing one directory."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from tierkit.testing import FakeClock, TierConformance, make_context

from .diskcache_tier import DiskcacheOptions, DiskcacheTier

Build = Callable[..., DiskcacheTier]


class TestDiskcacheConformance(TierConformance):
    """Every check of the kit applies: nothing may be skipped."""

    tier_class: ClassVar[type[DiskcacheTier]] = DiskcacheTier
    """The class under test (``test_kit_catches_broken_tiers`` swaps in broken copies)."""
    persistent = True  # shared follows: second_instance is reopen()

    @pytest.fixture
    def build(self, tmp_path: Path, clock: FakeClock) -> Iterator[Build]:
        """``build(namespace="conformance", directory=tmp_path / "cache")``, closed afterwards."""
        built: list[DiskcacheTier] = []

        def _build(namespace: str = "conformance", directory: Path = tmp_path / "cache") -> DiskcacheTier:
            tier = self.tier_class(
                DiskcacheOptions(directory=directory), make_context(clock, namespace=namespace)
            )
            built.append(tier)
            return tier

        yield _build
        for tier in built:
            tier.tierkit_close()

    @pytest.fixture
    def tier(self, build: Build) -> DiskcacheTier:
        return build()

    @pytest.fixture
    def reopen(self, build: Build) -> Callable[[], DiskcacheTier]:
        return build

    @pytest.fixture
    def make_tier(self, build: Build) -> Callable[[str], DiskcacheTier]:
        return build

    @pytest.fixture
    def broken_tier(self, build: Build, tmp_path: Path) -> DiskcacheTier:
        """A tier whose directory was replaced by a file after it closed its connection."""
        directory = tmp_path / "doomed"
        tier = build(directory=directory)
        tier.tierkit_close()
        shutil.rmtree(directory)
        directory.write_text("not a directory any more")
        return tier
