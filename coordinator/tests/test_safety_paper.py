"""Safety switches against the REAL paper exchange over HTTP, with the real app's parts.

Halt and flatten (:mod:`coordinator.safety`), their triggers, the ``xylen risk halt`` command, the
entry guards (halted risk manager, decision age) and the one-way position mode check.  The
coordinator is built by :class:`~coordinator.app.CoordinatorApp` (instant clock, its own SQLite);
the paper exchange replays real BTCUSDT candles.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from coordinator.app import CoordinatorApp
from coordinator.entries import EntryContext, EntryResult, EntryStatus
from coordinator.exchange.facade import PositionModeError
from coordinator.heartbeat import Heartbeat
from coordinator.orders import OrderKind, OrderState, Side
from coordinator.orders.brackets import latest_legs
from coordinator.risk.breakers import BreakerKind
from coordinator.safety import SafetySwitch
from coordinator.storage.home_lock import HomeLock
from coordinator.tests.heartbeat_support import (
    KEY,
    SECRET,
    SYMBOL,
    built_heartbeat,
    offline_app,
    paper_venue,
    venue_service,
)
from coordinator.tests.test_exchange_support import candles  # noqa: F401 - fixture
from coordinator.tests.test_manager_support import until
from paper_exchange.service import PaperExchangeService
from xylen.cli import risk as risk_cli
from xylen.paths import Home
from xylen.timeutil import wall_ms

CENT = Decimal("0.01")
ORDER = "POST /fapi/v1/order"


@contextlib.asynccontextmanager
async def _coordinator(
    service: PaperExchangeService, home: Path, *, entry: str = "market", **trading: object
) -> AsyncIterator[tuple[CoordinatorApp, Heartbeat]]:
    async with paper_venue(service) as url:
        app = offline_app(url, home, trading=True, entry=entry, maker_timeout_seconds=30.0, **trading)
        async with built_heartbeat(app) as hb:
            yield app, hb


def _switch(app: CoordinatorApp) -> SafetySwitch:
    assert app.safety is not None
    return app.safety


async def _bracketed_position(hb: Heartbeat) -> str:
    """A filled MARKET long with its stop and take-profit live; returns the intent id."""
    ex = hb.exchange
    mark = await ex.mark_price(SYMBOL)
    stop, take = (mark * Decimal("0.97")).quantize(CENT), (mark * Decimal("1.03")).quantize(CENT)
    placement = await ex.place_order(SYMBOL, Side.BUY, Decimal("0.01"), stop, take)
    assert placement.entry.state is OrderState.FILLED
    intent = placement.intent.intent_id

    def bracketed() -> bool:
        legs = latest_legs(ex.store.orders_of_intent(intent))
        return all(
            k in legs and legs[k].state is OrderState.NEW
            for k in (OrderKind.STOP_LOSS, OrderKind.TAKE_PROFIT)
        )

    await until(bracketed, what="stop and take-profit live")
    return intent


async def _foreign_entry(hb: Heartbeat, client_id: str = "manual-entry-1") -> None:
    """A resting LIMIT BUY far below the market that SQLite does not know (placed by hand)."""
    client = hb.exchange.client
    mark = await hb.exchange.mark_price(SYMBOL)
    price = client.symbol_rules(SYMBOL).round_price(mark * Decimal("0.8"), "down")
    await client.new_order(SYMBOL, "BUY", "LIMIT", Decimal("0.01"), price, client_order_id=client_id)


async def _maker_entry(hb: Heartbeat, probability: float) -> EntryResult:
    """A post-only BUY entry resting at the touch, its bracket 3 % either side of the mark."""
    mark = await hb.exchange.mark_price(SYMBOL)
    context = EntryContext(probability=probability, decision_ms=hb.clock.now_ms())
    return await hb.entries.enter(
        SYMBOL, Side.BUY, Decimal("0.01"), (mark * Decimal("0.97")).quantize(CENT),
        (mark * Decimal("1.03")).quantize(CENT), context=context, last_price=mark,
    )  # fmt: skip


async def _venue(hb: Heartbeat) -> tuple[set[str], Decimal]:
    """Open client ids (regular and algo) and the net position on the venue."""
    client = hb.exchange.client
    orders = await client.get_open_orders(SYMBOL)
    algos = await client.get_open_algo_orders(SYMBOL)
    net = sum((p.positionAmt for p in await client.get_open_positions(SYMBOL)), Decimal(0))
    return {o.clientOrderId for o in orders} | {a.clientAlgoId for a in algos}, net


def test_flatten_request_leaves_no_open_order_and_no_position(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with _coordinator(service, tmp_path / "home") as (app, hb):
            intent = await _bracketed_position(hb)
            await _foreign_entry(hb)
            ids, net = await _venue(hb)
            assert net == Decimal("0.01") and len(ids) == 3  # stop, take-profit, the foreign entry
            switch = _switch(app)
            request = switch.requests.request("drill", flatten=True, actor="test", now_ms=wall_ms())
            assert request is not None
            (done,) = await switch.check()
            assert done[0] == request and done[1], done
            ids, net = await _venue(hb)
            assert ids == set() and net == 0
            assert hb.risk.halted and hb.risk.state.halted_reason == "drill"
            await until(lambda: all(i.intent_id != intent for i in hb.exchange.store.open_intents()),
                        what="intent closed")  # fmt: skip
            row = switch.requests.get(request)
            assert row is not None and row.status == "done" and row.flatten
            assert switch.view().flatten == "done" and switch.view().halted

    asyncio.run(scenario())


def test_plain_halt_cancels_resting_entries_and_keeps_the_stops(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with _coordinator(service, tmp_path / "home") as (app, hb):
            intent = await _bracketed_position(hb)
            legs = latest_legs(hb.exchange.store.orders_of_intent(intent))
            protective = {
                legs[OrderKind.STOP_LOSS].client_order_id,
                legs[OrderKind.TAKE_PROFIT].client_order_id,
            }
            await _foreign_entry(hb)
            switch = _switch(app)
            switch.requests.request("no new risk", flatten=False, actor="test", now_ms=wall_ms())
            (done,) = await switch.check()
            assert done[1], done
            ids, net = await _venue(hb)
            assert ids == protective and net == Decimal("0.01")  # the entry is gone, the stops stay
            assert hb.risk.halted
            assert switch.view().flatten == "none"

    asyncio.run(scenario())


def test_halt_cancels_a_resting_maker_entry_and_no_fallback_follows(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with _coordinator(service, tmp_path / "home", entry="maker_preferred") as (app, hb):
            result = await _maker_entry(hb, 0.7)
            assert result.maker is not None and result.maker.status is EntryStatus.PENDING
            switch = _switch(app)
            switch.requests.request("halt", flatten=False, actor="test", now_ms=wall_ms())
            await switch.check()
            ids, _net = await _venue(hb)
            assert ids == set()
            sent = hb.exchange.client.transport.sent[ORDER]
            (settled,) = await hb.entries.check()
            assert settled.status is EntryStatus.ABANDONED
            assert hb.exchange.client.transport.sent[ORDER] == sent  # no market fallback

    asyncio.run(scenario())


def test_halted_risk_manager_refuses_the_market_fallback_after_a_timeout(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with _coordinator(service, tmp_path / "home", entry="maker_preferred") as (_app, hb):
            result = await _maker_entry(hb, 0.9)
            assert result.maker is not None
            hb.risk.halt("operator", hb.clock.now_ms())  # halted while the maker entry rests
            sent = hb.exchange.client.transport.sent[ORDER]
            hb.clock.advance(31_000)  # type: ignore[attr-defined]
            (settled,) = await hb.entries.check()
            assert settled.status is EntryStatus.ABANDONED and "risk refused: halted" in settled.note
            assert hb.exchange.client.transport.sent[ORDER] == sent

    asyncio.run(scenario())


def test_an_entry_whose_decision_is_older_than_the_limit_is_not_sent(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with _coordinator(service, tmp_path / "home", max_order_age_seconds=20.0) as (_app, hb):
            mark = await hb.exchange.mark_price(SYMBOL)
            old = EntryContext(probability=0.7, decision_ms=hb.clock.now_ms() - 21_000)
            stop, take = (mark * Decimal("0.97")).quantize(CENT), (mark * Decimal("1.03")).quantize(CENT)
            result = await hb.entries.enter(SYMBOL, Side.BUY, Decimal("0.01"), stop, take, context=old,
                                            last_price=mark)  # fmt: skip
            assert result.placement is None and "old" in result.note
            assert hb.exchange.client.transport.sent[ORDER] == 0
            fresh = dataclasses.replace(old, decision_ms=hb.clock.now_ms())
            result = await hb.entries.enter(SYMBOL, Side.BUY, Decimal("0.01"), stop, take, context=fresh,
                                            last_price=mark)  # fmt: skip
            assert result.placement is not None and result.placement.entry.state is OrderState.FILLED

    asyncio.run(scenario())


def test_daily_loss_limit_flattens_once(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with _coordinator(service, tmp_path / "home") as (app, hb):
            await _bracketed_position(hb)
            now = hb.clock.now_ms()
            hb.risk.on_equity(Decimal(10_000), Decimal(0), now)
            hb.risk.on_equity(Decimal(9_000), Decimal(-1_000), now + 1)  # -10 %: the limit latches
            assert hb.risk.state.daily_limit_hit
            switch = _switch(app)
            (done,) = await switch.check()
            assert done[1], done
            ids, net = await _venue(hb)
            assert ids == set() and net == 0 and hb.risk.halted
            assert await switch.check() == []  # fired once for the day

    asyncio.run(scenario())


def test_breaker_escalation_halts_and_keeps_the_stops(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with _coordinator(service, tmp_path / "home") as (app, hb):
            await _bracketed_position(hb)
            await _foreign_entry(hb)
            breaker = hb.risk.state.breakers.states[BreakerKind.ERROR_BURST]
            now = hb.clock.now_ms()
            breaker.level, breaker.tripped_until_ms, breaker.last_trip_ms = 3, now + 60_000, now
            switch = _switch(app)
            (done,) = await switch.check()
            assert done[1], done
            ids, net = await _venue(hb)
            assert len(ids) == 2 and "manual-entry-1" not in ids and net == Decimal("0.01")
            assert hb.risk.halted and "error_burst" in hb.risk.state.halted_reason

    asyncio.run(scenario())


def test_cli_halt_flatten_acts_itself_when_no_coordinator_runs(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = venue_service(candles, tmp_path)
    home = tmp_path / "home"
    monkeypatch.setenv("XYLEN_PAPER_API_KEY", KEY)
    monkeypatch.setenv("XYLEN_PAPER_API_SECRET", SECRET)

    async def scenario() -> None:
        async with paper_venue(service) as url:
            app = offline_app(url, home, trading=True, entry="market")
            async with built_heartbeat(app) as hb:
                await _bracketed_position(hb)
            # the coordinator is stopped (the home is not locked): the command acts against the venue itself
            config = tmp_path / "config.yaml"
            config.write_text(
                f"exchange:\n  paper_url: {url}\n  poll_interval_seconds: 1.0\n"
                "market:\n  symbols: [BTCUSDT]\n  history_candles: 1000\n"
            )
            args = argparse.Namespace(home=str(home), config=str(config), flatten=True, reason="drill",
                                      by="tester", wait=1.0)  # fmt: skip
            status = await asyncio.to_thread(risk_cli.run_halt, args)
            assert status == 0
            async with built_heartbeat(offline_app(url, home, trading=True)) as hb2:
                ids, net = await _venue(hb2)
                assert ids == set() and net == 0 and hb2.risk.halted
        conn = sqlite3.connect(Home(home).database)
        try:
            row = conn.execute("SELECT status, claimed_by, flatten FROM halt_requests").fetchone()
        finally:
            conn.close()
        assert row == ("done", "cli:tester", 1)

    asyncio.run(scenario())


def test_cli_halt_reaches_a_running_coordinator(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)
    home = tmp_path / "home"

    async def scenario() -> None:
        async with _coordinator(service, home) as (app, hb):
            await _foreign_entry(hb)
            switch = _switch(app)
            runner = asyncio.create_task(switch.run())
            try:
                # the home's lock, as `xylen run` holds it for its whole life: the CLI hands over
                with HomeLock(home, "the coordinator").hold():
                    args = argparse.Namespace(home=str(home), config=None, flatten=False, reason="by hand",
                                              by="tester", wait=10.0)  # fmt: skip
                    status = await asyncio.to_thread(risk_cli.run_halt, args)
                assert status == 0
            finally:
                runner.cancel()
                await asyncio.gather(runner, return_exceptions=True)
            request = switch.requests.latest()
            assert request is not None and request.claimed_by == f"coordinator:{os.getpid()}", request
            ids, _net = await _venue(hb)
            assert ids == set() and hb.risk.halted and hb.risk.state.halted_reason == "by hand"

    asyncio.run(scenario())


def test_hedge_mode_is_switched_to_one_way_when_flat_and_refused_with_a_position(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with _coordinator(service, tmp_path / "home") as (_app, hb):
            client = hb.exchange.client
            await client.set_position_mode(True)
            assert await client.get_position_mode() is True
            await hb.exchange.ensure_one_way_mode()
            assert await client.get_position_mode() is False
            await hb.exchange.ensure_one_way_mode()  # already one-way: nothing to do
            await client.set_position_mode(True)
            # a resting order and no position: the venue refuses the switch (-4067), said plainly
            mark = await hb.exchange.mark_price(SYMBOL)
            low = client.symbol_rules(SYMBOL).round_price(mark * Decimal("0.8"), "down")
            await client.new_order(SYMBOL, "BUY", "LIMIT", Decimal("0.01"), low, client_order_id="hedge-rest",
                                   position_side="LONG")  # fmt: skip
            with pytest.raises(PositionModeError, match="open orders"):
                await hb.exchange.ensure_one_way_mode()
            await client.cancel_order(SYMBOL, client_order_id="hedge-rest")
            await client.new_order(SYMBOL, "BUY", "MARKET", Decimal("0.01"), client_order_id="hedge-1",
                                   position_side="LONG")  # fmt: skip
            with pytest.raises(PositionModeError, match="hedge position mode"):
                await hb.exchange.ensure_one_way_mode()
            assert await client.get_position_mode() is True

    asyncio.run(scenario())


def test_the_death_of_the_order_monitor_stops_the_coordinator_with_exit_1(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    service = venue_service(candles, tmp_path)

    async def scenario() -> None:
        async with paper_venue(service) as url:
            app = offline_app(url, tmp_path / "home", trading=True)
            runner = asyncio.create_task(app.run())

            def monitoring() -> bool:
                return (
                    app.heartbeat is not None
                    and app.exchange is not None
                    and app.exchange.monitor.task is not None
                )

            await until(monitoring, timeout_s=20.0, what="coordinator started")
            assert app.exchange is not None and app.exchange.monitor.task is not None
            app.exchange.monitor.task.cancel()  # the monitor dies (killed, not stopped by the app)
            status = await asyncio.wait_for(runner, 20.0)
            assert status == 1

    asyncio.run(scenario())
