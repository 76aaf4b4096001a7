"""Maker entries (``trading.entry`` limit / maker_preferred) against the REAL paper exchange over HTTP.

The coordinator is the real app (instant clock, its order database, its heartbeat's
:class:`~coordinator.entries.EntryDesk`); the paper exchange replays real BTCUSDT candles and only
moves when a test steps it, so a resting maker order stays unfilled until the replay is stepped.
Timeouts are reached by advancing the coordinator's instant clock, never by sleeping (one test
uses an accelerated clock at x2000: 30 s of clock time is 15 ms).  Costs: taker 5 bps, maker 2
bps, slippage 1 bp on both sides (the coordinator's config and the paper exchange's defaults).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from coordinator.app import CoordinatorApp
from coordinator.clock import AcceleratedClock, InstantClock
from coordinator.ensemble.ev import Costs
from coordinator.ensemble.resolve import DecisionParams, bracket_ev_bps
from coordinator.ensemble.types import Action, Decision, Market
from coordinator.entries import EntryContext, EntryDesk, EntryResult, EntryStatus, taker_ev_bps
from coordinator.heartbeat import Heartbeat
from coordinator.orders import IntentStatus, OrderKind, OrderState, OrderType, Side
from coordinator.orders.brackets import latest_legs
from coordinator.orders.manager import SymbolBusy
from coordinator.risk.manager import RiskResult
from coordinator.tests.heartbeat_support import (
    STEP_MS,
    SYMBOL,
    built_heartbeat,
    offline_app,
    paper_venue,
    venue_service,
)
from coordinator.tests.test_exchange_support import candles  # noqa: F401 - fixture
from coordinator.tests.test_manager_support import until
from paper_exchange.service import PaperExchangeService
from xylen.config.schema import TradingConfig

ORDER = "POST /fapi/v1/order"
CENT = Decimal("0.01")


def _app(url: str, home: Path, entry: str = "maker_preferred", trading: bool = True) -> CoordinatorApp:
    costs = {"taker_fee_bps": 5.0, "maker_fee_bps": 2.0, "slippage_bps": 1.0}
    return offline_app(url, home, trading=trading, entry=entry, maker_timeout_seconds=30.0, **costs)


@contextlib.asynccontextmanager
async def _on_venue(
    service: PaperExchangeService, home: Path, entry: str = "maker_preferred", trading: bool = True
) -> AsyncIterator[Heartbeat]:
    """A built heartbeat of the real app, on the paper exchange ``service`` served over HTTP."""
    async with paper_venue(service) as url, built_heartbeat(_app(url, home, entry, trading)) as hb:
        yield hb


def _instant(hb: Heartbeat) -> InstantClock:
    assert isinstance(hb.clock, InstantClock)
    return hb.clock


def _sent(hb: Heartbeat) -> int:
    return hb.exchange.client.transport.sent[ORDER]


async def _enter(
    desk: EntryDesk,
    mark: Decimal,
    *,
    side: Side = Side.BUY,
    qty: str = "0.01",
    p: float = 0.7,
    width: Decimal = Decimal("0.03"),
    style: str | None = None,
) -> EntryResult:
    """An entry with a bracket ``width`` around ``mark`` and a decision probability ``p``."""
    sign = 1 if side is Side.BUY else -1
    stop = (mark * (1 - sign * width)).quantize(CENT)
    take = (mark * (1 + sign * width)).quantize(CENT)
    context = EntryContext(probability=p, decision_ms=desk.clock.now_ms())
    return await desk.enter(
        SYMBOL,
        side,
        Decimal(qty),
        stop,
        take,
        context=context,
        last_price=mark,
        style=style,  # type: ignore[arg-type]
    )


def _state(hb: Heartbeat, cid: str) -> OrderState:
    order = hb.exchange.store.get_order(cid)
    assert order is not None
    return order.state


def _intent_status(hb: Heartbeat, intent_id: str) -> IntentStatus:
    intent = hb.exchange.store.get_intent(intent_id)
    assert intent is not None
    return intent.status


def test_the_beat_sends_an_approved_entry_in_the_configured_style(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with _on_venue(service, tmp_path / "home", trading=True) as hb:
            snap = (await hb.market.snapshot_all(hb.clock.now_ms()))[SYMBOL]
            account = hb._account_view(*await hb._account())
            price = float(snap.last_price)
            decision = Decision(
                timestamp_ms=snap.close_time_ms, action=Action.LONG, probability=0.7, confidence=0.7,
                expected_value_bps=50.0, size_fraction=0.1, stop_loss=price * 0.97,
                take_profit=price * 1.03, votes=(), reasons=(), disagreement=0.0,
            )  # fmt: skip
            approved = RiskResult(True, Decimal("0.01"))
            placement, _note = await hb._order(snap, Side.BUY, approved, account, decision)
            assert placement is not None and placement.entry.type is OrderType.LIMIT
            cid = placement.entry.client_order_id
            on_venue = await hb.exchange.client.get_order(SYMBOL, client_order_id=cid)
            assert on_venue.timeInForce == "GTX" and on_venue.status == "NEW"
            row = hb.entries.get(cid)
            assert row is not None and row.style == "maker_preferred"
            assert row.context.probability == 0.7 and row.context.funding_rate == snap.funding_rate
            again, note = await hb._order(snap, Side.BUY, approved, account, decision)
            assert again is None and note == "position or intent already open"
            assert _sent(hb) == 1

    asyncio.run(scenario())


def test_maker_entry_rests_at_the_bid_fills_as_maker_and_gets_its_bracket(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with _on_venue(service, tmp_path / "home", entry="limit") as hb:
            ex = hb.exchange
            mark = await ex.mark_price(SYMBOL)
            book = await ex.book_ticker(SYMBOL)
            result = await _enter(hb.entries, mark)
            placement, row = result.placement, result.maker
            assert placement is not None and row is not None and row.status is EntryStatus.PENDING
            assert placement.entry.type is OrderType.LIMIT and placement.entry.state is OrderState.NEW
            assert placement.entry.price == book.bidPrice < mark  # at the touch, passive
            cid = placement.entry.client_order_id
            on_venue = await ex.client.get_order(SYMBOL, client_order_id=cid)
            assert on_venue.timeInForce == "GTX" and on_venue.price == book.bidPrice
            assert row.deadline_ms - row.created_ms == 30_000 and row.created_ms == hb.clock.now_ms()
            # the symbol is busy while the entry rests
            with pytest.raises(SymbolBusy):
                await _enter(hb.entries, mark)
            assert await hb.entries.check() == []  # before the deadline: nothing to do

            for _ in range(30):  # the replay's path comes down to the bid within a candle or two
                service.step_to(service.now_ms() + STEP_MS // 3)
                await asyncio.sleep(0.05)
                if _state(hb, cid) is OrderState.FILLED:
                    break
            await until(lambda: _state(hb, cid) is OrderState.FILLED, what="maker entry filled")
            entry = ex.store.get_order(cid)
            assert entry is not None and all(f.maker for f in entry.fills) and entry.fills
            assert all(f.price == book.bidPrice for f in entry.fills)
            fee = sum((f.commission for f in entry.fills), Decimal(0))
            assert fee == (book.bidPrice * Decimal("0.010") * Decimal("0.0002")).quantize(Decimal("1e-8"))

            def bracketed() -> bool:
                legs = latest_legs(ex.store.orders_of_intent(placement.intent.intent_id))
                return all(
                    k in legs and legs[k].state is OrderState.NEW
                    for k in (OrderKind.STOP_LOSS, OrderKind.TAKE_PROFIT)
                )

            await until(bracketed, what="stop and take-profit placed")
            (settled,) = await hb.entries.check()
            assert settled.status is EntryStatus.FILLED
            assert hb.entries.get(cid) == settled
            assert _intent_status(hb, placement.intent.intent_id) is IntentStatus.OPEN
            assert _sent(hb) == 1  # only the maker order

    asyncio.run(scenario())


def test_timeout_without_a_fill_falls_back_to_market_when_the_taker_ev_is_positive(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with _on_venue(service, tmp_path / "home") as hb:
            ex = hb.exchange
            mark = await ex.mark_price(SYMBOL)
            result = await _enter(hb.entries, mark, p=0.7)
            assert result.placement is not None and result.maker is not None
            maker = result.placement
            cid = maker.entry.client_order_id
            _instant(hb).advance(29_999)
            assert await hb.entries.check() == []
            assert _state(hb, cid) is OrderState.NEW

            _instant(hb).advance(1)  # the deadline: the beat's check enforces it
            await hb.beat()
            row = hb.entries.get(cid)
            assert row is not None and row.status is EntryStatus.FALLBACK, row
            assert "taker EV" in row.note and row.fallback_client_order_id is not None
            assert _state(hb, cid) is OrderState.CANCELED
            venue_order = await ex.client.get_order(SYMBOL, client_order_id=cid)
            assert venue_order.status == "CANCELED"
            assert _intent_status(hb, maker.intent.intent_id) is IntentStatus.CANCELED
            market = ex.store.get_order(row.fallback_client_order_id)
            assert market is not None and market.type is OrderType.MARKET
            assert market.state is OrderState.FILLED and not any(f.maker for f in market.fills)
            assert _intent_status(hb, market.intent_id) is IntentStatus.OPEN
            fallback_intent = ex.store.get_intent(market.intent_id)
            assert fallback_intent is not None and fallback_intent.qty == Decimal("0.010")
            assert fallback_intent.stop_price == maker.intent.stop_price
            (position,) = await ex.get_open_positions()
            assert position.positionAmt == Decimal("0.010")
            assert _sent(hb) == 2  # the maker order and the market order, nothing else
            assert await hb.entries.check() == []  # settled once

    asyncio.run(scenario())


def test_timeout_is_abandoned_when_the_edge_only_covered_maker_costs(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with _on_venue(service, tmp_path / "home") as hb:
            ex = hb.exchange
            mark = await ex.mark_price(SYMBOL)
            # a symmetric 1% bracket and p = 0.55: +10 bps gross, -8 maker costs, -12 taker costs
            params = hb.ensemble.params
            assert params.costs_bps == Costs.from_trading(hb.config.trading).total_bps == 8.0
            stop, take = float(mark) * 0.99, float(mark) * 1.01
            at_mark = Market(timestamp_ms=hb.clock.now_ms(), price=float(mark))
            assert bracket_ev_bps(0.55, True, stop, take, at_mark, params) > 0  # it would trade
            taker = dataclasses.replace(params, costs_bps=Costs.taker(hb.config.trading).total_bps)
            assert bracket_ev_bps(0.55, True, stop, take, at_mark, taker) <= 0

            result = await _enter(hb.entries, mark, p=0.55, width=Decimal("0.01"))
            assert result.placement is not None
            cid = result.placement.entry.client_order_id
            _instant(hb).advance(31_000)
            (row,) = await hb.entries.check()
            assert row.client_order_id == cid and row.status is EntryStatus.ABANDONED, row
            assert "EV" in row.note and "<= 0" in row.note and row.fallback_client_order_id is None
            assert _state(hb, cid) is OrderState.CANCELED
            assert _intent_status(hb, result.placement.intent.intent_id) is IntentStatus.CANCELED
            assert _sent(hb) == 1 and await ex.get_open_positions() == []

    asyncio.run(scenario())


class _StaleQuote(EntryDesk):
    """A desk whose quote went stale: it prices a BUY at the ask (the price moved between the book
    and the order).  Not a mock of the venue: the real paper exchange refuses the post-only order."""

    async def touch_price(self, symbol: str, side: Side, last_price: Decimal) -> Decimal:
        book = await self.exchange.book_ticker(symbol)
        return book.askPrice if side is Side.BUY else book.bidPrice


def test_a_post_only_entry_that_would_take_is_no_trade_for_limit_and_a_checked_fallback_otherwise(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with _on_venue(service, tmp_path / "home", entry="limit") as hb:
            ex = hb.exchange
            stale = _StaleQuote(ex, hb.clock, lambda: hb.config.trading, lambda: hb.ensemble.params)
            stale.guard(lambda: hb.risk, lambda: hb.config, hb.entries.gate)
            mark = await ex.mark_price(SYMBOL)

            limit = await _enter(stale, mark)
            assert limit.placement is not None and limit.placement.rejected
            assert limit.placement.reason.startswith("-5022")
            assert limit.maker is not None and limit.maker.status is EntryStatus.UNFILLED
            assert limit.note.startswith("no trade this beat") and "would take" in limit.note
            assert _intent_status(hb, limit.placement.intent.intent_id) is IntentStatus.CANCELED
            assert _sent(hb) == 1 and await ex.get_open_positions() == []

            # maker_preferred: a taker EV <= 0 -> nothing more is sent ...
            poor = await _enter(stale, mark, p=0.55, width=Decimal("0.01"), style="maker_preferred")
            assert poor.maker is not None and poor.maker.status is EntryStatus.ABANDONED
            assert "would take" in poor.note and "<= 0" in poor.note and _sent(hb) == 2
            # ... a taker EV > 0 -> a market entry at once
            good = await _enter(stale, mark, p=0.7, style="maker_preferred")
            assert good.maker is not None and good.maker.status is EntryStatus.FALLBACK
            assert good.placement is not None and good.placement.entry.type is OrderType.MARKET
            assert good.placement.entry.state is OrderState.FILLED and _sent(hb) == 4
            assert good.maker.fallback_client_order_id == good.placement.entry.client_order_id

    asyncio.run(scenario())


def test_partial_fill_then_timeout_keeps_the_filled_part_bracketed(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    # 400 BTC at the bid: the paper exchange fills a resting order by at most 10% of each leg's volume
    service = venue_service(candles, tmp_path, balance=Decimal(100_000_000))

    async def scenario() -> None:
        async with _on_venue(service, tmp_path / "home") as hb:
            ex = hb.exchange
            mark = await ex.mark_price(SYMBOL)
            result = await _enter(hb.entries, mark, qty="400", p=0.7)
            assert result.placement is not None and result.placement.entry.state is OrderState.NEW
            cid = result.placement.entry.client_order_id
            for _ in range(30):
                service.step_to(service.now_ms() + STEP_MS // 3)
                await asyncio.sleep(0.05)
                if _state(hb, cid) is OrderState.PARTIALLY_FILLED:
                    break
            await until(lambda: _state(hb, cid) is OrderState.PARTIALLY_FILLED, what="a partial fill")
            _instant(hb).advance(30_000)
            (row,) = await hb.entries.check()
            assert row.status is EntryStatus.PARTIAL and row.fallback_client_order_id is None, row
            entry = ex.store.get_order(cid)
            assert entry is not None and entry.state is OrderState.CANCELED
            assert Decimal(0) < entry.executed_qty < Decimal(400)
            venue_order = await ex.client.get_order(SYMBOL, client_order_id=cid)
            assert venue_order.status == "CANCELED" and venue_order.executedQty == entry.executed_qty
            intent_id = result.placement.intent.intent_id
            assert _intent_status(hb, intent_id) is IntentStatus.OPEN
            (position,) = await ex.get_open_positions()
            assert position.positionAmt == entry.executed_qty
            # closePosition legs: they cover the filled quantity, whatever it is
            legs = latest_legs(ex.store.orders_of_intent(intent_id))
            open_algos = {a.clientAlgoId: a for a in await ex.client.get_open_algo_orders(SYMBOL)}
            for kind in (OrderKind.STOP_LOSS, OrderKind.TAKE_PROFIT):
                leg = legs[kind]
                assert leg.state is OrderState.NEW and leg.close_position
                assert open_algos[leg.client_order_id].closePosition
            assert _sent(hb) == 1  # no fallback for a partial fill

    asyncio.run(scenario())


def test_a_restart_during_a_pending_maker_entry_enforces_its_stored_deadline(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)
    home = tmp_path / "home"

    async def scenario() -> None:
        async with paper_venue(service) as url:
            app = _app(url, home)
            async with built_heartbeat(app) as hb:
                mark = await hb.exchange.mark_price(SYMBOL)
                result = await _enter(hb.entries, mark, p=0.7)
                assert result.maker is not None and result.placement is not None
                cid, created = result.placement.entry.client_order_id, result.maker.created_ms
                _instant(hb).advance(20_000)  # 20 s of the 30 pass before the coordinator dies
                await _die(app)

            async with built_heartbeat(_app(url, home)) as hb:
                clock = _instant(hb)
                clock.set(created + 20_000)  # the restarted clock reads the venue's time again
                (pending,) = hb.entries.pending()
                assert pending.client_order_id == cid and pending.deadline_ms == created + 30_000
                assert _state(hb, cid) is OrderState.NEW  # reconciled: still resting on the venue
                with pytest.raises(SymbolBusy):
                    await _enter(hb.entries, mark)
                await hb.beat()  # 10 s before the deadline: still pending
                assert hb.entries.get(cid).status is EntryStatus.PENDING  # type: ignore[union-attr]
                clock.advance(10_000)
                await hb.beat()
                row = hb.entries.get(cid)
                assert row is not None and row.status is EntryStatus.FALLBACK, row
                assert _state(hb, cid) is OrderState.CANCELED
                market = hb.exchange.store.get_order(row.fallback_client_order_id or "")
                assert market is not None and market.state is OrderState.FILLED
                (position,) = await hb.exchange.get_open_positions()
                assert position.positionAmt == Decimal("0.010")

    asyncio.run(scenario())


async def _die(app: CoordinatorApp) -> None:
    """The coordinator's exchange side ends as a killed process's does: its tasks and connections
    stop, but nothing is done to its orders (no shutdown protection pass)."""
    exchange = app.exchange
    assert exchange is not None
    app.exchange = None  # the app's shutdown then leaves the venue alone
    await exchange.monitor.stop()
    await exchange.client.close()
    exchange.store.close()


def test_a_graceful_stop_cancels_a_pending_maker_entry_and_the_restart_abandons_it(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    """Filled while no coordinator runs, a resting entry would open a position without a stop: a
    graceful stop cancels it, and the restarted coordinator sends no market fallback for it."""
    service = venue_service(candles, tmp_path)
    home = tmp_path / "home"

    async def scenario() -> None:
        async with paper_venue(service) as url:
            async with built_heartbeat(_app(url, home)) as hb:
                mark = await hb.exchange.mark_price(SYMBOL)
                result = await _enter(hb.entries, mark, p=0.7)
                assert result.maker is not None and result.placement is not None
                cid, created = result.placement.entry.client_order_id, result.maker.created_ms
                _instant(hb).advance(20_000)

            async with built_heartbeat(_app(url, home)) as hb:
                clock = _instant(hb)
                clock.set(created + 20_000)
                assert _state(hb, cid) is OrderState.CANCELED  # cancelled on the venue at the stop
                await hb.beat()
                row = hb.entries.get(cid)
                assert row is not None and row.status is EntryStatus.ABANDONED, row
                assert row.fallback_client_order_id is None
                assert await hb.exchange.get_open_positions() == []
                assert hb.entries.pending() == []

    asyncio.run(scenario())


def test_an_accelerated_clock_times_the_entry_out_without_a_beat(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with _on_venue(service, tmp_path / "home", entry="limit") as hb:
            clock = AcceleratedClock(2000.0, start_ms=hb.clock.now_ms())
            desk = EntryDesk(hb.exchange, clock, lambda: hb.config.trading, lambda: hb.ensemble.params)
            desk.guard(lambda: hb.risk, lambda: hb.config, hb.entries.gate)
            mark = await hb.exchange.mark_price(SYMBOL)
            result = await _enter(desk, mark)
            assert result.placement is not None
            cid = result.placement.entry.client_order_id

            def settled() -> bool:
                row = desk.get(cid)
                return row is not None and row.status is EntryStatus.UNFILLED

            await until(settled, timeout_s=5.0, what="the watcher cancelled the entry")
            row = desk.get(cid)
            assert row is not None and row.resolved_ms is not None
            assert row.resolved_ms >= row.deadline_ms  # not before its 30 s of clock time
            assert _state(hb, cid) is OrderState.CANCELED and _sent(hb) == 1
            await desk.close()

    asyncio.run(scenario())


def test_taker_ev_uses_the_price_a_market_order_pays_and_refuses_a_crossed_bracket() -> None:
    trading = TradingConfig(taker_fee_bps=5.0, maker_fee_bps=2.0, slippage_bps=1.0)
    params = dataclasses.replace(_params(), costs_bps=Costs.from_trading(trading).total_bps)
    ctx = EntryContext(probability=0.6, decision_ms=0)
    args = (params, trading, ctx, Side.BUY)
    at_100 = taker_ev_bps(*args, Decimal(100), Decimal(99), Decimal(101), 0)
    higher = taker_ev_bps(*args, Decimal("100.5"), Decimal(99), Decimal(101), 0)
    assert higher < at_100  # less left to win, more to lose
    market = Market(timestamp_ms=0, price=100.0)
    taker = dataclasses.replace(params, costs_bps=12.0)
    assert at_100 == bracket_ev_bps(0.6, True, 99.0, 101.0, market, taker)
    assert taker_ev_bps(*args, Decimal("101.5"), Decimal(99), Decimal(101), 0) == float("-inf")


def _params() -> DecisionParams:
    return DecisionParams(
        quorum=1,
        min_edge=0.0,
        max_disagreement=0.5,
        costs_bps=0.0,
        horizon_ms=600_000,
        stop_atr_multiple=1.5,
        take_profit_atr_multiple=2.0,
        bracket_odds=True,
    )
