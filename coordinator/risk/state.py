"""The risk manager's state and statistics, persisted in ``<home>/xylen.db`` (migration 0004).

Tables: ``risk_state`` (one row: halted flag, the UTC day's starting equity, realised PnL and fees,
the latched daily limits, equity and peak, win/loss counts, breaker counters), ``risk_breakers``
(one row per breaker: k, cooldown end, trips) and ``risk_events`` (halts, resets, breaker trips,
daily limits: who and when).  Amounts are TEXT (exact Decimals), times INTEGER ms UTC.

Daily PnL = realised PnL of closes today - fees paid today + (unrealised PnL now - unrealised PnL
at the start of the day), i.e. the change of equity over the UTC day without deposits and funding.
The day starts at 00:00 UTC; its starting equity and unrealised PnL are the first seen that day.
Because all of it is stored, a restart never lifts a daily limit.

Resets come from another process (``xylen risk reset``) while the coordinator may be running: the
CLI clears the flag and breakers and bumps ``reset_generation``.  :meth:`RiskStore.save` reads the
generation in the same transaction as its write and, if it moved, applies the reset to the
in-memory state first -- so a running manager never writes an old halt back over a reset.

:func:`risk_transaction` lets a caller commit risk updates together with its own writes on the same
connection (trade settlement: the ``trades`` row, the fills' fees and the close), all or nothing,
memory included.
"""

from __future__ import annotations

import contextlib
import copy
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from coordinator.risk.breakers import BreakerKind, Breakers, BreakerState
from coordinator.storage.transaction import transaction

ZERO = Decimal(0)
DAY_MS = 86_400_000


def utc_day(now_ms: int) -> int:
    """The UTC day number of ``now_ms`` (days since 1970-01-01); a day starts at 00:00 UTC."""
    return now_ms // DAY_MS


@dataclass(slots=True)
class RiskState:
    """Everything the risk manager remembers across restarts (plus pending events to write)."""

    halted: bool = False
    halted_reason: str = ""
    halted_ms: int | None = None
    reset_generation: int = 0
    day: int = -1
    day_start_equity: Decimal = ZERO
    day_start_unrealised: Decimal = ZERO
    day_realised_pnl: Decimal = ZERO
    day_fees: Decimal = ZERO
    daily_limit_hit: tuple[str, ...] = ()
    equity: Decimal = ZERO
    unrealised_pnl: Decimal = ZERO
    peak_equity: Decimal = ZERO
    last_loss_ms: int | None = None
    wins: int = 0
    losses: int = 0
    trades: int = 0
    updated_ms: int = 0
    breakers: Breakers = field(default_factory=Breakers)
    pending_events: list[tuple[int, str, str, str]] = field(default_factory=list)

    def daily_pnl(self, unrealised_pnl: Decimal | None = None) -> Decimal:
        """Realised - fees + change of unrealised PnL since the start of the UTC day."""
        unrealised = self.unrealised_pnl if unrealised_pnl is None else unrealised_pnl
        return self.day_realised_pnl - self.day_fees + unrealised - self.day_start_unrealised

    def drawdown_pct(self) -> Decimal:
        """How far equity is below its peak, in percent of the peak."""
        if self.peak_equity <= 0:
            return ZERO
        return max(ZERO, (self.peak_equity - self.equity) * 100 / self.peak_equity)

    def win_rate(self) -> float | None:
        """Winning trades / trades with a non-zero result (None before the first)."""
        decided = self.wins + self.losses
        return self.wins / decided if decided else None

    def event(self, at_ms: int, kind: str, detail: str, actor: str = "risk-manager") -> None:
        """Queue an event for the next :meth:`RiskStore.save`."""
        self.pending_events.append((at_ms, kind, detail, actor))

    def apply_reset(self) -> None:
        """What ``xylen risk reset`` does, applied in memory (the daily limit is not lifted)."""
        self.halted = False
        self.halted_reason = ""
        self.halted_ms = None
        self.breakers.clear(self.equity)


@dataclass(frozen=True, slots=True)
class RiskStatistics:
    """A read-only summary of :class:`RiskState` at one moment."""

    equity: Decimal
    peak_equity: Decimal
    drawdown_pct: Decimal
    daily_pnl: Decimal
    day_start_equity: Decimal
    daily_limits_reached: tuple[str, ...]
    trades: int
    wins: int
    losses: int
    win_rate: float | None
    breaker_trips: dict[str, int]
    breakers_blocking: tuple[str, ...]
    halted: bool


def statistics(state: RiskState, now_ms: int) -> RiskStatistics:
    """The statistics of ``state`` at ``now_ms`` (which breakers are blocking depends on the time)."""
    return RiskStatistics(
        equity=state.equity,
        peak_equity=state.peak_equity,
        drawdown_pct=state.drawdown_pct(),
        daily_pnl=state.daily_pnl(),
        day_start_equity=state.day_start_equity,
        daily_limits_reached=state.daily_limit_hit,
        trades=state.trades,
        wins=state.wins,
        losses=state.losses,
        win_rate=state.win_rate(),
        breaker_trips={kind.value: b.total_trips for kind, b in state.breakers.states.items()},
        breakers_blocking=tuple(kind.value for kind in state.breakers.blocking(now_ms)),
        halted=state.halted,
    )


_STATE_COLUMNS = (
    "halted, halted_reason, halted_ms, reset_generation, day, day_start_equity, day_start_unrealised, "
    "day_realised_pnl, day_fees, daily_limit_hit, equity, unrealised_pnl, peak_equity, drawdown_reference, "
    "consecutive_losses, quorum_misses, last_loss_ms, wins, losses, trades, updated_ms"
)


def _dec(text: str | None) -> Decimal:
    return Decimal(text) if text else ZERO


class RiskStore:
    """Reads and writes :class:`RiskState` in an open, migrated connection (``init_db``)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def load(self) -> RiskState:
        """The persisted state (the migration inserts the single row with defaults)."""
        sql = f"SELECT {_STATE_COLUMNS} FROM risk_state WHERE id = 1"  # nosec B608 # constant column list
        row = self.conn.execute(sql).fetchone()
        state = RiskState()
        if row is None:
            return state
        (
            halted, state.halted_reason, state.halted_ms, state.reset_generation, state.day,
            day_start_equity, day_start_unrealised, day_realised, day_fees, daily_limit_hit, equity,
            unrealised, peak, reference, consecutive, quorum_misses, state.last_loss_ms, state.wins,
            state.losses, state.trades, state.updated_ms,
        ) = row  # fmt: skip
        state.halted = bool(halted)
        state.day_start_equity = _dec(day_start_equity)
        state.day_start_unrealised = _dec(day_start_unrealised)
        state.day_realised_pnl = _dec(day_realised)
        state.day_fees = _dec(day_fees)
        state.daily_limit_hit = tuple(x for x in daily_limit_hit.split(",") if x)
        state.equity = _dec(equity)
        state.unrealised_pnl = _dec(unrealised)
        state.peak_equity = _dec(peak)
        state.breakers.drawdown_reference = _dec(reference)
        state.breakers.consecutive_losses = consecutive
        state.breakers.quorum_misses = quorum_misses
        for kind, level, until, last, total in self.conn.execute(
            "SELECT kind, level, tripped_until_ms, last_trip_ms, total_trips FROM risk_breakers"
        ):
            if kind in BreakerKind._value2member_map_:
                state.breakers.states[BreakerKind(kind)] = BreakerState(
                    BreakerKind(kind), level, until, last, total
                )
        return state

    def generation(self) -> int:
        """The reset generation on disk (cheap: one indexed row)."""
        row = self.conn.execute("SELECT reset_generation FROM risk_state WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def save(self, state: RiskState) -> bool:
        """Write ``state`` and its pending events in one transaction (a savepoint inside a caller's).

        Returns True when a reset made by another process was found and applied to ``state`` first.
        """
        conn = self.conn
        with transaction(conn):
            generation = int(
                conn.execute("SELECT reset_generation FROM risk_state WHERE id = 1").fetchone()[0]
            )
            applied = generation != state.reset_generation
            if applied:
                state.apply_reset()
                state.reset_generation = generation
            b = state.breakers
            conn.execute(
                "UPDATE risk_state SET halted=?, halted_reason=?, halted_ms=?, day=?, day_start_equity=?, "
                "day_start_unrealised=?, day_realised_pnl=?, day_fees=?, daily_limit_hit=?, equity=?, "
                "unrealised_pnl=?, peak_equity=?, drawdown_reference=?, consecutive_losses=?, "
                "quorum_misses=?, last_loss_ms=?, wins=?, losses=?, trades=?, updated_ms=? WHERE id = 1",
                (
                    int(state.halted), state.halted_reason, state.halted_ms, state.day,
                    str(state.day_start_equity), str(state.day_start_unrealised), str(state.day_realised_pnl),
                    str(state.day_fees), ",".join(state.daily_limit_hit), str(state.equity),
                    str(state.unrealised_pnl), str(state.peak_equity), str(b.drawdown_reference),
                    b.consecutive_losses, b.quorum_misses, state.last_loss_ms, state.wins, state.losses,
                    state.trades, state.updated_ms,
                ),
            )  # fmt: skip
            conn.executemany(
                "INSERT INTO risk_breakers (kind, level, tripped_until_ms, last_trip_ms, total_trips) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind) DO UPDATE SET level=excluded.level, "
                "tripped_until_ms=excluded.tripped_until_ms, last_trip_ms=excluded.last_trip_ms, "
                "total_trips=excluded.total_trips",
                [
                    (k.value, s.level, s.tripped_until_ms, s.last_trip_ms, s.total_trips)
                    for k, s in b.states.items()
                ],
            )
            conn.executemany(
                "INSERT INTO risk_events (ts_ms, kind, detail, actor) VALUES (?, ?, ?, ?)",
                state.pending_events,
            )
        state.pending_events.clear()
        return applied

    def events(self, limit: int = 20) -> list[tuple[int, str, str, str]]:
        """The newest ``limit`` events, newest first: ``(ts_ms, kind, detail, actor)``."""
        rows = self.conn.execute(
            "SELECT ts_ms, kind, detail, actor FROM risk_events ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [(int(t), str(k), str(d), str(a)) for t, k, d, a in rows]


class HoldsRiskState(Protocol):
    """Whatever keeps the in-memory :class:`RiskState` (the risk manager) and its store."""

    state: RiskState
    store: RiskStore | None


@contextlib.contextmanager
def risk_transaction(conn: sqlite3.Connection, holder: HoldsRiskState) -> Iterator[None]:
    """One transaction on ``conn`` around risk updates and the caller's own writes.

    Inside it, every :meth:`RiskStore.save` of ``holder`` is a savepoint of this transaction (the
    store must use ``conn``), so nothing is committed before the block ends, and then all of it at
    once.  On any error the transaction is rolled back and ``holder.state`` is put back as it was
    when the block began: memory and file never disagree about a half-applied update.
    """
    if holder.store is not None and holder.store.conn is not conn:
        raise ValueError("the risk store writes on another connection: it cannot join this transaction")
    saved = copy.deepcopy(holder.state)
    try:
        with transaction(conn):
            yield
    except BaseException:
        holder.state = saved
        raise


def reset_risk(conn: sqlite3.Connection, actor: str, now_ms: int, note: str = "") -> bool:
    """Clear the halted flag and every breaker on disk, log who and when; True if it was halted.

    This is ``xylen risk reset``, the only way to resume after an emergency halt.  The daily loss
    limit is not lifted (it ends at 00:00 UTC), and breaker trip counts stay as history.
    """
    with transaction(conn):
        row = conn.execute("SELECT halted, halted_reason FROM risk_state WHERE id = 1").fetchone()
        was_halted = bool(row[0])
        conn.execute(
            "UPDATE risk_state SET halted = 0, halted_reason = '', halted_ms = NULL, "
            "reset_generation = reset_generation + 1, consecutive_losses = 0, quorum_misses = 0, "
            "drawdown_reference = equity, updated_ms = ? WHERE id = 1",
            (now_ms,),
        )
        conn.execute("UPDATE risk_breakers SET level = 0, tripped_until_ms = 0")
        detail = f"was halted ({row[1]})" if was_halted else "was not halted"
        conn.execute(
            "INSERT INTO risk_events (ts_ms, kind, detail, actor) VALUES (?, 'reset', ?, ?)",
            (now_ms, f"{detail}{'; ' + note if note else ''}", actor),
        )
    return was_halted
