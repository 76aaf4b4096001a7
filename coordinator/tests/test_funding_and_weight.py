"""Per-trade funding from the income history, and the used-weight gauge: real app, real paper exchange.

Funding: a long opened at 00:00 and closed by hand after the 08:00 funding time pays what the paper
exchange settled on it (real BTCUSDT funding rates), read back through ``GET /fapi/v1/income``; the
trade's ``funding`` and ``net_pnl`` and the risk manager's daily PnL all carry it.  Weight: after the
app's start-up requests, ``/metrics`` shows the ``X-MBX-USED-WEIGHT-1M`` the exchange last reported.
"""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal
from pathlib import Path

import aiohttp

from coordinator.orders import IntentStatus, OrderState, Side
from coordinator.tests.heartbeat_support import (
    KEY,
    START_MS,
    SYMBOL,
    built_heartbeat,
    offline_app,
    paper_venue,
    venue_service,
)
from coordinator.tests.test_exchange_support import candles  # noqa: F401 - fixture
from coordinator.tests.test_manager_support import until
from coordinator.trades import funding_possible
from paper_exchange.faults import FaultConfig, Faults
from paper_exchange.settings import TransportSettings
from paper_exchange.tests.test_transport_support import KEYS, running_app

H8 = 8 * 3_600_000


def test_a_trade_across_a_funding_time_logs_the_funding_it_paid(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with paper_venue(service) as url, built_heartbeat(offline_app(url, tmp_path / "home")) as hb:
            ex = hb.exchange
            placed = await ex.place_order(SYMBOL, Side.BUY, Decimal("0.01"), Decimal(30_000), Decimal(60_000))
            assert placed.entry.state is OrderState.FILLED
            intent_id = placed.intent.intent_id
            service.step_to(START_MS + H8 + 300_000)  # through the 08:00 funding
            (position,) = await ex.get_open_positions()
            assert position.positionAmt == Decimal("0.010")
            venue_funding = service.engine.account(KEY).funding
            assert venue_funding != 0  # the venue settled funding on our position
            income = await ex.client.get_income(SYMBOL, "FUNDING_FEE")
            assert [i.time for i in income] == [START_MS + H8]
            assert income[0].income == venue_funding and income[0].incomeType == "FUNDING_FEE"

            assert await ex.close_position(SYMBOL) is not None

            def closed() -> bool:
                intent = ex.store.get_intent(intent_id)
                return intent is not None and intent.status is IntentStatus.CLOSED

            await until(closed, what="closed by hand")
            (trade,) = await hb.settle_trades()
            assert trade.entry_ms <= START_MS + H8 <= trade.exit_ms
            assert trade.funding == -venue_funding  # paid is positive
            assert trade.net_pnl == trade.realised_pnl - trade.fees - trade.funding
            # the wallet moved by exactly the trade's net PnL
            account = service.engine.account(KEY)
            assert account.wallet - account.deposit == trade.net_pnl
            stats = hb.risk.statistics(hb.clock.now_ms())
            assert stats.daily_pnl == trade.net_pnl and stats.trades == 1
            logged = hb.journal.trades()
            assert [(t.intent_id, t.funding) for t in logged] == [(intent_id, trade.funding)]
            # a trade already logged costs no income request again
            hb.trades.settled.clear()
            before = ex.client.transport.sent["GET /fapi/v1/income"]
            assert await hb.settle_trades() == []
            assert ex.client.transport.sent["GET /fapi/v1/income"] == before

            # nor does one opened and closed between two hours (funding is settled on the hour)
            quick = await ex.place_order(SYMBOL, Side.BUY, Decimal("0.01"), Decimal(30_000), Decimal(60_000))
            assert await ex.close_position(SYMBOL) is not None
            await until(lambda: ex.store.get_intent(quick.intent.intent_id).status is IntentStatus.CLOSED)  # type: ignore[union-attr]
            (short,) = await hb.settle_trades()
            assert short.funding == 0 and short.net_pnl == short.realised_pnl - short.fees
            assert ex.client.transport.sent["GET /fapi/v1/income"] == before

    asyncio.run(scenario())


def test_a_trade_whose_stream_fills_were_lost_is_settled_from_user_trades(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    # the venue drops every ORDER_TRADE_UPDATE: the entry and the close are known FILLED from their
    # REST replies only, without fills, and nothing polls a final order's trades on its own
    service = venue_service(candles, tmp_path)
    faults = Faults(
        FaultConfig.model_validate({"ws_drop_rate": {"rate": 1.0, "events": ["ORDER_TRADE_UPDATE"]}})
    )
    settings = TransportSettings(api_keys=KEYS, port=0, tick_ms=20)

    async def scenario() -> None:
        async with (
            running_app(service, settings, faults=faults) as (url, _web),
            built_heartbeat(offline_app(url, tmp_path / "home")) as hb,
        ):
            ex = hb.exchange
            placed = await ex.place_order(SYMBOL, Side.BUY, Decimal("0.01"), Decimal(30_000), Decimal(60_000))
            assert placed.entry.state is OrderState.FILLED
            closing = await ex.close_position(SYMBOL)
            assert closing is not None and closing.state is OrderState.FILLED
            intent_id = placed.intent.intent_id
            await until(lambda: ex.store.get_intent(intent_id).status is IntentStatus.CLOSED)  # type: ignore[union-attr]
            entry = ex.store.get_order(placed.entry.client_order_id)
            assert entry is not None and entry.fills == ()  # the stream's fill never came
            (trade,) = await hb.settle_trades()
            assert trade.intent_id == intent_id and trade.qty == Decimal("0.010")
            assert trade.exit_reason == "close" and trade.fees > 0
            venue = {t.id: t for t in await ex.client.get_user_trades(SYMBOL)}
            assert trade.fees == sum((t.commission for t in venue.values()), Decimal(0))

    asyncio.run(scenario())


def test_funding_is_asked_for_only_when_an_hour_boundary_was_crossed() -> None:
    assert funding_possible(START_MS, START_MS)  # 00:00 is a funding time
    assert funding_possible(START_MS - 1, START_MS + 1)
    assert not funding_possible(START_MS + 1, START_MS + 3_599_999)
    assert funding_possible(START_MS + 1, START_MS + 3_600_000)


def test_the_used_weight_gauge_shows_the_last_reported_weight(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with paper_venue(service) as url:
            app = offline_app(url, tmp_path / "home")
            async with built_heartbeat(app):
                assert app.metrics_server is not None and app.exchange is not None
                limiter = app.exchange.client.transport.limiter
                timeout = aiohttp.ClientTimeout(total=5)
                async with (
                    aiohttp.ClientSession(timeout=timeout) as session,
                    session.get(f"http://127.0.0.1:{app.metrics_server.port}/metrics") as reply,
                ):
                    text = await reply.text()
                match = re.search(r"^xylen_rate_limit_weight_used (\S+)$", text, re.MULTILINE)
                assert match is not None, text
                assert limiter.used_weight is not None and limiter.used_weight > 0
                assert float(match.group(1)) == float(limiter.used_weight)

    asyncio.run(scenario())
