"""Walk-forward and the HTTP fidelity mode, on the shipped BTCUSDT 5m candles.

Walk-forward: a model per window, each trained (``xylen train``'s library function) only on
candles whose label had closed before its window began; every row of a window is voted by that
window's model, and each trade names the model version that decided it.

HTTP fidelity: the same two model directories served by real ``python -m model_server`` processes
and asked over HTTP by the coordinator's model client, beat by beat, give the votes and decisions
the fast path (the directories loaded in-process and predicted ahead) gives, until the outcomes the
backtest posts to the servers' ``/retrain`` start recalibrating what they serve (as live); from
then on the fidelity mode shows what the fast path cannot.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest import settings
from backtest.data import MarketHistory, history_of, load_candles, load_funding_frame
from backtest.engine import RunOptions, run_backtest
from backtest.votes import TrainSettings, VoteBook, model_votes, train_dir, walk_forward_models
from coordinator.model_client import ModelClients
from model_server.tests.server_support import TOKEN, ServerProcess, start_server
from model_server.training.train import model_version
from xylen.config import XylenConfig
from xylen.config.loader import parse_config

SYMBOL = "BTCUSDT"
DAY_MS = 86_400_000
HORIZON_MIN = 30
SMALL = TrainSettings(rounds=20, folds=2, max_rows=8_000, seeds=(1,), horizon_minutes=HORIZON_MIN)

pytestmark = pytest.mark.slow


def _ms(day: str) -> int:
    return int(pd.Timestamp(day, tz="UTC").value // 1_000_000)


def trading_config(servers: list[dict[str, object]]) -> XylenConfig:
    """Zero costs and no minimum edge, so that a short span trades (as ``xylen demo --show-trades``)."""
    data = settings.default_config_data(SYMBOL)
    data["ensemble"] = {"quorum": 1, "min_edge": 0.0, "max_disagreement": 0.5}
    data["risk"].update(sizing="fixed_fraction", fixed_fraction=0.01, cooldown_after_loss_seconds=0.0)
    data["trading"] = {
        "horizon_minutes": HORIZON_MIN, "entry": "market", "taker_fee_bps": 0.0, "slippage_bps": 0.0,
    }  # fmt: skip
    # the fast path replaces these with its in-process models (settings.with_models)
    data["model_servers"] = servers or [{"id": "in-process", "url": settings.IN_PROCESS_URL}]
    return parse_config(data)


@pytest.fixture(scope="module")
def candles(shared_data: Path) -> pd.DataFrame:
    return load_candles(SYMBOL)[0]


def _history(candles: pd.DataFrame, start: str, end: str) -> MarketHistory:
    _, funding_dir = load_candles(SYMBOL)
    return history_of(candles, SYMBOL, _ms(start), _ms(end), funding=load_funding_frame(funding_dir, SYMBOL))


def test_walk_forward_trains_each_window_on_its_past_and_trades_name_their_model(
    candles: pd.DataFrame, tmp_path: Path
) -> None:
    history = _history(candles, "2024-03-01", "2024-03-07")
    every = 2 * DAY_MS
    models = walk_forward_models(candles, history, every, tmp_path, SMALL)
    start = int(history.open_time[history.first])
    windows = [start, start + every, start + 2 * every]
    assert sorted(int(p.name) for p in (tmp_path / "wf-0").iterdir()) == windows
    horizon_ms = HORIZON_MIN * 60_000
    for window in windows:
        meta = json.loads((tmp_path / "wf-0" / str(window) / "metadata.json").read_text())
        # the last row it learnt from had its label (the close a horizon later) before the window
        assert meta["train_end"] + horizon_ms + history.step_ms <= window
        assert meta["model_version"] == model_version(window)
    (votes,) = models
    ot = history.open_time
    for i in range(history.first, history.stop):
        window = max(w for w in windows if w <= int(ot[i]))
        assert votes.versions[i] == model_version(window)
        assert np.isfinite(votes.probs[i])
    assert all(v == "" for v in votes.versions[: history.first])  # the warm-up gets no vote

    book = VoteBook(models)
    config = settings.with_models(trading_config([]), book.model_ids)
    result = asyncio.run(run_backtest(config, history, votes=book))
    trades = result.trades
    assert len(trades) >= 3
    for entry_ms, version in zip(trades["entry_ms"], trades["model_version"], strict=True):
        decided = int(entry_ms) - 1  # a market entry fills at the open after the decision's close
        window = max(w for w in windows if w <= decided - history.step_ms + 1)
        assert version == f"wf-0={model_version(window)}"
    assert trades["model_version"].nunique() >= 2  # trades in more than one window


@pytest.fixture(scope="module")
def model_dirs(candles: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two model directories trained on the candles before 2024-03-05, each in a server's home."""
    cut = _ms("2024-03-05") - HORIZON_MIN * 60_000
    before = candles[candles["open_time"] < cut].reset_index(drop=True)
    root = tmp_path_factory.mktemp("servers")
    return [
        train_dir(before, SYMBOL, root / f"ms-{seed}" / "models" / "v1", SMALL, seed, cut, interval="5m")
        for seed in (1, 2)
    ]


@pytest.fixture(scope="module")
def servers(model_dirs: list[Path]) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    try:
        for d in model_dirs:
            # no retraining and no online recalibration: a static model, as the fast path assumes
            started.append(start_server(d.parent.parent, {"TRAINING_INTERVAL": "0"}))
        yield started
    finally:
        for s in started:
            s.stop()


def test_http_fidelity_gives_the_fast_paths_decisions(
    candles: pd.DataFrame, model_dirs: list[Path], servers: list[ServerProcess]
) -> None:
    history = _history(candles, "2024-03-05", "2024-03-06")
    fast_book = VoteBook(model_votes(model_dirs, history))
    fast = asyncio.run(
        run_backtest(settings.with_models(trading_config([]), fast_book.model_ids), history, votes=fast_book)
    )
    ids = fast_book.model_ids  # the same ids over HTTP, so the ensemble weighs the same names
    config = trading_config(
        [{"id": m, "url": s.url, "timeout_ms": 5000} for m, s in zip(ids, servers, strict=True)]
    )

    async def over_http() -> object:
        from pydantic import SecretStr

        clients = ModelClients(config.model_servers, SecretStr(TOKEN))
        await clients.discover()
        return await run_backtest(config, history, http_models=clients, options=RunOptions())

    slow = asyncio.run(over_http())
    a, b = fast.decisions, slow.decisions  # type: ignore[attr-defined]
    assert len(a) == len(b) == 288
    assert (a["action"] != "HOLD").sum() >= 3
    # until the first batch of outcomes reaches the servers (32 labelled decisions, the first a
    # horizon after the start), they serve what the fast path predicted ahead, to the float32
    # rounding of the wire, and the ensemble decides the same
    before = 32 + HORIZON_MIN // 5
    for m in ids:
        np.testing.assert_allclose(b[f"p:{m}"][:before], a[f"p:{m}"][:before], atol=1e-6)
    np.testing.assert_allclose(b["probability"][:before], a["probability"][:before], atol=1e-5)
    assert list(b["action"][:before]) == list(a["action"][:before])
    # then the servers recalibrate on the outcomes the backtest posts to /retrain, as live: what
    # the fidelity mode is for, and what the fast path cannot see
    moved = max(float(np.abs(b[f"p:{m}"] - a[f"p:{m}"]).max()) for m in ids)
    assert moved > 1e-4
    assert slow.meta["fidelity"] == "http"  # type: ignore[attr-defined]
    versions = {
        f"{m}={json.loads((d / 'metadata.json').read_text())['model_version']}"
        for m, d in zip(ids, model_dirs, strict=True)
    }
    for v in slow.trades["model_version"]:  # type: ignore[attr-defined]
        assert set(v.split(",")) == versions
