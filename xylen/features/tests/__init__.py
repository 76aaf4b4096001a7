"""Tests of the feature engine on real Binance data (shared data folder)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

FREQTRADE = "freqtrade_binance_futures"


@lru_cache(maxsize=8)
def _load(path: str) -> pd.DataFrame:
    df = pd.read_feather(path)
    out = pd.DataFrame({"open_time": df["date"].dt.as_unit("ms").astype("int64").to_numpy(np.int64)})
    for col in ("open", "high", "low", "close", "volume"):
        out[col] = df[col].to_numpy(np.float64)
    return out


def load_candles(shared: Path, symbol: str = "BTC", interval: str = "5m") -> pd.DataFrame:
    """open_time (int64 ms) + OHLCV frame of one freqtrade futures file (cached, copy returned)."""
    return _load(str(shared / FREQTRADE / f"{symbol}_USDT_USDT-{interval}-futures.feather")).copy()
