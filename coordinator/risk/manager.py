"""``RiskManager``: sizes and validates orders, keeps the risk state, halts in an emergency.

The manager is synchronous; only :meth:`RiskManager.emergency_shutdown` and
:meth:`RiskManager.halt_and_cancel_entries` await, because they talk to the order layer through
the :class:`Executor` protocol (implemented by :class:`coordinator.safety.VenueExecutor`, which
also decides when they run: see :mod:`coordinator.safety`).  Time is always passed
in (``now_ms``, int ms UTC, from the injected clock).

Rules decided here:

* **Closing is always allowed.**  A reduce-only proposal is approved even when trading is disabled,
  the manager is halted, a breaker or the daily limit is tripped, data is stale or the order rate
  is used up: closing only lowers risk, and blocking it could turn a halt into a loss.  Its
  quantity is clamped to the open position (all of it when the proposal has none); with no
  position to reduce it is refused (``nothing_to_reduce``).
* **Entries** pass every check of :mod:`coordinator.risk.checks`; all failing reasons are returned.
  An entry without a quantity is sized by :mod:`coordinator.risk.sizing` within the notional
  headroom (exposure, leverage, margin) and rounded down to the step grid.  An explicit quantity
  is rounded down to the grid and checked as it is.
* Every approved order (entry or close) counts toward ``max_orders_per_minute`` (a sliding 60 s
  window, in memory); only entries are refused by it.
* The daily loss limit latches: once reached, entries stay refused until 00:00 UTC even if the
  unrealised PnL recovers.  An operator reset does not lift it.
* The halted flag is persisted before anything is sent to the exchange; only ``xylen risk reset``
  (or :meth:`RiskManager.reset`, which it calls) clears it.
* A halt cancels resting entries and keeps the protective stops and take-profits of open
  positions (:meth:`RiskManager.halt_and_cancel_entries`); an emergency shutdown also cancels
  every order and closes every position reduce-only at market.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from coordinator.risk.breakers import BreakerParams, Trip, readable_ms
from coordinator.risk.checks import (
    MINUTE_MS,
    AccountView,
    GateState,
    Limits,
    MarketView,
    Reason,
    TradeProposal,
    Violation,
    daily_loss_reached,
    gate_violations,
    grid_violations,
    headroom_notional,
    order_violations,
)
from coordinator.risk.sizing import SizeResult, SizingParams, size_position
from coordinator.risk.state import RiskState, RiskStatistics, RiskStore, reset_risk, statistics, utc_day
from coordinator.side import Side
from xylen.config.schema import RiskConfig, XylenConfig

logger = logging.getLogger(__name__)
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class OpenPosition:
    """A position as the executor reports it: ``quantity`` signed (> 0 long, < 0 short)."""

    symbol: str
    quantity: Decimal


class Executor(Protocol):
    """What the emergency shutdown needs from the order layer."""

    async def cancel_all_orders(self, symbol: str) -> None:
        """Cancel every open order (entries, stops, take-profits) on ``symbol``."""

    async def close_position_reduce_only(self, symbol: str, side: str, quantity: Decimal) -> None:
        """Send a reduce-only MARKET order; ``side`` is the order's side (SELL closes a long)."""

    async def open_positions(self) -> list[OpenPosition]:
        """The open positions on the exchange, now."""


class EntryCanceller(Protocol):
    """What a halt needs from the order layer."""

    async def cancel_entry_orders(self, symbol: str) -> None:
        """Cancel every resting order on ``symbol`` that could open a position; keep the stops."""


@dataclass(frozen=True, slots=True)
class RiskResult:
    """The answer for one proposal: approved with a quantity on the grid, or every reason why not."""

    approved: bool
    quantity: Decimal
    violations: tuple[Violation, ...] = ()

    @property
    def reasons(self) -> tuple[Reason, ...]:
        return tuple(v.reason for v in self.violations)


@dataclass(slots=True)
class ShutdownReport:
    """What an emergency shutdown did; ``errors`` lists the steps that failed (the halt stands)."""

    cancelled: list[str] = field(default_factory=list)
    closed: list[tuple[str, str, Decimal]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class RiskManager:
    """Sizing, checks, breakers and statistics over one :class:`RiskState` (persisted if a store)."""

    def __init__(
        self,
        config: RiskConfig,
        *,
        store: RiskStore | None = None,
        trading_enabled: bool = True,
        quorum: int = 1,
        fee_rate: Decimal = Decimal("0.0005"),
    ) -> None:
        self.config = config
        self.limits = Limits.from_config(config, fee_rate)
        self.sizing = SizingParams.from_config(config)
        self.breaker_params = BreakerParams.from_config(config)
        self.trading_enabled = trading_enabled
        self.quorum = quorum
        self.store = store
        self.state = store.load() if store is not None else RiskState()
        self._orders: deque[int] = deque()

    @classmethod
    def from_config(cls, config: XylenConfig, store: RiskStore | None = None) -> RiskManager:
        """Wired from the whole config: risk limits, ``trading.enabled``, quorum and taker fee."""
        return cls(
            config.risk,
            store=store,
            trading_enabled=config.trading.enabled,
            quorum=config.ensemble.quorum,
            fee_rate=Decimal(str(config.trading.taker_fee_bps)) / 10_000,
        )

    # -- queries -------------------------------------------------------------------------------
    @property
    def halted(self) -> bool:
        return self.state.halted

    def statistics(self, now_ms: int) -> RiskStatistics:
        """Equity, peak, drawdown, daily PnL, win rate, breaker trips (for metrics and the dashboard)."""
        return statistics(self.state, now_ms)

    def orders_last_minute(self, now_ms: int) -> int:
        """Approved orders in the sliding minute ending at ``now_ms``."""
        orders = self._orders
        while orders and orders[0] <= now_ms - MINUTE_MS:
            orders.popleft()
        return len(orders)

    def size(self, proposal: TradeProposal, account: AccountView, market: MarketView) -> SizeResult:
        """The entry quantity for ``proposal`` (see :mod:`coordinator.risk.sizing`)."""
        price = proposal.reference_price
        return size_position(
            self.sizing,
            long=proposal.side is Side.BUY,
            equity=account.equity,
            entry=price,
            stop=proposal.stop_price,
            take_profit=proposal.take_profit_price,
            probability=proposal.probability,
            rules=market.rules,
            max_notional=headroom_notional(self.limits, account, proposal.symbol, price)
            if price > 0
            else ZERO,
        )

    def validate(
        self, proposal: TradeProposal, account: AccountView, market: MarketView, now_ms: int
    ) -> RiskResult:
        """Approve (with a quantity) or refuse ``proposal``, naming every failed check."""
        if market.symbol != proposal.symbol:
            raise ValueError(f"market view is for {market.symbol}, proposal for {proposal.symbol}")
        self._roll_day(now_ms, account.equity, account.unrealised_pnl)
        self.state.equity = account.equity
        self.state.unrealised_pnl = account.unrealised_pnl
        if proposal.reduce_only:
            return self._validate_close(proposal, account, market, now_ms)
        violations: list[Violation] = []
        if proposal.quantity is None:
            sized = self.size(proposal, account, market)
            quantity = sized.quantity
            if sized.refusal is not None:
                violations.append(Violation(Reason(sized.refusal.value), sized.detail))
        else:
            quantity = market.rules.round_quantity(max(proposal.quantity, ZERO))
            violations.extend(grid_violations(market.rules, quantity, proposal.reference_price))
        daily_pnl = self.state.daily_pnl(account.unrealised_pnl)
        self._latch_daily(daily_pnl, now_ms)
        state = self.state
        gate = GateState(
            trading_enabled=self.trading_enabled,
            halted=state.halted,
            cooldown_until_ms=(state.last_loss_ms + self.limits.cooldown_after_loss_ms)
            if state.last_loss_ms is not None
            else 0,
            breakers=tuple(state.breakers.blocking(now_ms)),
            daily_pnl=daily_pnl,
            day_start_equity=state.day_start_equity,
            daily_latched=tuple(Reason(r) for r in state.daily_limit_hit),
            orders_last_minute=self.orders_last_minute(now_ms),
        )
        violations.extend(gate_violations(self.limits, gate, now_ms))
        violations.extend(order_violations(self.limits, proposal, quantity, account, market, now_ms))
        if violations:
            return RiskResult(False, ZERO, tuple(violations))
        self._orders.append(now_ms)
        return RiskResult(True, quantity)

    def _validate_close(
        self, proposal: TradeProposal, account: AccountView, market: MarketView, now_ms: int
    ) -> RiskResult:
        held = account.position(proposal.symbol)
        if held * proposal.side.sign >= 0:
            detail = f"no {'short' if proposal.side is Side.BUY else 'long'} position in {proposal.symbol}"
            return RiskResult(False, ZERO, (Violation(Reason.NOTHING_TO_REDUCE, detail),))
        quantity = abs(held)
        if proposal.quantity is not None and proposal.quantity < quantity:  # a partial close, on the grid
            quantity = market.rules.round_quantity(max(proposal.quantity, ZERO), market=True)
            if quantity <= 0:
                detail = f"close quantity {proposal.quantity} is below the step"
                return RiskResult(False, ZERO, (Violation(Reason.BELOW_MIN_QUANTITY, detail),))
        self._orders.append(now_ms)
        return RiskResult(True, quantity)

    # -- updates ---------------------------------------------------------------------------------
    def on_fill(self, symbol: str, quantity: Decimal, price: Decimal, fee: Decimal, now_ms: int) -> None:
        """A fill of ours: its fee counts toward today's PnL (positions come from the account)."""
        self._roll_day(now_ms)
        self.state.day_fees += fee
        logger.debug("fill %s %s @ %s fee %s", symbol, quantity, price, fee)
        self._commit(now_ms)

    def on_close(self, symbol: str, realised_pnl: Decimal, now_ms: int, fees: Decimal = ZERO) -> None:
        """A closed trade: ``realised_pnl`` gross (fees already came via :meth:`on_fill`).

        ``fees`` (the trade's fees) only classify the trade: a loss is ``realised_pnl - fees < 0``.
        """
        self._roll_day(now_ms)
        state = self.state
        state.day_realised_pnl += realised_pnl
        net = realised_pnl - fees
        state.trades += 1
        if net > 0:
            state.wins += 1
        elif net < 0:
            state.losses += 1
            state.last_loss_ms = now_ms
        self._record(state.breakers.record_trade(net, now_ms, self.breaker_params))
        self._latch_daily(state.daily_pnl(), now_ms)
        logger.info("closed %s: realised %s, net %s", symbol, realised_pnl, net)
        self._commit(now_ms)

    def on_equity(self, equity: Decimal, unrealised_pnl: Decimal, now_ms: int) -> None:
        """The account's equity (wallet + unrealised); call it every beat (it also picks up resets)."""
        self._roll_day(now_ms, equity, unrealised_pnl)
        state = self.state
        state.equity = equity
        state.unrealised_pnl = unrealised_pnl
        state.peak_equity = max(state.peak_equity, equity)
        self._record(state.breakers.record_equity(equity, now_ms, self.breaker_params))
        self._latch_daily(state.daily_pnl(), now_ms)
        self._commit(now_ms)

    def on_exchange_error(self, now_ms: int, detail: str = "") -> None:
        """An exchange error (after retries): a burst of them trips the error breaker."""
        trip = self.state.breakers.record_error(now_ms, self.breaker_params)
        if trip is not None:
            self._record(trip)
            self._commit(now_ms)
        elif detail:
            logger.debug("exchange error noted: %s", detail)

    def on_quorum(self, votes: int, now_ms: int) -> None:
        """One heartbeat with ``votes`` model votes; fewer than the quorum, beat after beat, trips."""
        breakers = self.state.breakers
        before = breakers.quorum_misses
        self._record(breakers.record_quorum(votes >= self.quorum, now_ms, self.breaker_params))
        if breakers.quorum_misses != before:
            self._commit(now_ms)

    def halt(self, reason: str, now_ms: int) -> None:
        """Refuse every entry from now on, persisted at once; only a reset resumes."""
        state = self.state
        if not state.halted:
            state.halted, state.halted_reason, state.halted_ms = True, reason, now_ms
            state.event(now_ms, "halt", reason)
            logger.critical("risk: HALTED (%s); only `xylen risk reset` resumes", reason)
        self._commit(now_ms)

    async def halt_and_cancel_entries(
        self, executor: EntryCanceller, reason: str, now_ms: int, symbols: tuple[str, ...] = ()
    ) -> ShutdownReport:
        """Halt (persisted first), then cancel the resting entries on ``symbols``; stops stay.

        A failing cancel is logged and reported, the other symbols still run; the halt stands.
        """
        self.halt(reason, now_ms)
        report = ShutdownReport()
        for symbol in sorted(set(symbols)):
            try:
                await executor.cancel_entry_orders(symbol)
                report.cancelled.append(symbol)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                report.errors.append(f"cancel_entry_orders {symbol}: {exc!r}")
        for error in report.errors:
            logger.error("halt: %s", error)
        self.state.event(
            now_ms,
            "halt_entries_cancelled",
            f"cancelled on {report.cancelled}, {len(report.errors)} error(s)",
        )
        self._commit(now_ms)
        return report

    async def emergency_shutdown(
        self, executor: Executor, reason: str, now_ms: int, symbols: tuple[str, ...] = ()
    ) -> ShutdownReport:
        """Halt (persisted first), cancel all open orders, close every position reduce-only.

        Order: the halt is written; orders are cancelled on ``symbols`` (the traded symbols) so no
        entry can fill behind our back; positions are read, orders cancelled on any other symbol
        holding one; every position is closed.  A failing step is logged and reported, the others
        still run; the halt stands either way.
        """
        self.halt(reason, now_ms)
        report = ShutdownReport()
        await self._cancel(executor, sorted(set(symbols)), report)
        positions: list[OpenPosition] = []
        try:
            positions = list(await executor.open_positions())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            report.errors.append(f"open_positions: {exc!r}")
        await self._cancel(executor, sorted({p.symbol for p in positions} - set(symbols)), report)
        for position in positions:
            if not position.quantity:
                continue
            side = "SELL" if position.quantity > 0 else "BUY"
            try:
                await executor.close_position_reduce_only(position.symbol, side, abs(position.quantity))
                report.closed.append((position.symbol, side, abs(position.quantity)))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                report.errors.append(f"close {position.symbol}: {exc!r}")
        for error in report.errors:
            logger.error("emergency shutdown: %s", error)
        self.state.event(
            now_ms,
            "emergency_shutdown",
            f"cancelled {report.cancelled}, closed {len(report.closed)}, {len(report.errors)} error(s)",
        )
        self._commit(now_ms)
        return report

    @staticmethod
    async def _cancel(executor: Executor, symbols: list[str], report: ShutdownReport) -> None:
        for symbol in symbols:
            try:
                await executor.cancel_all_orders(symbol)
                report.cancelled.append(symbol)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                report.errors.append(f"cancel_all_orders {symbol}: {exc!r}")

    def reset(self, actor: str, now_ms: int, note: str = "") -> None:
        """Clear the halt and the breakers (what ``xylen risk reset`` does to the file)."""
        if self.store is not None:
            reset_risk(self.store.conn, actor, now_ms, note)
            self._commit(now_ms)  # picks the new generation up and applies it
        else:
            self.state.apply_reset()
            self.state.event(now_ms, "reset", note, actor)

    # -- internals -------------------------------------------------------------------------------
    def _roll_day(
        self, now_ms: int, equity: Decimal | None = None, unrealised: Decimal | None = None
    ) -> None:
        """At the first event of a new UTC day: fresh day figures, limits lifted."""
        day = utc_day(now_ms)
        state = self.state
        if day <= state.day:
            return
        state.day = day
        state.day_start_equity = state.equity if equity is None else equity
        state.day_start_unrealised = state.unrealised_pnl if unrealised is None else unrealised
        state.day_realised_pnl = ZERO
        state.day_fees = ZERO
        state.daily_limit_hit = ()
        self._commit(now_ms)

    def _latch_daily(self, daily_pnl: Decimal, now_ms: int) -> None:
        reached = daily_loss_reached(self.limits, daily_pnl, self.state.day_start_equity)
        new = [r.value for r in reached if r.value not in self.state.daily_limit_hit]
        if new:
            self.state.daily_limit_hit += tuple(new)
            self.state.event(now_ms, "daily_limit", f"{','.join(new)} reached: daily PnL {daily_pnl}")
            logger.warning("risk: daily loss limit reached (%s), daily PnL %s", ",".join(new), daily_pnl)
            self._commit(now_ms)

    def _record(self, trip: Trip | None) -> None:
        if trip is not None:
            pause = f"pause {trip.cooldown_ms} ms ({readable_ms(trip.cooldown_ms)})"
            self.state.event(trip.at_ms, f"breaker:{trip.kind.value}", f"{trip.detail}; {pause}")
            logger.warning("risk: breaker %s tripped (%s), %s", trip.kind.value, trip.detail, pause)

    def _commit(self, now_ms: int) -> None:
        self.state.updated_ms = max(self.state.updated_ms, now_ms)
        if self.store is None:
            self.state.pending_events.clear()  # logged already; nowhere to keep them
        elif self.store.save(self.state):
            logger.warning("risk: reset by the operator picked up; entries allowed again")
