"""Fixtures shared by every test package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent


def shared_data_dir() -> Path:
    """The real Binance data folder: ``$XYLEN_SHARED_DATA``, else ``../shared/data``."""
    env = os.environ.get("XYLEN_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "README.md").is_file():
        pytest.fail(f"real market data not found at {path} (set XYLEN_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def btc_5m_path(shared_data: Path) -> Path:
    return shared_data / "freqtrade_binance_futures" / "BTC_USDT_USDT-5m-futures.feather"
