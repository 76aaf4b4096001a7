"""The backtest engine on the shipped BTCUSDT 5m candles: determinism, idle-candle skipping changes
nothing, no look-ahead, funding from the shipped funding data, orders arriving after the configured
latency.

Two small LightGBM models are trained once for the module on the candles before the span (the
engine's own training helper), and the coordinator's cost model is zero with no minimum edge (as
``xylen demo --show-trades``) so that a one-day span trades and the order path is exercised.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import sqlite3
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest import metrics, settings
from backtest.data import MarketHistory, history_of, load_candles
from backtest.ema import EmaCross, cross_signals
from backtest.engine import STAGES, Run, RunOptions, run_backtest
from backtest.result import BacktestResult
from backtest.votes import TrainSettings, VoteBook, trained_models
from coordinator.risk import AccountView
from coordinator.side import Side
from coordinator.snapshot import MarketSnapshot
from coordinator.storage.db import init_db
from paper_exchange.engine.models import FUNDING_INTERVAL_MS
from xylen.config import XylenConfig
from xylen.config.loader import parse_config

SYMBOL = "BTCUSDT"
START = "2024-03-05"
END = "2024-03-06"

pytestmark = pytest.mark.slow


def _ms(day: str) -> int:
    return int(pd.Timestamp(day, tz="UTC").value // 1_000_000)


@pytest.fixture(scope="module")
def candles(shared_data: Path) -> pd.DataFrame:
    frame, _ = load_candles(SYMBOL)
    return frame


@pytest.fixture(scope="module")
def history(candles: pd.DataFrame) -> MarketHistory:
    _, funding_dir = load_candles(SYMBOL)
    from backtest.data import load_funding_frame

    return history_of(candles, SYMBOL, _ms(START), _ms(END), funding=load_funding_frame(funding_dir, SYMBOL))


@pytest.fixture(scope="module")
def book(candles: pd.DataFrame, history: MarketHistory, tmp_path_factory: pytest.TempPathFactory) -> VoteBook:
    before = candles[candles["open_time"] < _ms(START) - 3_600_000].reset_index(drop=True)
    small = TrainSettings(rounds=20, folds=2, max_rows=8_000, seeds=(1, 2))
    return VoteBook(trained_models(before, history, tmp_path_factory.mktemp("models"), small))


def trading_config(book: VoteBook) -> XylenConfig:
    data = settings.default_config_data(SYMBOL)
    data["ensemble"] = {"quorum": 1, "min_edge": 0.0, "max_disagreement": 0.5}
    data["risk"].update(
        sizing="fixed_fraction",
        fixed_fraction=0.01,
        cooldown_after_loss_seconds=0.0,
        breaker_consecutive_losses=1000,
        daily_loss_limit_pct=50.0,
        max_orders_per_minute=100,
    )
    data["trading"] = {
        "horizon_minutes": 10,
        "entry": "market",
        "taker_fee_bps": 0.0,
        "maker_fee_bps": 0.0,
        "slippage_bps": 0.0,
    }
    return settings.with_models(parse_config(data), book.model_ids)


def run(config: XylenConfig, history: MarketHistory, book: VoteBook, **options: object) -> BacktestResult:
    return asyncio.run(run_backtest(config, history, votes=book, options=RunOptions(**options)))  # type: ignore[arg-type]


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.reset_index(drop=True)


def test_deterministic_and_skipping_idle_candles_changes_nothing(
    history: MarketHistory, book: VoteBook
) -> None:
    config = trading_config(book)
    first = run(config, history, book)
    again = run(config, history, book)
    full = run(config, history, book, skip_idle=False)
    assert len(first.trades) >= 3, "the span must trade for the comparison to mean anything"
    assert (first.decisions["action"] != "HOLD").sum() >= 3
    pd.testing.assert_frame_equal(comparable(first.decisions), comparable(again.decisions))
    pd.testing.assert_frame_equal(comparable(first.trades), comparable(again.trades))
    pd.testing.assert_frame_equal(comparable(first.equity), comparable(again.equity))
    # the order stages on every candle give the same decisions and trades
    pd.testing.assert_frame_equal(comparable(first.decisions), comparable(full.decisions))
    pd.testing.assert_frame_equal(comparable(first.trades), comparable(full.trades))
    assert set(first.trades["model_version"]) == {book.versions_at(history.first)}
    # timing the stages (the benchmark's figures) changes nothing either, and measures every stage
    timed = run(config, history, book, timing=True)
    pd.testing.assert_frame_equal(comparable(first.decisions), comparable(timed.decisions))
    pd.testing.assert_frame_equal(comparable(first.trades), comparable(timed.trades))
    assert set(timed.stage_us) == set(STAGES) and first.stage_us == {}
    assert all(timed.stage_us[s] > 0.0 for s in ("votes", "ensemble", "risk", "orders", "journal"))
    assert sum(timed.stage_us.values()) * len(timed.candles) / 1e6 < timed.meta["elapsed_s"]


STORED = ("snapshots", "model_predictions", "decisions", "outcomes", "trades", "risk_state", "risk_breakers")
# ids drawn at random by the order layer (a run's own, never the same twice)
RANDOM_IDS = {"decisions": "client_order_id", "trades": "intent_id"}


def _tables(db: Path) -> dict[str, list[tuple[object, ...]]]:
    """The journal's and the risk manager's tables of a run's database, row by row, in order, without
    the order layer's random ids."""
    conn = sqlite3.connect(db)
    try:
        out: dict[str, list[tuple[object, ...]]] = {}
        for table in STORED:
            cursor = conn.execute(f"SELECT * FROM {table}")  # nosec B608 # the test's own table names
            names = [d[0] for d in cursor.description]
            drop = names.index(RANDOM_IDS[table]) if table in RANDOM_IDS else -1
            out[table] = sorted(
                (tuple(v for k, v in enumerate(row) if k != drop) for row in cursor.fetchall()), key=repr
            )
        return out
    finally:
        conn.close()


def test_write_behind_stores_equal_the_live_ones(
    history: MarketHistory, book: VoteBook, tmp_path: Path
) -> None:
    """The backtest's write-behind journal and risk store and its ensemble without a store leave the
    same decisions, trades and rows as the live stores, which commit every beat."""
    config = trading_config(book)
    fast = run(config, history, book, work_dir=tmp_path / "fast")
    live = run(config, history, book, work_dir=tmp_path / "live", write_behind=False)
    assert len(fast.trades) >= 3, "the span must trade for the comparison to mean anything"
    pd.testing.assert_frame_equal(comparable(fast.decisions), comparable(live.decisions))
    pd.testing.assert_frame_equal(comparable(fast.trades), comparable(live.trades))
    pd.testing.assert_frame_equal(comparable(fast.equity), comparable(live.equity))
    ours, theirs = _tables(tmp_path / "fast" / "xylen.db"), _tables(tmp_path / "live" / "xylen.db")
    assert len(ours["snapshots"]) == len(fast.decisions) and len(ours["outcomes"]) >= len(fast.decisions) - 3
    init_db(tmp_path / "fresh.db").close()
    assert ours["trades"] and ours["risk_state"] != _tables(tmp_path / "fresh.db")["risk_state"]  # written
    for table, rows in theirs.items():
        assert ours[table] == rows, table


def test_no_look_ahead(candles: pd.DataFrame, history: MarketHistory, book: VoteBook) -> None:
    """Truncating the future at random cut points leaves every earlier decision unchanged."""
    config = trading_config(book)
    whole = run(config, history, book).decisions
    rng = random.Random(14)
    ot = history.open_time
    for _ in range(2):
        cut = rng.randrange(history.first + 20, history.stop - 20)
        # the candles after the cut do not exist at all: not in the venue, not in the features
        short = history_of(
            candles[candles["open_time"] < int(ot[cut])].reset_index(drop=True),
            SYMBOL,
            _ms(START),
            int(ot[cut]),
            funding=history.funding,
        )
        offset, size = history.first - short.first, len(short.candles)
        votes = VoteBook(
            [
                dataclasses.replace(
                    m, probs=m.probs[offset : offset + size], versions=m.versions[offset : offset + size]
                )
                for m in book.models
            ]
        )
        part = run(config, short, votes).decisions
        n = len(part)
        assert n == cut - history.first
        cols = [c for c in whole.columns if c != "outcome"]  # labels need the future by definition
        pd.testing.assert_frame_equal(comparable(part[cols]), comparable(whole[cols].iloc[:n]))


def test_funding_from_the_shipped_rates(history: MarketHistory) -> None:
    """The EMA reference held across funding times pays (or receives) the shipped rate's funding."""
    config = settings.load(None, SYMBOL)
    signals = cross_signals(history.candles["close"].to_numpy())
    result = asyncio.run(run_backtest(config, history, strategy=EmaCross(signals, Decimal("0.01"))))
    trades = result.trades
    assert history.funding is not None
    rates = dict(
        zip(
            history.funding["open_time"].to_numpy(np.int64) // FUNDING_INTERVAL_MS * FUNDING_INTERVAL_MS,
            history.funding["open"].to_numpy(np.float64),
            strict=True,
        )
    )
    crossed = 0
    for entry_ms, exit_ms, side, qty, price, funding in zip(
        trades["entry_ms"].astype(int), trades["exit_ms"].astype(int), trades["side"], trades["quantity"],
        trades["entry_price"], trades["funding_usd"], strict=True,
    ):  # fmt: skip
        first = (entry_ms // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS
        boundaries = list(range(first, exit_ms + 1, FUNDING_INTERVAL_MS))
        if not boundaries:
            assert funding == 0.0
            continue
        crossed += 1
        sign = 1.0 if side == "LONG" else -1.0
        expected = sum(sign * rates[b] * qty * price for b in boundaries)
        # paid on the mark at the funding time, not the entry price: within 2% of the move
        assert funding == pytest.approx(expected, rel=0.02)
    assert crossed >= 1
    # the venue's ledger before the span's last funding time (paid by the position still open at the end,
    # which is no closed trade) holds exactly the closed trades' funding
    before_end = result.equity[result.equity["ts"] < result.end_ms - 1]
    assert before_end["funding_usd"].iloc[-1] == pytest.approx(trades["funding_usd"].sum(), abs=1e-9)


@dataclasses.dataclass
class _Hold:
    """Buys ``quantity`` on the first candle and holds it to the end (its bracket half the price away:
    the live order path places none without one)."""

    quantity: Decimal
    name: str = "hold"

    async def on_candle(self, run: Run, i: int, snap: MarketSnapshot, account: AccountView) -> str:
        if i != run.history.first:
            return "HOLD"
        price = snap.mark_price
        await run.exchange.place_order(
            snap.symbol, Side.BUY, self.quantity, stop_loss=price / 2, take_profit=price * 3 / 2
        )
        return "LONG"


def test_buy_and_hold_pays_the_funding_the_venue_charges_a_held_long(history: MarketHistory) -> None:
    """The buy & hold baseline's funding, per unit held, is what the venue charged a long bought on
    the first candle and held through the span's settlements (00:00 excluded: it is the entry's,
    settled before the order arrives; 08:00 and 16:00 paid)."""
    config = settings.load(None, SYMBOL)
    qty = Decimal("0.05")
    held = asyncio.run(run_backtest(config, history, strategy=_Hold(qty)))
    assert held.funding is not None
    assert held.funding["funding_ms"].tolist() == [_ms(START) + 8 * 3_600_000, _ms(START) + 16 * 3_600_000]
    assert held.trades.empty and held.equity["position_qty"].iloc[-1] == pytest.approx(float(qty))
    venue_paid = held.equity["funding_usd"].to_numpy()
    bh = metrics.buy_and_hold(held)
    bh_qty = float(bh.trades["quantity"].iloc[0])
    per_unit = bh.equity["funding_usd"].to_numpy() / bh_qty
    assert venue_paid[-1] != 0.0
    # the same settlements at the same candles, on prices within the candle boundary's gap
    assert per_unit == pytest.approx(venue_paid / float(qty), rel=1e-3, abs=1e-9)
    without = asyncio.run(
        run_backtest(config, history, strategy=_Hold(qty), options=RunOptions(funding=False))
    )
    assert without.funding is None and without.equity["funding_usd"].iloc[-1] == 0.0


def test_a_liquidation_is_settled_at_the_venues_price_and_loss(candles: pd.DataFrame) -> None:
    """A long at 19x equity through the 2024-03-19 fall: the venue liquidates it.  The trade is the
    liquidation's (its price, its realised loss and fee), so the trades hold what the account lost;
    recorded at the entry price it would show a small loss beside an account down 90 %."""
    from backtest.data import load_funding_frame

    _, funding_dir = load_candles(SYMBOL)
    span = history_of(
        candles, SYMBOL, _ms("2024-03-18"), _ms("2024-03-21"), funding=load_funding_frame(funding_dir, SYMBOL)
    )
    data = settings.default_config_data(SYMBOL)
    data["exchange"] = {**data.get("exchange", {}), "leverage": 20}
    data["risk"] = {**data.get("risk", {}), "max_leverage": 20}
    result = asyncio.run(run_backtest(parse_config(data), span, strategy=_Hold(Decimal("2.8"))))
    (trade,) = result.trades.itertuples()
    assert trade.exit_reason == "liquidation" and trade.exit_price < trade.entry_price * 0.97
    final = result.equity["equity_usd"].iloc[-1]
    assert final < 0.2 * result.initial_equity_usd and result.equity["position_qty"].iloc[-1] == 0.0
    assert trade.pnl_usd == pytest.approx(final - result.initial_equity_usd, abs=1e-6)


def test_orders_reach_the_venue_after_the_configured_latency(history: MarketHistory) -> None:
    """With ``trading.latency_ms`` the decision's market orders fill that long after the candle's
    close, at the path's price then; without it, at the next candle's open."""
    from paper_exchange.feed import ReplayFeed

    feed = ReplayFeed({SYMBOL: history.candles})
    signals = cross_signals(history.candles["close"].to_numpy())
    signals[: history.first + 1] = 0
    step = history.step_ms
    entries = {}
    for latency in (0, 20_000):
        data = settings.default_config_data(SYMBOL)
        data["trading"] = {"slippage_bps": 0.0, "latency_ms": latency}
        result = asyncio.run(
            run_backtest(parse_config(data), history, strategy=EmaCross(signals.copy(), Decimal("0.01")))
        )
        assert result.costs.latency_ms == latency
        trades = result.trades
        assert len(trades) >= 5
        for entry_ms, price in zip(trades["entry_ms"].astype(int), trades["entry_price"], strict=True):
            assert entry_ms % step == latency, "filled at a candle's open plus the latency"
            expected = feed.price_at(SYMBOL, entry_ms)
            assert expected is not None and price == pytest.approx(expected, abs=0.1)  # the tick
        entries[latency] = trades
    # the same crossovers, each filled later and (on a moving path) at another price
    assert len(entries[0]) == len(entries[20_000])
    assert (entries[20_000]["entry_ms"].to_numpy() - entries[0]["entry_ms"].to_numpy() == 20_000).all()
    assert (entries[20_000]["entry_price"].to_numpy() != entries[0]["entry_price"].to_numpy()).any()


def test_a_cancelled_run_stops_within_a_few_candles_and_leaves_no_scratch(
    history: MarketHistory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's awaits never suspend (its venue is in-process), so the loop yields every
    ``YIELD_EVERY`` candles: a cancellation (what ``asyncio.run`` makes of Ctrl-C) stops it there,
    and closing the run removes its scratch databases."""
    from backtest import engine

    monkeypatch.setattr(engine, "_scratch_root", lambda: str(tmp_path))
    signals = cross_signals(history.candles["close"].to_numpy())
    seen: list[int] = []

    async def cancel_early() -> None:
        task: asyncio.Task[BacktestResult] | None = None

        def progress(done: int, total: int) -> None:
            seen.append(done)
            if task is not None:  # at the first candle
                task.cancel()

        options = RunOptions(progress=progress)
        strategy = EmaCross(signals, Decimal("0.01"))
        task = asyncio.create_task(
            run_backtest(settings.load(None, SYMBOL), history, strategy=strategy, options=options)
        )
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_early())
    # the loop reports its first candle and its last: only the first came
    assert history.stop - history.first > engine.YIELD_EVERY and seen == [1]
    assert list(tmp_path.glob("xylen-backtest-*")) == []


def test_a_killed_run_s_scratch_folder_is_swept_by_the_next_run(
    history: MarketHistory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed before it cleaned up leaves its databases behind (in ``/dev/shm``: memory); the
    next run removes the folders whose owner is gone, and only those."""
    import subprocess
    import sys

    from backtest import engine

    monkeypatch.setattr(engine, "_scratch_root", lambda: str(tmp_path))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead_pid = int(gone.stdout)
    killed = tmp_path / "xylen-backtest-killed"
    killed.mkdir()
    (killed / "owner").write_text(f"{dead_pid}\n")
    (killed / "xylen.db").write_bytes(b"x" * 1000)
    running = tmp_path / "xylen-backtest-running"  # a run in another live process (this one's parent)
    running.mkdir()
    (running / "owner").write_text(f"{os.getppid()}\n")
    unowned = tmp_path / "xylen-backtest-unowned"  # no owner file: not ours to judge
    unowned.mkdir()
    signals = cross_signals(history.candles["close"].to_numpy())
    strategy = EmaCross(signals, Decimal("0.01"))
    result = asyncio.run(run_backtest(settings.load(None, SYMBOL), history, strategy=strategy))
    assert len(result.trades) > 0
    assert not killed.exists() and running.exists() and unowned.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["xylen-backtest-running", "xylen-backtest-unowned"]
