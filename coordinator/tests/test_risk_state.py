"""Persistence: halt, breakers and the day's PnL survive a restart (and another process); resets
from the CLI reach a running manager; the emergency shutdown, through a fake executor.

The executor here is a small in-test fake at the seam (the :class:`Executor` protocol), not the
order layer: the part under test is what the risk manager does and persists.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from coordinator.risk import BreakerKind, OpenPosition, Reason, RiskStore, Side, reset_risk
from coordinator.storage.db import init_db
from coordinator.tests.risk_support import DAY_MS, NOW, OTHER, SYMBOL, D, account, manager, market, proposal

REPO = Path(__file__).resolve().parents[2]
HOUR = 3_600_000


def reopen(path: Path) -> RiskStore:
    return RiskStore(init_db(path))


def test_state_survives_closing_and_reopening_the_file(tmp_path: Path) -> None:
    db = tmp_path / "xylen.db"
    store = reopen(db)
    m = manager(store=store)
    m.on_equity(D("10000"), D("0"), NOW)
    m.on_equity(D("10400"), D("0"), NOW + 1)  # peak 10,400
    for i in range(3):
        m.on_close(SYMBOL, D("-60"), NOW + 10 + i, fees=D("1"))  # -180: daily limit and the streak breaker
    m.on_fill(SYMBOL, D("1"), D("100"), D("0.25"), NOW + 20)
    m.halt("operator test", NOW + 30)
    before = m.state
    store.conn.close()

    again = manager(store=reopen(db))
    s = again.state
    assert s.halted and s.halted_reason == "operator test" and s.halted_ms == NOW + 30
    assert s.day == NOW // DAY_MS and s.day_start_equity == D("10000")
    assert s.day_realised_pnl == D("-180") and s.day_fees == D("0.25")
    assert s.daily_pnl() == before.daily_pnl() == D("-180.25")  # realised - fees
    assert s.daily_limit_hit == ("daily_loss_limit_usd",)
    assert s.peak_equity == D("10400") and (s.wins, s.losses, s.trades) == (0, 3, 3)
    streak = s.breakers.states[BreakerKind.CONSECUTIVE_LOSSES]
    assert streak.tripped_until_ms == NOW + 12 + HOUR and streak.level == 1 and streak.total_trips == 1
    later = NOW + 2 * HOUR  # after the cooldowns: halt and daily limit still hold
    result = again.validate(proposal(), account(), market(now=later), later)
    assert set(result.reasons) == {Reason.HALTED, Reason.DAILY_LOSS_LIMIT_USD}
    stats = again.statistics(later)
    assert stats.daily_pnl == D("-180.25") and stats.losses == 3 and stats.win_rate == 0.0
    assert stats.breaker_trips["consecutive_losses"] == 1 and stats.breakers_blocking == ()
    kinds = [kind for _, kind, _, _ in again.store.events(10)]  # type: ignore[union-attr]
    assert {"halt", "daily_limit", "breaker:consecutive_losses"} <= set(kinds)


def test_a_separate_process_trips_the_daily_limit(tmp_path: Path) -> None:
    db = tmp_path / "xylen.db"
    done = subprocess.run(
        [sys.executable, "-m", "coordinator.tests.risk_worker", str(db), str(NOW)],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr
    m = manager(store=reopen(db))
    assert m.state.daily_pnl() == D("-200")
    now = NOW + 2 * HOUR
    assert m.validate(proposal(), account(), market(now=now), now).reasons == (
        Reason.DAILY_LOSS_LIMIT_PCT,  # 200 = 2 % of 10,000
        Reason.DAILY_LOSS_LIMIT_USD,
    )
    tomorrow = (NOW // DAY_MS + 1) * DAY_MS
    assert m.validate(proposal(), account(), market(now=tomorrow), tomorrow).approved


def test_a_reset_from_another_connection_reaches_the_running_manager(tmp_path: Path) -> None:
    db = tmp_path / "xylen.db"
    m = manager(store=reopen(db))
    m.on_equity(D("10000"), D("0"), NOW)
    for i in range(5):
        m.on_exchange_error(NOW + i)
    m.halt("test", NOW + 10)
    cli = init_db(db)  # what `xylen risk reset` does, on its own connection
    assert reset_risk(cli, "alice@host", NOW + 20, "checked")
    assert m.halted  # the running manager has not seen it yet
    m.on_fill(SYMBOL, D("1"), D("100"), D("0.05"), NOW + 30)  # its next write applies the reset first
    assert not m.halted and not m.state.breakers.blocking(NOW + 30)
    assert init_db(db).execute("SELECT halted FROM risk_state").fetchone()[0] == 0  # not written back
    assert m.validate(proposal(), account(), market(now=NOW + 50), NOW + 50).approved
    events = RiskStore(cli).events(1)
    assert events[0][1:] == ("reset", "was halted (test); checked", "alice@host")


class FakeExecutor:
    """A fake at the seam: records calls, can fail chosen steps."""

    def __init__(self, positions: list[OpenPosition], fail_cancel: str = "", fail_positions: bool = False):
        self.positions = positions
        self.fail_cancel = fail_cancel
        self.fail_positions = fail_positions
        self.calls: list[tuple[str, ...]] = []

    async def cancel_all_orders(self, symbol: str) -> None:
        self.calls.append(("cancel", symbol))
        if symbol == self.fail_cancel:
            raise ConnectionError("timeout")

    async def close_position_reduce_only(self, symbol: str, side: str, quantity: Decimal) -> None:
        self.calls.append(("close", symbol, side, str(quantity)))

    async def open_positions(self) -> list[OpenPosition]:
        if self.fail_positions:
            raise ConnectionError("down")
        return self.positions


def test_emergency_shutdown_cancels_closes_and_persists_the_halt(tmp_path: Path) -> None:
    db = tmp_path / "xylen.db"
    m = manager(store=reopen(db))
    fake = FakeExecutor([OpenPosition(SYMBOL, D("0.5")), OpenPosition(OTHER, D("-2"))], fail_cancel=SYMBOL)
    report = asyncio.run(m.emergency_shutdown(fake, "drill", NOW, symbols=("THIRDUSDT",)))
    assert ("close", SYMBOL, "SELL", "0.5") in fake.calls and ("close", OTHER, "BUY", "2") in fake.calls
    assert {c[1] for c in fake.calls if c[0] == "cancel"} == {SYMBOL, OTHER, "THIRDUSDT"}
    assert report.cancelled == ["THIRDUSDT", OTHER] and len(report.errors) == 1 and len(report.closed) == 2
    assert reopen(db).load().halted  # persisted
    # a restarted manager stays halted; it may still close, never enter
    again = manager(store=reopen(db))
    held = account(positions=((SYMBOL, "0.5", "100"),))
    assert again.validate(proposal(), held, market(), NOW + 1).reasons == (Reason.HALTED,)
    assert again.validate(proposal(None, Side.SELL, reduce_only=True), held, market(), NOW + 1).approved


def test_emergency_shutdown_halts_even_when_the_exchange_is_down(tmp_path: Path) -> None:
    db = tmp_path / "xylen.db"
    m = manager(store=reopen(db))
    report = asyncio.run(m.emergency_shutdown(FakeExecutor([], fail_positions=True), "exchange down", NOW))
    assert report.errors and reopen(db).load().halted
