"""Trade settlement is one SQLite transaction: the ``trades`` row and the risk manager's fill and
close updates are committed together or not at all, and a failed settlement is tried again.

Real paper exchange over HTTP, real coordinator database.  The failures are real SQLite failures:
a trigger on the database file aborts the risk manager's write (or the trade's insert), the way a
full disk or a constraint would, and is dropped again to let the next round go through.
"""

from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal
from pathlib import Path

from coordinator.heartbeat import Heartbeat
from coordinator.orders import IntentStatus, Side
from coordinator.tests.heartbeat_support import (
    SYMBOL,
    built_heartbeat,
    offline_app,
    paper_venue,
    venue_service,
)
from coordinator.tests.test_exchange_support import candles  # noqa: F401 - fixture
from coordinator.tests.test_manager_support import until
from xylen.paths import Home

# The risk manager's close (the trade count grows) fails; its fill updates before it succeeded.
FAIL_RISK_CLOSE = (
    "CREATE TRIGGER fail_risk BEFORE UPDATE ON risk_state WHEN NEW.trades > OLD.trades"
    " BEGIN SELECT RAISE(ABORT, 'risk write failed'); END"
)
FAIL_TRADE_ROW = (
    "CREATE TRIGGER fail_trade BEFORE INSERT ON trades BEGIN SELECT RAISE(ABORT, 'trade write failed'); END"
)


def _status(hb: Heartbeat, intent_id: str) -> IntentStatus | None:
    intent = hb.exchange.store.get_intent(intent_id)
    return None if intent is None else intent.status


async def _closed_intent(hb: Heartbeat) -> str:
    """Open a position and close it by hand: one CLOSED intent waiting to be settled."""
    placed = await hb.exchange.place_order(
        SYMBOL, Side.BUY, Decimal("0.01"), Decimal("40000"), Decimal("50000")
    )
    intent_id = placed.intent.intent_id
    assert await hb.exchange.close_position(SYMBOL) is not None
    await until(lambda: _status(hb, intent_id) is IntentStatus.CLOSED, what="closed by hand")
    return intent_id


def _on_disk(database: Path) -> tuple[list[str], int, str]:
    """(intent ids in ``trades``, the risk state's trade count, its fees of the day) on the file."""
    conn = sqlite3.connect(database)
    try:
        trades = [r[0] for r in conn.execute("SELECT intent_id FROM trades ORDER BY id")]
        count, fees = conn.execute("SELECT trades, day_fees FROM risk_state WHERE id = 1").fetchone()
    finally:
        conn.close()
    return trades, int(count), str(fees)


def _settles_once_after_a_failure(candle_dir: Path, tmp_path: Path, trigger: str, name: str) -> None:
    service = venue_service(candle_dir, tmp_path)
    home = tmp_path / "home"
    database = Home(home).database

    async def scenario() -> None:
        async with paper_venue(service) as url:
            async with built_heartbeat(offline_app(url, home)) as hb:
                intent_id = await _closed_intent(hb)
                now = hb.clock.now_ms()
                before = hb.risk.statistics(now)
                fees_before = hb.risk.state.day_fees
                _trades, _count, disk_fees_before = _on_disk(database)
                hb.journal.conn.execute(trigger)

                assert await hb.settle_trades() == []  # the failure is logged, nothing settled
                assert intent_id not in hb.trades.settled
                # nothing of the settlement reached the file...
                assert _on_disk(database) == ([], before.trades, disk_fees_before)
                # ...nor the risk manager's memory
                after = hb.risk.statistics(now)
                assert after.trades == before.trades and after.daily_pnl == before.daily_pnl
                assert hb.risk.state.day_fees == fees_before

                hb.journal.conn.execute(f"DROP TRIGGER {name}")
                (trade,) = await hb.settle_trades()  # the next round settles it, once
                assert trade.intent_id == intent_id and trade.exit_reason == "close"
                stats = hb.risk.statistics(hb.clock.now_ms())
                assert stats.trades == before.trades + 1
                assert hb.risk.state.day_fees == fees_before + trade.fees
                assert await hb.settle_trades() == []
                hb.trades.settled.clear()
                assert await hb.settle_trades() == []

            trades, count, fees = _on_disk(database)
            assert trades == [intent_id] and count == 1
            assert Decimal(fees) == Decimal(disk_fees_before) + trade.fees

    asyncio.run(scenario())


def test_a_failing_risk_update_leaves_no_trade_row_and_the_intent_is_settled_next_round(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    _settles_once_after_a_failure(candles, tmp_path, FAIL_RISK_CLOSE, "fail_risk")


def test_a_failing_trade_row_leaves_the_risk_state_alone_and_the_intent_is_settled_next_round(
    candles: Path,  # noqa: F811 - fixture
    tmp_path: Path,
) -> None:
    _settles_once_after_a_failure(candles, tmp_path, FAIL_TRADE_ROW, "fail_trade")
