"""Fixtures shared by the unit tests."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


def _make_distribution(root: Path, dist: str, module: str, body: str) -> None:
    """A fake installed distribution with a ``decodekit`` entry point, under ``root``."""
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    # dist-info folders use the normalized name: importlib.metadata reads it from the stem
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[decodekit]\n{dist} = {module}\n")


@pytest.fixture
def make_distribution() -> Callable[[Path, str, str, str], None]:
    """``make_distribution(root, dist, module, body)`` writes a fake distribution."""
    return _make_distribution
