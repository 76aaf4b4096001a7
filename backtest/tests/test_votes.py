"""Models trained inside a backtest learn on the span's own candle interval, and a given model votes
only where its server would answer (shipped BTCUSDT and ETHUSDT 15m and 5m candles)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest.data import history_of, load_candles
from backtest.votes import TrainSettings, model_votes, trained_models, walk_forward_models
from xylen.errors import UsageError

pytestmark = pytest.mark.slow

SYMBOL = "BTCUSDT"
SMALL = TrainSettings(rounds=20, folds=2, max_rows=8_000, seeds=(1,))


def _ms(day: str) -> int:
    return int(pd.Timestamp(day, tz="UTC").value // 1_000_000)


def test_models_are_trained_on_the_histories_interval(tmp_path: Path, shared_data: Path) -> None:
    """On 15m candles the labels span the configured horizon in 15m bars (4 for an hour): trained as
    5m candles they would span 12 bars and find every row a gap."""
    candles, _ = load_candles(SYMBOL, "15m")
    history = history_of(candles, SYMBOL, _ms("2024-03-01"), _ms("2024-03-08"), interval="15m")
    before = candles[candles["open_time"] < _ms("2024-03-01") - 3_600_000].reset_index(drop=True)
    (votes,) = trained_models(before, history, tmp_path / "once", SMALL)
    meta = json.loads(next((tmp_path / "once").rglob("metadata.json")).read_text(encoding="utf-8"))
    assert meta["base_interval"] == "15m" and meta["horizon_bars"] == 4
    span = votes.probs[history.first : history.stop]
    assert np.isfinite(span).all() and 0.2 < float(span.mean()) < 0.8
    (walked,) = walk_forward_models(candles, history, 3 * 86_400_000, tmp_path / "wf", SMALL)
    metas = [json.loads(p.read_text(encoding="utf-8")) for p in (tmp_path / "wf").rglob("metadata.json")]
    assert len(metas) == 3 and {m["base_interval"] for m in metas} == {"15m"}
    assert np.isfinite(walked.probs[history.first : history.stop]).all()

    # given as --models, a model is refused where its server would refuse the request (a 409 live)
    (model_dir,) = {p.parent for p in (tmp_path / "once").rglob("metadata.json")}
    five, _ = load_candles(SYMBOL, "5m")
    on_5m = history_of(five, SYMBOL, _ms("2024-03-01"), _ms("2024-03-02"))
    with pytest.raises(UsageError, match=r"serves timeframe '15m' \(the span: BTCUSDT 5m\)"):
        model_votes([model_dir], on_5m)
    eth, _ = load_candles("ETHUSDT", "15m")
    on_eth = history_of(eth, "ETHUSDT", _ms("2024-03-01"), _ms("2024-03-08"), interval="15m")
    with pytest.raises(UsageError, match="was trained for BTCUSDT and does not answer for ETHUSDT"):
        model_votes([model_dir], on_eth)
    assert np.isfinite(model_votes([model_dir], history)[0].probs[history.first : history.stop]).all()
