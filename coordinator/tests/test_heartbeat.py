"""The clock, the incremental snapshot and the beat against the real paper exchange and model servers."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from coordinator.app import CoordinatorApp
from coordinator.clock import AcceleratedClock, InstantClock, WallClock, make_clock
from coordinator.exchange.errors import FatalError
from coordinator.snapshot import MarketData
from coordinator.tests.heartbeat_support import (
    KEY,
    SECRET,
    STEP_MS,
    SYMBOL,
    coordinator_config,
    model_servers,
    paper_venue,
    venue_service,
)
from coordinator.tests.test_exchange_support import candles  # noqa: F401 - fixture
from model_server.tests.server_support import TOKEN, ServerProcess
from xylen.config import parse_config
from xylen.config.schema import HeartbeatConfig
from xylen.config.secrets import Secrets
from xylen.features import latest_row
from xylen.paths import Home


@pytest.fixture(scope="module")
def servers(btc_5m_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    with model_servers(btc_5m_path, tmp_path_factory.mktemp("servers")) as procs:
        yield procs


def _secrets(secret: str = SECRET) -> Secrets:
    return Secrets(paper_api_key=KEY, paper_api_secret=secret, model_token=TOKEN)  # type: ignore[arg-type]


def test_clocks() -> None:
    async def scenario() -> None:
        instant = InstantClock(1_000)
        t0 = time.monotonic()
        await instant.sleep(3600)
        await instant.sleep_until(10_000_000)
        assert instant.now_ms() == 10_000_000 and time.monotonic() - t0 < 0.1
        await instant.sleep_until(5)  # never backwards
        assert instant.now_ms() == 10_000_000
        fast = AcceleratedClock(1000.0, start_ms=0)
        t0 = time.monotonic()
        await fast.sleep(100)  # 100 clock seconds = 0.1 s
        assert 0.09 < time.monotonic() - t0 < 0.5
        assert fast.now_ms() >= 100_000 and fast.wall_seconds(300) == 0.3
        assert abs(WallClock().now_ms() - time.time() * 1000) < 1000

    asyncio.run(scenario())
    assert isinstance(make_clock(HeartbeatConfig(clock="instant"), 7), InstantClock)
    assert make_clock(HeartbeatConfig(clock="instant"), 7).now_ms() == 7
    assert isinstance(make_clock(HeartbeatConfig(clock="accelerated", speed=60)), AcceleratedClock)
    assert isinstance(make_clock(HeartbeatConfig()), WallClock)


def test_snapshot_is_incremental_and_equals_a_full_fetch(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
    servers: list[ServerProcess],
) -> None:
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with paper_venue(service) as url:
            app = CoordinatorApp(
                parse_config(coordinator_config(url, servers)), Home(tmp_path / "h"), secrets=_secrets()
            )
            hb = await app._build()
            try:
                market = MarketData(hb.exchange.client, [SYMBOL], "5m", 1000)
                first = await market.snapshot(SYMBOL, 0)
                assert first.candle_count == 1000 and first.new_candles == 1000
                assert first.close_time_ms < first.server_ms  # closed candles only
                assert first.close_time_ms == service.now_ms() - 1  # the newest closed one
                for _ in range(3):
                    service.step_to(service.now_ms() + STEP_MS)
                second = await market.snapshot(SYMBOL, 0)
                assert second.new_candles == 3 and second.candle_count == 1000
                fresh = MarketData(hb.exchange.client, [SYMBOL], "5m", 1000)
                full = await fresh.snapshot(SYMBOL, 0)
                a, b = market.tails[SYMBOL], fresh.tails[SYMBOL]
                assert np.array_equal(a.open_time, b.open_time)
                for name, column in a.columns.items():
                    assert np.array_equal(column, b.columns[name])
                assert second.features == full.features
                expected = latest_row(b.arrays(), "5m", history=1000)
                assert second.features["rsi_14"] == pytest.approx(expected["rsi_14"])
                assert len(second.candles) == 100 and second.candles[-1][4] == second.close
            finally:
                await app._shutdown()

    asyncio.run(scenario())


def test_beat_with_trading_disabled_logs_only_and_feeds_outcomes_back(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
    servers: list[ServerProcess],
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = venue_service(candles, tmp_path)
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        async with paper_venue(service) as url:
            config = parse_config(coordinator_config(url, servers, trading=False))
            app = CoordinatorApp(config, Home(tmp_path / "h"), secrets=_secrets())
            hb = await app._build()
            hb.retrain_batch = 1
            try:
                reports = []
                # 14 beats of 5 min: the ensemble labels at the config's 10 min, each server at its
                # model's own label horizon (12 bars, from its /health): decisions 1-2 reach it
                for _ in range(14):
                    reports.append(await hb.beat())
                    service.step_to(service.now_ms() + STEP_MS)
                    assert isinstance(hb.clock, InstantClock)
                    hb.clock.advance(STEP_MS)
                await hb.close()
                assert all(r.symbols[SYMBOL].placement is None for r in reports)
                traded = [r.symbols[SYMBOL] for r in reports if r.symbols[SYMBOL].decision.is_trade]
                assert traded and all(
                    t.note in {"trading disabled", ""} or "trading" in t.note for t in traded
                )
                assert sum(r.outcomes for r in reports) == 12  # 10 min: beats 1-12 labelled by 3-14
                assert hb.exchange.store.live_orders() == []
                for server in config.model_servers:  # outcomes outside the no-trade band (0 here)
                    assert f"sent 1 outcomes to {server.id} for retraining; failed: none" in caplog.text
            finally:
                await app._shutdown()
        conn = sqlite3.connect(tmp_path / "h" / "xylen.db")
        try:
            rows = conn.execute("SELECT risk_approved, risk_reasons FROM decisions").fetchall()
            assert len(rows) == 14
            assert all("trading_disabled" in (r[1] or "") for r in rows if r[0] is not None)
            assert conn.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0] == 12
            assert conn.execute("SELECT COUNT(*) FROM equity").fetchone()[0] == 14
        finally:
            conn.close()

    asyncio.run(scenario())


def test_failed_beats_are_counted_and_the_loop_goes_on_fatal_stops(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
    servers: list[ServerProcess],
) -> None:
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with paper_venue(service) as url:
            config = parse_config(coordinator_config(url, servers))
            app = CoordinatorApp(config, Home(tmp_path / "h"), secrets=_secrets())
            hb = await app._build()
            try:
                hb.market = MarketData(hb.exchange.client, ["NOPEUSDT"], "5m", 1000)  # the venue refuses it
                await hb.run(beats=3)
                assert hb.failed_beats == 3 and hb.beats == 3
            finally:
                await app._shutdown()
            bad = CoordinatorApp(config, Home(tmp_path / "bad"), secrets=_secrets("wrong-secret"))
            with pytest.raises(FatalError):
                await bad.run()

    asyncio.run(scenario())
