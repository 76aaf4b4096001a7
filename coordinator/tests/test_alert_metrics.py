"""The metrics the alert rules read, from a coordinator built on the REAL paper exchange.

``xylen_trading_halted``, ``xylen_daily_loss_limit_usd``, ``xylen_positions_unprotected``,
``xylen_reconciliation_differences_total`` and ``xylen_rate_limit_weight_limit`` are scraped from
the app's own ``/metrics`` over HTTP while a position is opened by hand (no stop: unprotected),
a halt request runs, and reconciliation finds differences.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from decimal import Decimal
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from coordinator.app import CoordinatorApp
from coordinator.metrics import Metrics
from coordinator.orders import OrderKind, OrderState, Side
from coordinator.orders.models import Order, OrderType
from coordinator.orders.monitor import unprotected_symbols
from coordinator.orders.reconcile import DIFFERENCE_KINDS
from coordinator.publish import daily_loss_limit
from coordinator.tests.heartbeat_support import (
    SYMBOL,
    built_heartbeat,
    offline_app,
    paper_venue,
    venue_service,
)
from coordinator.tests.test_exchange_support import candles  # noqa: F401 - fixture
from xylen.timeutil import wall_ms

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def _scrape(app: CoordinatorApp) -> Samples:
    assert app.metrics_server is not None
    url = f"http://127.0.0.1:{app.metrics_server.port}/metrics"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s, s.get(url) as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _samples(m: Metrics) -> Samples:
    return {
        (x.name, tuple(sorted(x.labels.items()))): x.value
        for family in text_string_to_metric_families(m.exposition().decode())
        for x in family.samples
    }


def test_helpers_set_and_read_at_scrape() -> None:
    m = Metrics()
    got = _samples(m)
    assert math.isnan(got[("xylen_daily_loss_limit_usd", ())])  # no 0 limit before the first beat
    assert got[("xylen_trading_halted", ())] == 0
    differences: Counter[str] = Counter({"stale_state": 0})
    weight = {"used": 120, "limit": 2400}
    unprotected = [0]
    m.watch_reconciliation(lambda: differences)
    m.watch_rate_limit(lambda: weight["used"], lambda: weight["limit"])
    m.watch_unprotected(lambda: unprotected[0])
    m.set_risk(True, 250.0)
    differences.update(["stale_state", "stale_state", "missing_fills"])
    weight["limit"], unprotected[0] = 1200, 2
    got = _samples(m)
    assert got[("xylen_trading_halted", ())] == 1 and got[("xylen_daily_loss_limit_usd", ())] == 250
    assert got[("xylen_reconciliation_differences_total", (("kind", "stale_state"),))] == 2
    assert got[("xylen_reconciliation_differences_total", (("kind", "missing_fills"),))] == 1
    assert (
        got[("xylen_rate_limit_weight_limit", ())] == 1200
        and got[("xylen_rate_limit_weight_used", ())] == 120
    )
    assert got[("xylen_positions_unprotected", ())] == 2
    m.set_halted(False)
    assert _samples(m)[("xylen_trading_halted", ())] == 0


def _stop(symbol: str, side: Side, state: OrderState) -> Order:
    return Order(
        "xy-test-s1", "intent-1", OrderKind.STOP_LOSS, 1, symbol, side, OrderType.STOP_MARKET, None, 0,
        trigger_price=Decimal(1), close_position=True, state=state,
    )  # fmt: skip


def test_unprotected_symbols_need_an_acknowledged_stop_on_the_closing_side() -> None:
    net = {"BTCUSDT": Decimal("0.01"), "ETHUSDT": Decimal("-0.5"), "SOLUSDT": Decimal(0)}
    live = [_stop("BTCUSDT", Side.SELL, OrderState.NEW), _stop("ETHUSDT", Side.SELL, OrderState.NEW)]
    assert unprotected_symbols(net, live) == ["ETHUSDT"]  # a SELL stop does not close a short
    live.append(_stop("ETHUSDT", Side.BUY, OrderState.SUBMITTED))
    assert unprotected_symbols(net, live) == ["ETHUSDT"]  # not acknowledged yet
    live.append(_stop("ETHUSDT", Side.BUY, OrderState.NEW))
    assert unprotected_symbols(net, live) == []
    assert unprotected_symbols(net, [_stop("BTCUSDT", Side.SELL, OrderState.CANCELED)]) == [
        "BTCUSDT",
        "ETHUSDT",
    ]


def test_alert_metrics_follow_the_coordinator(candles: Path, tmp_path: Path) -> None:  # noqa: F811
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with paper_venue(service) as url:
            app = offline_app(url, tmp_path / "home", trading=True)
            async with built_heartbeat(app) as hb:
                got = await _scrape(app)
                assert got[("xylen_rate_limit_weight_limit", ())] == 2400  # the venue's exchangeInfo
                kinds = {
                    k[1][0][1]: v for k, v in got.items() if k[0] == "xylen_reconciliation_differences_total"
                }
                assert set(kinds) == set(DIFFERENCE_KINDS) and not any(kinds.values())
                assert got[("xylen_positions_unprotected", ())] == 0

                await hb.beat()
                got = await _scrape(app)
                assert got[("xylen_trading_halted", ())] == 0
                limit = daily_loss_limit(hb.config, hb.risk.state.day_start_equity)
                assert limit > 0 and got[("xylen_daily_loss_limit_usd", ())] == limit

                # A position opened by hand: no intent, no stop of ours -> the sweep counts it.
                client = hb.exchange.client
                await client.new_order(SYMBOL, "BUY", "MARKET", Decimal("0.01"), client_order_id="manual-1")
                await hb.exchange.monitor.sweep()
                assert (await _scrape(app))[("xylen_positions_unprotected", ())] == 1

                # Reconciliation adopts it with an emergency stop: counted, and protected again.
                await hb.exchange.monitor.stop()
                result = await hb.exchange.reconciler.run()
                assert result.counts()["adopted_position"] + result.counts()["orphan_position"] == 1
                await hb.exchange.monitor.sweep()
                got = await _scrape(app)
                assert got[("xylen_positions_unprotected", ())] == 0
                counted = {
                    k[1][0][1]: v for k, v in got.items() if k[0] == "xylen_reconciliation_differences_total"
                }
                assert counted == {kind: float(result.counts()[kind]) for kind in DIFFERENCE_KINDS}

                # A halt request: the gauge turns 1 when the switch has run it, before any beat.
                switch = app.safety
                assert switch is not None
                switch.requests.request("drill", flatten=False, actor="test", now_ms=wall_ms())
                (done,) = await switch.check()
                assert done[1], done
                assert (await _scrape(app))[("xylen_trading_halted", ())] == 1
                await hb.beat()
                assert (await _scrape(app))[("xylen_trading_halted", ())] == 1

    asyncio.run(scenario())
