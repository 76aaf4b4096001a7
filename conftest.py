"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest

from xylen.paths import SHARED_BTC_5M, shared_data_dir

REPO = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "README.md").is_file():
        pytest.fail(f"real market data not found at {path} (set XYLEN_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def btc_5m_path(shared_data: Path) -> Path:
    return shared_data / SHARED_BTC_5M
