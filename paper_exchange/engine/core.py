"""The engine: account settings, the walk along the replay path, and restore from a snapshot.

:meth:`Engine.advance` walks every symbol's path from the last processed time to ``to_ts``,
leg by leg (a leg is a third of a candle, see :mod:`paper_exchange.feed`).  Within a leg it
repeatedly finds the earliest thing that happens - an algo trigger, a resting order being
crossed, a position reaching its liquidation price - executes it at that moment and looks
again from there, so fills, triggers and liquidations happen in time order across symbols and
accounts (ties: triggers, then fills, then liquidations).  Funding is settled when the walk
reaches 00:00, 08:00 or 16:00 UTC; after every leg a margin check liquidates anything still
below maintenance.  Everything is synchronous and deterministic: the same calls on the same
data give the same state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from paper_exchange.engine.errors import (
    MSG_DUAL_ORDERS,
    MSG_DUAL_POSITION,
    MSG_DUAL_SAME,
    MSG_LEVERAGE,
    MSG_LEVERAGE_MARGIN,
    MSG_MARGIN_ORDERS,
    MSG_MARGIN_POSITION,
    MSG_MARGIN_SAME,
    ApiError,
)
from paper_exchange.engine.matching import cross_time, participation_qty, taker_price, through_time
from paper_exchange.engine.models import (
    FUNDING_INTERVAL_MS,
    ZERO,
    Account,
    AlgoOrder,
    Changes,
    Income,
    Order,
    Position,
    SymbolSettings,
    Trade,
)
from paper_exchange.engine.settlement import Settlement
from paper_exchange.engine.state import EngineConfig

if TYPE_CHECKING:
    from paper_exchange.feed import Leg, ReplayFeed

logger = logging.getLogger(__name__)

MAX_LEVERAGE = 125
# Notional caps by leverage (BTCUSDT-like brackets); reported, not enforced.
_MAX_NOTIONAL = ((125, 50_000), (100, 250_000), (50, 3_000_000), (20, 12_000_000), (10, 70_000_000))


def notional_brackets() -> list[tuple[int, int, int]]:
    """``(initialLeverage, notionalFloor, notionalCap)`` of each bracket, lowest notional first.

    The brackets behind :func:`max_notional`, as ``GET /fapi/v1/leverageBracket`` lists them.
    """
    out = []
    floor = 0
    for cap_leverage, cap in _MAX_NOTIONAL:
        out.append((cap_leverage, floor, cap))
        floor = cap
    return out


def max_notional(leverage: int) -> int:
    """The maxNotionalValue Binance reports for ``leverage`` (BTCUSDT-like brackets)."""
    for cap, value in reversed(_MAX_NOTIONAL):
        if leverage <= cap:
            return value
    return _MAX_NOTIONAL[0][1]


@dataclass
class Snapshot:
    """Everything the store keeps, as loaded back."""

    accounts: list[Account] = field(default_factory=list)
    settings: list[SymbolSettings] = field(default_factory=list)
    positions: list[Position] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    algos: list[AlgoOrder] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    incomes: list[Income] = field(default_factory=list)
    clock_ms: int | None = None


class Engine(Settlement):
    """The deterministic matching/margin engine of the paper exchange."""

    def __init__(
        self, feed: ReplayFeed, config: EngineConfig | None = None, start_ms: int | None = None
    ) -> None:
        super().__init__(
            feed, config or EngineConfig(), start_ms if start_ms is not None else feed.first_open()
        )
        self._leg_usage: dict[int, tuple[int, Decimal]] = {}

    # -- settings -----------------------------------------------------------------------------------
    def set_leverage(self, account: str, symbol: str, leverage: int) -> SymbolSettings:
        self.spec(symbol)
        if not 1 <= leverage <= MAX_LEVERAGE:
            raise ApiError(-4028, MSG_LEVERAGE.format(leverage))
        self.account(account)
        setting = self.setting(account, symbol)
        previous = setting.leverage
        setting.leverage = leverage
        if leverage < previous and self.account_view(account).available < 0:
            # Lowering leverage raises the margin of the positions and orders already open:
            # refused, as Binance does, when the account cannot fund it.
            setting.leverage = previous
            raise ApiError(-2028, MSG_LEVERAGE_MARGIN)
        self.touch_setting(setting)
        return setting

    def set_margin_type(self, account: str, symbol: str, margin_type: str) -> SymbolSettings:
        self.spec(symbol)
        self.account(account)
        setting = self.setting(account, symbol)
        if setting.margin_type == margin_type:
            raise ApiError(-4046, MSG_MARGIN_SAME)
        if any(p.amount != 0 and p.symbol == symbol for p in self.account_positions(account)):
            raise ApiError(-4048, MSG_MARGIN_POSITION)
        if self.has_open_orders(account, symbol):
            raise ApiError(-4047, MSG_MARGIN_ORDERS)
        setting.margin_type = margin_type
        self.touch_setting(setting)
        return setting

    def set_dual_side(self, account: str, dual: bool) -> None:
        acct = self.account(account)
        if acct.dual_side == dual:
            raise ApiError(-4059, MSG_DUAL_SAME)
        if any(p.amount != 0 for p in self.account_positions(account)):
            raise ApiError(-4068, MSG_DUAL_POSITION)
        if self.has_open_orders(account):
            raise ApiError(-4067, MSG_DUAL_ORDERS)
        acct.dual_side = dual
        self.touch_account(acct)

    # -- quotes -------------------------------------------------------------------------------------
    def quote(self, symbol: str) -> tuple[Decimal, Decimal, Decimal]:
        """``(bid, ask, size)`` the engine honours now (the ``bookTicker`` rule).

        The ask is what a MARKET BUY fills at (the path price plus ``slippage_bps``, on the tick),
        the bid what a MARKET SELL fills at, each at least one tick away from the path price: a
        post-only BUY at the bid (SELL at the ask) rests as a maker, one at the ask takes.  The size
        on either side is what a resting order may fill in the current leg (``participation`` x
        the leg's volume, rounded down to the step).
        """
        spec = self.spec(symbol)
        mark = self.mark(symbol)
        tick = spec.tick_size
        bid = min(taker_price(mark, "SELL", self.config.slippage_bps, tick), mark - tick)
        ask = max(taker_price(mark, "BUY", self.config.slippage_bps, tick), mark + tick)
        _start, volume = self.feed.full_leg(symbol, self.now)
        return bid, ask, participation_qty(volume, self.config.participation, spec.step_size)

    # -- the walk -----------------------------------------------------------------------------------
    def _busy(self) -> bool:
        if self.open_orders or self.open_algos:
            return True
        return any(p.amount != 0 for book in self.positions.values() for p in book.values())

    def advance(self, to_ts: int, commit: bool = True) -> None:
        """Process everything that happens on the path up to ``to_ts`` (a no-op for the past).

        With ``commit`` (the default) the changes are committed and the events published at
        the end; the service passes False and finishes once after the request it serves.
        """
        if to_ts <= self.now:
            return
        try:
            if not self._busy():
                self.now = to_ts
            else:
                start = self.now
                for end in [*self.feed.breakpoints(start, to_ts), to_ts]:
                    self._walk(start, end)
                    self.now = end
                    if end % FUNDING_INTERVAL_MS == 0:
                        self.settle_funding(end)
                    self.check_liquidations()
                    start = end
            self._changes.clock_ms = self.now
        except Exception:
            self.discard()
            raise
        if commit:
            self.finish()

    def _walk(self, start: int, end: int) -> None:
        legs: dict[str, Leg | None] = {}

        def leg_of(symbol: str) -> Leg | None:
            if symbol not in legs:
                legs[symbol] = self.feed.leg(symbol, start, end)
            return legs[symbol]

        handled: set[tuple[object, ...]] = set()
        t = start
        while True:
            best: tuple[int, int, tuple[object, ...], object] | None = None
            for algo in self.open_algos.values():
                leg = leg_of(algo.symbol)
                key: tuple[object, ...] = ("a", algo.algo_id)
                if leg is None or key in handled:
                    continue
                when = self.algo_cross(algo, leg, t)
                if when is not None and (best is None or (when, 0) < best[:2]):
                    best = (when, 0, key, algo)
            for order in self.open_orders.values():
                leg = leg_of(order.symbol)
                key = ("o", order.order_id)
                if leg is None or key in handled:
                    continue
                # a resting limit fills only when the market trades through its price (a touch leaves
                # it in the queue behind the orders already resting there)
                when = through_time(leg, t, float(order.price), order.side == "BUY")
                if when is not None and (best is None or (when, 1) < best[:2]):
                    best = (when, 1, key, order)
            for book in self.positions.values():
                for pos in book.values():
                    if pos.amount == 0:
                        continue
                    leg = leg_of(pos.symbol)
                    key = ("l", pos.account, pos.symbol, pos.position_side)
                    if leg is None or key in handled:
                        continue
                    level = self.liquidation_level(pos)
                    if level <= 0:
                        continue
                    when = cross_time(leg, t, float(level), pos.amount > 0)
                    if when is not None and (best is None or (when, 2) < best[:2]):
                        best = (when, 2, key, pos)
            if best is None:
                break
            when, _prio, key, target = best
            self.sweep_trailing(legs, t, when)
            t = when
            self.now = when
            handled.add(key)
            if isinstance(target, AlgoOrder):
                self.trigger_algo(target)
            elif isinstance(target, Order):
                leg = legs[target.symbol]
                if leg is None:
                    raise RuntimeError(f"{target.symbol}: a resting order to fill without a candle")
                self._fill_resting(target, leg)
            elif isinstance(target, Position):
                found = self.to_liquidate(target.account)
                if found:
                    self.liquidate(found)
        self.sweep_trailing(legs, t, end)

    def _fill_resting(self, order: Order, leg: Leg) -> None:
        """Fill a crossed resting order within its participation allowance for the current leg.

        The allowance is ``participation`` x the volume of the whole leg (third of a candle)
        however finely the clock cuts it; what an order used of it is remembered in memory.
        """
        spec = self.specs[order.symbol]
        start, volume = self.feed.full_leg(order.symbol, (leg.t0 + leg.t1) // 2)
        cap = participation_qty(volume, self.config.participation, spec.step_size)
        used_start, used = self._leg_usage.get(order.order_id, (start, ZERO))
        if used_start != start:
            used = ZERO
        qty = min(order.remaining, cap - used)
        if self.closes_only(order.position_side, order.side, order.reduce_only):
            room = self.reducible(order.account, order.symbol, order.side, order.position_side)
            if room <= 0:
                self.end_order(order, "expire", "EXPIRED")
                return
            qty = min(qty, room)
        if qty > 0:
            self._leg_usage[order.order_id] = (start, used + qty)
            self.fill(order, qty, order.price, maker=True)
        if not order.is_open:
            self._leg_usage.pop(order.order_id, None)

    # -- persistence --------------------------------------------------------------------------------
    def take_changes(self) -> Changes:
        """Hand over (and forget) what changed since the last commit."""
        changes, self._changes = self._changes, Changes()
        return changes

    def restore(self, snap: Snapshot) -> None:
        """Rebuild the state from a snapshot (replaces everything)."""
        self.accounts = {a.key: a for a in snap.accounts}
        self.settings = {(s.account, s.symbol): s for s in snap.settings}
        self.positions = {}
        for pos in snap.positions:
            self.positions.setdefault(pos.account, {})[(pos.symbol, pos.position_side)] = pos
        self.orders = {}
        self.open_orders = {}
        self.client_ids = {}
        self.order_agg = {}
        for order in sorted(snap.orders, key=lambda o: o.order_id):
            self.orders[order.order_id] = order
            self.client_ids[(order.account, order.symbol, order.client_order_id)] = order.order_id
            if order.is_open:
                self.open_orders[order.order_id] = order
                self.agg_update(order, order.remaining, order.price)
        self.algos = {}
        self.open_algos = {}
        self.algo_client_ids = {}
        for algo in sorted(snap.algos, key=lambda a: a.algo_id):
            self.algos[algo.algo_id] = algo
            self.algo_client_ids[(algo.account, algo.client_algo_id)] = algo.algo_id
            if algo.status.value == "NEW":
                self.open_algos[algo.algo_id] = algo
        self.trades = {}
        self.order_trades = {}
        for trade in sorted(snap.trades, key=lambda t: t.trade_id):
            self.trades.setdefault(trade.account, []).append(trade)
            self.order_trades.setdefault((trade.account, trade.order_id), []).append(trade)
        self.next_order_id = max(self.orders, default=0) + 1
        self.next_algo_id = max(self.algos, default=0) + 1
        self.next_trade_id = max((t.trade_id for t in snap.trades), default=0) + 1
        self.incomes = {}
        for income in sorted(snap.incomes, key=lambda i: i.tran_id):
            self.incomes.setdefault(income.account, []).append(income)
        self.next_tran_id = max((i.tran_id for i in snap.incomes), default=0) + 1
        if snap.clock_ms is not None:
            self.now = snap.clock_ms
        self._mark_cache = (-1, {})
        self.discard()

    def equity_check(self, account: str) -> Decimal:
        """``wallet - (deposit + realised - fees + funding)``: zero when the books balance."""
        acct = self.account(account)
        return acct.wallet - (acct.deposit + acct.realized_pnl - acct.fees + acct.funding)
