"""Closed intents reach the journal and the risk manager once: real paper exchange, real app.

A bracket's take-profit fires on the replay (a win), then a position closed at once by hand pays its
fees for nothing (a loss, exit reason ``close``).  Each is one ``trades`` row and one ``on_close``;
scanning again, a beat, and a restart on the same database count nothing twice.
"""

from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal
from pathlib import Path

from coordinator.exchange.schemas import Balance
from coordinator.orders import IntentStatus, OrderState, Side
from coordinator.tests.heartbeat_support import (
    STEP_MS,
    SYMBOL,
    built_heartbeat,
    intent_status,
    offline_app,
    paper_venue,
    venue_service,
)
from coordinator.tests.test_exchange_support import candles  # noqa: F401 - fixture
from coordinator.tests.test_manager_support import until
from xylen.paths import Home


def test_closed_intents_become_one_trade_and_one_risk_update_each(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)
    home = tmp_path / "home"

    async def scenario() -> None:
        async with paper_venue(service) as url:
            async with built_heartbeat(offline_app(url, home)) as hb:
                # a win: the replay rises through the take-profit within a few candles
                placed = await hb.exchange.place_order(
                    SYMBOL, Side.BUY, Decimal("0.01"), Decimal("44000"), Decimal("44400")
                )
                assert placed.entry.state is OrderState.FILLED
                win_id = placed.intent.intent_id
                for _ in range(60):
                    if intent_status(hb, win_id) is not IntentStatus.OPEN:
                        break
                    service.step_to(service.now_ms() + STEP_MS // 2)
                    await asyncio.sleep(0.05)
                await until(
                    lambda: intent_status(hb, win_id) is IntentStatus.CLOSED, what="take-profit fired"
                )
                hb.trades.settled.clear()  # the scan relies on the journal, not on memory
                trades = await hb.settle_trades()
                (win,) = trades
                assert win.intent_id == win_id and win.exit_reason == "take_profit" and win.side == "LONG"
                assert win.realised_pnl > 0 and win.exit_price > win.entry_price
                assert win.qty == Decimal("0.010")
                stats = hb.risk.statistics(hb.clock.now_ms())
                assert stats.trades == 1 and stats.wins == 1 and stats.losses == 0
                assert hb.risk.state.breakers.consecutive_losses == 0
                assert stats.daily_pnl == win.realised_pnl - win.fees

                # a loss: opened and closed at once, the fees are lost
                placed = await hb.exchange.place_order(
                    SYMBOL, Side.BUY, Decimal("0.01"), Decimal("40000"), Decimal("50000")
                )
                loss_id = placed.intent.intent_id
                closing = await hb.exchange.close_position(SYMBOL)
                assert closing is not None
                await until(lambda: intent_status(hb, loss_id) is IntentStatus.CLOSED, what="closed by hand")
                (loss,) = await hb.settle_trades()
                assert loss.intent_id == loss_id and loss.exit_reason == "close"
                assert loss.net_pnl < 0 and loss.fees > 0
                stats = hb.risk.statistics(hb.clock.now_ms())
                assert stats.trades == 2 and stats.wins == 1 and stats.losses == 1
                assert hb.risk.state.breakers.consecutive_losses == 1
                expected = win.realised_pnl + loss.realised_pnl - win.fees - loss.fees
                assert stats.daily_pnl == expected

                # scanning again and a beat count nothing twice
                assert await hb.settle_trades() == []
                hb.trades.settled.clear()
                assert await hb.settle_trades() == []
                await hb.beat()
                assert hb.risk.statistics(hb.clock.now_ms()).trades == 2

            # a restart on the same database: the risk state is restored, nothing is re-counted
            async with built_heartbeat(offline_app(url, home)) as hb:
                assert await hb.settle_trades() == []
                await hb.beat()
                stats = hb.risk.statistics(hb.clock.now_ms())
                assert stats.trades == 2 and stats.losses == 1
                assert stats.daily_pnl == expected

        conn = sqlite3.connect(Home(home).database)
        try:
            rows = conn.execute("SELECT intent_id, exit_reason FROM trades ORDER BY id").fetchall()
        finally:
            conn.close()
        assert rows == [(win_id, "take_profit"), (loss_id, "close")]

    asyncio.run(scenario())


def test_a_position_closed_outside_our_orders_is_settled_from_the_closing_fills(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    """Closed by another program (a market order that is none of ours), the position's trade takes its
    exit price, realised PnL and fee from that order's fill on the venue, not the entry price: the
    risk manager's daily PnL is what the account made."""
    service = venue_service(candles, tmp_path)
    home = tmp_path / "home"

    async def scenario() -> None:
        async with paper_venue(service) as url, built_heartbeat(offline_app(url, home)) as hb:
            placed = await hb.exchange.place_order(
                SYMBOL, Side.BUY, Decimal("0.01"), Decimal("40000"), Decimal("50000")
            )
            intent_id = placed.intent.intent_id
            service.step_to(service.now_ms() + 3 * STEP_MS)  # the price moves on
            before = _usdt(await hb.exchange.get_account_balance())
            by_hand = await hb.exchange.client.new_order(
                SYMBOL, "SELL", "MARKET", Decimal("0.01"), reduce_only=True, client_order_id="web_by_hand"
            )
            (fill,) = await hb.exchange.client.get_user_trades(SYMBOL, order_id=by_hand.orderId)
            store = hb.exchange.store
            assert store.find_by_exchange_id(SYMBOL, str(by_hand.orderId), id_kind="order") is None
            for _ in range(60):  # the order layer sees the flat position and closes the intent
                if intent_status(hb, intent_id) is IntentStatus.CLOSED:
                    break
                service.step_to(service.now_ms() + STEP_MS // 2)
                await asyncio.sleep(0.05)
            await until(lambda: intent_status(hb, intent_id) is IntentStatus.CLOSED, what="closed outside")
            (trade,) = await hb.settle_trades()
            assert trade.intent_id == intent_id and trade.exit_reason == "position_closed_outside"
            assert trade.exit_price == fill.price != trade.entry_price
            assert trade.realised_pnl == fill.realizedPnl != 0
            ours = store.orders_of_intent(intent_id)
            assert trade.fees == sum(f.commission for o in ours for f in o.fills) + fill.commission
            moved = _usdt(await hb.exchange.get_account_balance()) - before
            assert moved == fill.realizedPnl - fill.commission  # the account moved by that fill alone
            stats = hb.risk.statistics(hb.clock.now_ms())
            assert stats.trades == 1 and stats.daily_pnl == trade.realised_pnl - trade.fees

    asyncio.run(scenario())


def _usdt(balances: list[Balance]) -> Decimal:
    return next(b.balance for b in balances if b.asset == "USDT")
