"""Shared test configuration.

``tests/reference.py`` holds the naive references; the upstream golden fixtures live in
``../shared/fixtures/upstream`` (tests that need them skip, saying so, when it is absent).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "upstream"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"upstream fixtures not found at {FIXTURES} (they sit in ../shared beside the checkout)")
    return FIXTURES
