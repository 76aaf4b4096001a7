"""Zero denominators on real data: a stretch of zero volume, a stretch of constant prices.

Every post-warm-up value must be finite (never inf or NaN), and the newest-row path must
agree with the batch computation inside and after the stretches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from xylen.features import DEFAULT_HISTORY, FEATURE_NAMES, compute_features, latest_row_array, max_warmup
from xylen.features.tests import load_candles

ROWS = 12_000
PRICES = ["open", "high", "low", "close"]
Block = npt.NDArray[np.float32]
LO, HI = 6_000, 6_150  # the degenerate stretch (150 rows, longer than every window)


def _degenerate(shared: Path, case: str) -> pd.DataFrame:
    candles = load_candles(shared)[30_000 : 30_000 + ROWS].reset_index(drop=True)
    if case in ("zero_volume", "both"):
        candles.loc[LO : HI - 1, "volume"] = 0.0
    if case in ("flat_prices", "both"):
        last = candles["close"].to_numpy()[LO - 1]
        candles.loc[LO : HI - 1, PRICES] = last
    return candles


@pytest.fixture(scope="module", params=["zero_volume", "flat_prices", "both"])
def data(request: pytest.FixtureRequest, shared_data: Path) -> tuple[pd.DataFrame, Block]:
    candles = _degenerate(shared_data, request.param)
    return candles, compute_features(candles)[list(FEATURE_NAMES)].to_numpy()


def test_finite_after_warmup(data: tuple[pd.DataFrame, Block]) -> None:
    _, batch = data
    tail = batch[max_warmup() :]
    bad = ~np.isfinite(tail)
    assert not bad.any(), sorted({FEATURE_NAMES[j] for j in np.nonzero(bad)[1]})


def test_defined_values_in_the_stretch(data: tuple[pd.DataFrame, Block]) -> None:
    candles, batch = data
    f = pd.DataFrame(batch, columns=list(FEATURE_NAMES))
    inside = slice(LO + 30, HI - 1)  # every 20/12/14-bar window lies in the stretch
    if candles["volume"].to_numpy()[LO] == 0.0:
        for name in ("obv_flow_20", "obv_slope_14", "volume_mom_12", "volume_z_20"):
            assert (f.loc[inside, name] == 0.0).all(), name
    if candles["high"].to_numpy()[LO] == candles["low"].to_numpy()[LO]:
        for name in ("body_ratio", "upper_shadow_ratio", "lower_shadow_ratio", "price_mom_12"):
            assert (f.loc[inside, name] == 0.0).all(), name


def test_latest_row_agrees(data: tuple[pd.DataFrame, Block]) -> None:
    candles, batch = data
    arrays = {k: candles[k].to_numpy() for k in candles.columns}
    offsets = (0, 1, 11, 12, 13, 19, 20, 21, 25, 40, 100, 149, 150, 151, 160, 175, 300)
    for t in (LO + d for d in offsets):
        assert t + 1 >= DEFAULT_HISTORY
        tail = {k: v[t + 1 - DEFAULT_HISTORY : t + 1] for k, v in arrays.items()}
        row = latest_row_array(tail)
        assert np.isfinite(row).all(), t
        np.testing.assert_allclose(row, batch[t], rtol=1e-6, atol=1e-9, err_msg=str(t))


def test_degenerate_from_the_first_row(shared_data: Path) -> None:
    """Constant prices and zero volume from row 0: ATR is exactly 0, every sum is exactly 0."""
    candles = load_candles(shared_data)[:3000].reset_index(drop=True)
    candles.loc[:399, PRICES] = candles["open"].to_numpy()[0]
    candles.loc[:299, "volume"] = 0.0
    f = compute_features(candles)[list(FEATURE_NAMES)]
    assert np.isfinite(f.iloc[max_warmup() :].to_numpy()).all()
    assert (f["price_mom_12"].iloc[14:400] == 0.0).all() and (f["bb_pctb"].iloc[19:400] == 0.5).all()
    assert np.isnan(f["obv_flow_20"].iloc[:20]).all() and (f["obv_flow_20"].iloc[20:300] == 0.0).all()
    assert (f["volume_z_20"].iloc[19:300] == 0.0).all() and (f["volume_mom_12"].iloc[23:300] == 0.0).all()
