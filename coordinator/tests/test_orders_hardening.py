"""Replies that may have executed, corrections of final states, bounded conflicts, atomic intents.

Each test runs against the REAL paper exchange over HTTP on 127.0.0.1 (its fault injection makes
the venue misbehave) with a real SQLite file, except the pure rule of the placement errors.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from coordinator.exchange import UserStream
from coordinator.exchange.errors import (
    ClockSkewError,
    FatalError,
    NotFoundError,
    RateLimitError,
    RejectedError,
    RetryableError,
    UnknownOutcomeError,
    UnreadableReplyError,
)
from coordinator.metrics import Metrics
from coordinator.orders import EventKind, IntentStatus, OrderKind, OrderState, OrderType, Side
from coordinator.orders.brackets import latest_legs
from coordinator.orders.manager import proves_not_accepted
from coordinator.tests.test_exchange_support import (
    SYMBOL,
    candles,  # noqa: F401 - fixture
    make_client,
    paper_exchange,
)
from coordinator.tests.test_manager_support import order_of, until, venue
from paper_exchange.app import HUB_KEY
from paper_exchange.tests.test_transport_support import KEY

ORDER = "POST /fapi/v1/order"
ALGO = "POST /fapi/v1/algoOrder"


# -- a 2xx with an unreadable body ------------------------------------------------------------------
def test_a_2xx_with_an_unreadable_body_is_unknown_and_found_by_client_id_never_rejected(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with venue(candles, tmp_path, faults={"unreadable_reply_rate": 1.0}) as v:
            ex = v.exchange
            placed = await ex.place_order(
                SYMBOL, Side.BUY, Decimal("0.01"), Decimal("44000"), Decimal("44400")
            )
            assert not placed.rejected and placed.reason == ""
            entry = order_of(v, placed.entry.client_order_id)
            assert entry.state is OrderState.FILLED and entry.executed_qty == Decimal("0.010")
            kinds = [e.kind for e in ex.store.events(entry.client_order_id)]
            assert kinds[:2] == [EventKind.SEND, EventKind.UNKNOWN_OUTCOME] and EventKind.REJECT not in kinds
            legs = latest_legs(ex.store.orders_of_intent(placed.intent.intent_id))
            for kind in (OrderKind.STOP_LOSS, OrderKind.TAKE_PROFIT):  # algo placements: same fault
                leg = legs[kind]
                assert leg.attempt == 1 and leg.state is OrderState.NEW, leg
                assert EventKind.UNKNOWN_OUTCOME in [e.kind for e in ex.store.events(leg.client_order_id)]
            assert v.sent(ORDER) == 1 and v.sent(ALGO) == 2  # each sent once, found by its client id
            assert ex.store.get_intent(placed.intent.intent_id).status is IntentStatus.OPEN  # type: ignore[union-attr]
            assert len(await ex.client.get_open_algo_orders(SYMBOL)) == 2

    asyncio.run(scenario())


def test_only_an_error_that_proves_the_order_was_not_accepted_rejects_it() -> None:
    where = "POST /fapi/v1/order"
    rejecting = [
        RejectedError("Margin is insufficient.", code=-2019, status=400, endpoint=where),
        RejectedError("filter", code=-1013, local=True),
        FatalError("Invalid API-key", code=-2015, status=401, endpoint=where),
        RetryableError("no connection", sent=False, endpoint=where),
        RateLimitError("Too many requests", retry_after_s=1.0, status=429, endpoint=where),
        ClockSkewError("outside recvWindow", code=-1021, status=400, endpoint=where),
        RetryableError("Service Unavailable.", code=-1001, status=503, endpoint=where),
        RetryableError("Internal error", code=-1001, status=500, endpoint=where),
    ]
    unknown: list[BaseException] = [
        UnreadableReplyError("HTTP 200 with an unreadable body", status=200, endpoint=where),
        UnknownOutcomeError("timed out after 5 s", endpoint=where),
        UnknownOutcomeError("Unknown error", status=503, endpoint=where),
        RetryableError("invalid JSON reply", status=200, endpoint=where),  # a 2xx proves acceptance
        RetryableError("connection reset", endpoint=where),  # sent, no reply
        ValueError("reply failed validation"),
        RuntimeError("unexpected"),
    ]
    assert [proves_not_accepted(e) for e in rejecting] == [True] * len(rejecting)
    assert [proves_not_accepted(e) for e in unknown] == [False] * len(unknown)
    assert proves_not_accepted(NotFoundError("Unknown order sent.", code=-2011, status=400))


# -- fill after cancel --------------------------------------------------------------------------------
def test_a_fill_after_an_acknowledged_cancel_is_a_correction_that_reopens_and_protects(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    faults = {"fill_after_cancel_rate": 1.0, "ws_delay_ms": 400}  # the stream's report comes late

    async def scenario() -> None:
        async with venue(candles, tmp_path, faults=faults) as v:
            ex = v.exchange
            placed = await ex.place_order(
                SYMBOL, Side.BUY, Decimal("0.01"), Decimal("42000"), Decimal("46000"),
                order_type="LIMIT", price=Decimal("43000"),
            )  # fmt: skip
            cid, intent_id = placed.entry.client_order_id, placed.intent.intent_id
            assert order_of(v, cid).state is OrderState.NEW  # resting far below the market
            await ex.cancel_order(cid)  # acknowledged CANCELED, but the engine filled it
            await ex.monitor.run_pending()  # one round of the follow-ups
            positions = await ex.client.get_open_positions(SYMBOL)
            assert [p.positionAmt for p in positions] == [Decimal("0.010")]
            algos = await ex.client.get_open_algo_orders(SYMBOL)
            stops = [
                a for a in algos if a.orderType == "STOP_MARKET" and a.closePosition and a.side == "SELL"
            ]
            assert len(stops) == 1, algos  # the position the venue reveals is protected in that round
            legs = latest_legs(ex.store.orders_of_intent(intent_id))
            assert legs[OrderKind.STOP_LOSS].state is OrderState.NEW, legs
            assert ex.store.get_intent(intent_id).status is IntentStatus.OPEN  # type: ignore[union-attr]
            entry = order_of(v, cid)
            assert entry.state is OrderState.FILLED and entry.executed_qty == Decimal("0.010")
            events = ex.store.events(cid)
            states = [(e.kind, e.state_before, e.state_after) for e in events]
            assert (EventKind.CANCEL, OrderState.NEW, OrderState.CANCELED) in states
            at = states.index((EventKind.CORRECTION, OrderState.CANCELED, OrderState.UNKNOWN))
            assert states[at + 1] == (EventKind.FILL_COMPLETE, OrderState.UNKNOWN, OrderState.FILLED)
            assert "FILL_COMPLETE" in events[at].event.reason  # type: ignore[union-attr]
            assert ex.manager.corrections == 1
            assert ex.store.replay(cid) == order_of(v, cid)
            await asyncio.sleep(0.6)  # the delayed stream report of the fill is a duplicate now
            assert order_of(v, cid).state is OrderState.FILLED and ex.manager.corrections == 1

    asyncio.run(scenario())


# -- a lasting conflict -------------------------------------------------------------------------------
def test_a_lasting_refused_event_is_requeried_with_backoff_then_handed_to_reconciliation(
    candles: Path,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with venue(candles, tmp_path, poll_interval_seconds=0.5) as v:
            ex, manager = v.exchange, v.exchange.manager
            manager.requery_base_s, manager.conflict_cap = 0.05, 3
            # SQLite says 0.005; the venue holds 0.010 under the same client id (another copy of
            # the database sent it): every report of it overfills the order, forever.
            intent, entry = ex.store.create_intent_with_entry(
                SYMBOL, Side.BUY, Decimal("0.005"), type=OrderType.MARKET, stop_price=Decimal("43000")
            )
            manager.record_local(entry, EventKind.SEND)
            await ex.client.new_order(
                SYMBOL, "BUY", "MARKET", Decimal("0.010"), client_order_id=entry.client_order_id
            )
            with caplog.at_level(logging.WARNING, logger="coordinator.orders.manager"):
                await manager.query(manager.current(entry.client_order_id))
                await until(lambda: entry.client_order_id in manager.for_reconciliation, what="hand-over")
                refused = [
                    e for e in ex.store.events(entry.client_order_id, include_refused=True) if not e.applied
                ]
                await asyncio.sleep(1.5)  # three poll intervals: nothing more is asked or written
                later = [
                    e for e in ex.store.events(entry.client_order_id, include_refused=True) if not e.applied
                ]
            assert len(refused) == len(later) <= manager.conflict_cap + 2  # not one per round
            handed = [r for r in caplog.records if "handed to reconciliation" in r.getMessage()]
            assert len(handed) == 1 and handed[0].levelno == logging.ERROR
            assert manager.handed_to_reconciliation == 1
            rows = ex.store.connection.execute(
                "SELECT kind, client_order_id FROM reconciliation_report WHERE kind = 'order_conflict'"
            ).fetchall()
            assert rows == [("order_conflict", entry.client_order_id)]  # reported once, by the sweep
            assert order_of(v, entry.client_order_id).state in (OrderState.SUBMITTED, OrderState.NEW)
            # the position the refused reports stand for is protected all the same
            algos = await ex.client.get_open_algo_orders(SYMBOL)
            assert [(a.orderType, a.side, a.closePosition) for a in algos] == [("STOP_MARKET", "SELL", True)]
            assert intent.intent_id in {i.intent_id for i in ex.store.open_intents()}

    asyncio.run(scenario())


# -- intent and entry in one transaction ---------------------------------------------------------------
def test_an_intent_is_never_written_without_its_entry_and_an_orderless_one_never_blocks(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with venue(candles, tmp_path, start=False) as v:
            ex = v.exchange
            conn = ex.store.connection
            conn.execute(
                "CREATE TRIGGER no_orders BEFORE INSERT ON orders BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
            with pytest.raises(sqlite3.IntegrityError):
                await ex.manager.open_position(
                    SYMBOL, Side.BUY, Decimal("0.01"), stop_loss=Decimal("43000"), take_profit=None
                )
            assert ex.store.open_intents() == []  # the intent went with its entry
            conn.execute("DROP TRIGGER no_orders")
            assert v.sent(ORDER) == 0

            legacy = ex.store.create_intent(SYMBOL, Side.BUY, Decimal("0.01"))  # as an older version left it
            placed = await ex.manager.open_position(
                SYMBOL, Side.BUY, Decimal("0.01"), stop_loss=Decimal("43000"), take_profit=None
            )
            assert order_of(v, placed.entry.client_order_id).state is OrderState.FILLED
            assert ex.store.get_intent(legacy.intent_id).status is IntentStatus.CANCELED  # type: ignore[union-attr]

    asyncio.run(scenario())


# -- an unreadable user-stream message ------------------------------------------------------------------
def test_a_user_stream_message_that_fails_validation_requests_a_resync(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with paper_exchange(candles, tmp_path) as (url, app):
            client = await make_client(url)
            stream = UserStream(client, heartbeat_s=5.0)
            try:
                await stream.start()
                await stream.wait_connected(5.0)
                assert not stream.take_resync()
                app[HUB_KEY].publish(KEY, {"e": "ORDER_TRADE_UPDATE", "E": 1, "T": 1, "o": {"s": SYMBOL}})
                app[HUB_KEY].publish(KEY, {"e": "SOME_OTHER_EVENT", "E": 2})  # a valid one after it
                await until(lambda: not stream.events.empty(), what="the message after the malformed one")
                assert stream.take_resync() and not stream.take_resync()
                assert stream.invalid == 1 and stream.connected
                assert stream.events.get_nowait().e == "SOME_OTHER_EVENT"  # the malformed one was skipped
            finally:
                await stream.stop()
                await client.close()

    asyncio.run(scenario())


def test_corrections_and_hand_overs_are_prometheus_counters() -> None:
    counts = {"corrections": 1, "handed": 0}
    metrics = Metrics()
    metrics.watch_orders(lambda: counts["corrections"], lambda: counts["handed"])
    counts["handed"] = 2  # read at scrape time, not at registration
    text = metrics.exposition().decode()
    assert "# TYPE xylen_order_corrections_total counter" in text
    assert "xylen_order_corrections_total 1.0" in text
    assert "xylen_orders_to_reconciliation_total 2.0" in text
