"""Engine state, margin bookkeeping and the commit/publish cycle shared by all engine parts.

Margin rules (simplifications of Binance's, documented):

* ``wallet`` (walletBalance) = deposit + realised PnL - fees + funding; isolated positions'
  margin (``isolated_wallet``) is part of it, the cross wallet is the rest.
* Opening or increasing an isolated position moves ``fill notional / leverage`` from the
  cross wallet into its isolated wallet; a reduction releases the same share back; funding of
  an isolated position is paid from/to its isolated wallet.
* Open-order margin per symbol (one-way mode): the part of each side's resting LIMIT quantity
  that would open exposure (beyond the opposite position), valued at the limit prices, divided
  by the leverage; the larger of the two sides counts.  Hedge mode: BUY/LONG plus SELL/SHORT.
  Reduce-only orders need none.
* availableBalance = cross wallet + cross unrealised PnL - cross initial margin - open-order
  margin.  A new order needs ``opening qty x price / leverage`` of it, else -2019.

Every operation collects what it changed in a :class:`Changes`; :meth:`EngineState.finish`
hands it to ``on_commit`` (the SQLite store) and only then delivers the buffered user-data
events to the subscribers, so a client never sees an event for an unsaved change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from paper_exchange.engine import positions as pm
from paper_exchange.engine.errors import MSG_INVALID_SYMBOL, ApiError
from paper_exchange.engine.events import account_update
from paper_exchange.engine.instruments import SymbolSpec, spec_for
from paper_exchange.engine.models import (
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

if TYPE_CHECKING:
    from paper_exchange.feed import ReplayFeed

logger = logging.getLogger(__name__)

Subscriber = Callable[[str, dict[str, object]], None]


@dataclass(frozen=True)
class EngineConfig:
    """Economic parameters of the simulated venue."""

    balance: Decimal = Decimal(10_000)
    taker_fee: Decimal = Decimal("0.0005")
    maker_fee: Decimal = Decimal("0.0002")
    slippage_bps: Decimal = Decimal(1)
    participation: Decimal = Decimal("0.1")
    default_leverage: int = 20
    maint_margin_rate: Decimal = Decimal("0.004")


@dataclass(frozen=True)
class MarkedPosition:
    """A position valued at the current mark price."""

    position: Position
    spec: SymbolSpec
    mark: Decimal
    unrealized: Decimal
    notional: Decimal
    initial_margin: Decimal
    maint_margin: Decimal
    open_order_margin: Decimal
    liquidation_price: Decimal
    break_even: Decimal
    leverage: int
    margin_type: str


@dataclass(frozen=True)
class AccountView:
    """Account totals at the current mark prices."""

    wallet: Decimal
    cross_wallet: Decimal
    unrealized: Decimal
    cross_unrealized: Decimal
    position_initial_margin: Decimal
    open_order_margin: Decimal
    maint_margin: Decimal
    available: Decimal

    @property
    def margin_balance(self) -> Decimal:
        return self.wallet + self.unrealized

    @property
    def initial_margin(self) -> Decimal:
        return self.position_initial_margin + self.open_order_margin


class EngineState:
    """All mutable state of the paper exchange, plus the helpers every engine part uses."""

    def __init__(self, feed: ReplayFeed, config: EngineConfig, start_ms: int) -> None:
        self.feed = feed
        self.config = config
        self.specs: dict[str, SymbolSpec] = {s: spec_for(s, feed.reference_price(s)) for s in feed.symbols}
        self.now = start_ms
        self.accounts: dict[str, Account] = {}
        self.settings: dict[tuple[str, str], SymbolSettings] = {}
        self.positions: dict[str, dict[tuple[str, str], Position]] = {}
        self.orders: dict[int, Order] = {}
        self.open_orders: dict[int, Order] = {}
        self.client_ids: dict[tuple[str, str, str], int] = {}
        self.algos: dict[int, AlgoOrder] = {}
        self.open_algos: dict[int, AlgoOrder] = {}
        self.algo_client_ids: dict[tuple[str, str], int] = {}
        self.trades: dict[str, list[Trade]] = {}
        self.order_trades: dict[tuple[str, int], list[Trade]] = {}  # (account, order id) -> its fills
        self.incomes: dict[str, list[Income]] = {}
        self.order_agg: dict[tuple[str, str, str, str], list[Decimal]] = {}
        self.next_order_id = 1
        self.next_algo_id = 1
        self.next_trade_id = 1
        self.next_tran_id = 1
        self.on_commit: Callable[[Changes], None] | None = None
        self._changes = Changes()
        self._events: list[tuple[str, dict[str, object]]] = []
        self._subscribers: list[Subscriber] = []
        self._mark_cache: tuple[int, dict[str, Decimal]] = (-1, {})

    # -- lookup -------------------------------------------------------------------------------------
    def spec(self, symbol: str) -> SymbolSpec:
        spec = self.specs.get(symbol)
        if spec is None:
            raise ApiError(-1121, MSG_INVALID_SYMBOL)
        return spec

    def mark(self, symbol: str) -> Decimal:
        """The path price of ``symbol`` now, on the tick (-1121 before the symbol's data starts)."""
        when, cache = self._mark_cache
        if when != self.now:
            cache = {}
            self._mark_cache = (self.now, cache)
        price = cache.get(symbol)
        if price is None:
            raw = self.feed.price_at(symbol, self.now)
            if raw is None:
                raise ApiError(-1121, MSG_INVALID_SYMBOL)
            price = self.spec(symbol).round_price(raw)
            cache[symbol] = price
        return price

    def account(self, key: str) -> Account:
        acct = self.accounts.get(key)
        if acct is None:
            acct = Account(key, self.config.balance, self.config.balance, update_time=self.now)
            self.accounts[key] = acct
            self._changes.accounts[key] = acct
        return acct

    def setting(self, account: str, symbol: str) -> SymbolSettings:
        found = self.settings.get((account, symbol))
        return found if found is not None else SymbolSettings(account, symbol, self.config.default_leverage)

    def position(self, account: str, symbol: str, position_side: str) -> Position:
        book = self.positions.setdefault(account, {})
        pos = book.get((symbol, position_side))
        if pos is None:
            pos = Position(account, symbol, position_side)
            book[(symbol, position_side)] = pos
        return pos

    def account_positions(self, account: str) -> list[Position]:
        return list(self.positions.get(account, {}).values())

    # -- change tracking and events -----------------------------------------------------------------
    def touch_account(self, acct: Account) -> None:
        acct.update_time = self.now
        self._changes.accounts[acct.key] = acct

    def touch_position(self, pos: Position) -> None:
        pos.update_time = self.now
        self._changes.positions[(pos.account, pos.symbol, pos.position_side)] = pos

    def touch_order(self, order: Order) -> None:
        order.update_time = self.now
        self._changes.orders[order.order_id] = order

    def touch_algo(self, algo: AlgoOrder) -> None:
        algo.update_time = self.now
        self._changes.algos[algo.algo_id] = algo

    def touch_setting(self, setting: SymbolSettings) -> None:
        self.settings[(setting.account, setting.symbol)] = setting
        self._changes.settings[(setting.account, setting.symbol)] = setting

    def add_trade(self, trade: Trade) -> None:
        """Record a fill, and its commission and realised PnL as income entries (when not zero)."""
        self.trades.setdefault(trade.account, []).append(trade)
        self.order_trades.setdefault((trade.account, trade.order_id), []).append(trade)
        self._changes.trades.append(trade)
        if trade.commission != 0:
            self.add_income(trade.account, trade.symbol, "COMMISSION", -trade.commission, trade.trade_id)
        if trade.realized_pnl != 0:
            self.add_income(trade.account, trade.symbol, "REALIZED_PNL", trade.realized_pnl, trade.trade_id)

    def add_income(
        self, account: str, symbol: str, income_type: str, amount: Decimal, trade_id: int = 0
    ) -> None:
        """Append one income-history entry at the current replay time."""
        income = Income(self.next_tran_id, account, symbol, income_type, amount, self.now, trade_id)
        self.next_tran_id += 1
        self.incomes.setdefault(account, []).append(income)
        self._changes.incomes.append(income)

    def emit(self, account: str, event: dict[str, object]) -> None:
        self._events.append((account, event))

    def emit_account_update(
        self, account: str, reason: str, change: Decimal, changed: list[Position]
    ) -> None:
        acct = self.account(account)
        rows = []
        for pos in changed:
            view = self.position_view(pos)
            rows.append((pos, view.spec, view.unrealized, view.break_even, view.margin_type))
        cross = acct.wallet - self.isolated_total(account)
        self.emit(account, account_update(reason, acct.wallet, cross, change, rows, self.now))

    def subscribe(self, callback: Subscriber) -> None:
        """Register ``callback(account, event)`` for user-data events (must be cheap, never block)."""
        self._subscribers.append(callback)

    def finish(self) -> None:
        """Commit what changed (``on_commit``), then deliver the buffered events."""
        changes, self._changes = self._changes, Changes()
        if changes and self.on_commit is not None:
            self.on_commit(changes)
        events, self._events = self._events, []
        for account, event in events:
            for callback in self._subscribers:
                try:
                    callback(account, event)
                except Exception:
                    logger.exception("user-data subscriber failed on %s", event.get("e"))

    def discard(self) -> None:
        """Forget uncommitted changes and events (after a failure half-way; state is rebuilt by a reload)."""
        self._changes = Changes()
        self._events = []

    # -- open-order aggregates ----------------------------------------------------------------------
    def agg_update(self, order: Order, qty: Decimal, price: Decimal) -> None:
        """Add (``qty`` > 0) or remove (``qty`` < 0) resting quantity of a margin-using order."""
        if order.reduce_only or order.type != "LIMIT":
            return
        key = (order.account, order.symbol, order.side, order.position_side)
        agg = self.order_agg.setdefault(key, [ZERO, ZERO])
        agg[0] += qty
        agg[1] += qty * price
        if agg[0] <= 0:
            del self.order_agg[key]

    def open_order_margin(self, account: str, symbol: str, leverage: int) -> Decimal:
        """Initial margin held by resting orders of ``account`` on ``symbol``."""
        agg = self.order_agg
        book = self.positions.get(account, {})
        if self.account(account).dual_side:
            total = ZERO
            for side, ps in (("BUY", "LONG"), ("SELL", "SHORT")):
                found = agg.get((account, symbol, side, ps))
                if found:
                    total += found[1]
            return total / leverage
        both = book.get((symbol, "BOTH"))
        amount = both.amount if both else ZERO
        sides = []
        for side, opposite in (("BUY", max(ZERO, -amount)), ("SELL", max(ZERO, amount))):
            found = agg.get((account, symbol, side, "BOTH"))
            if not found or found[0] <= opposite:
                sides.append(ZERO)
                continue
            sides.append(found[1] * (found[0] - opposite) / found[0])
        return max(sides) / leverage

    def has_open_orders(self, account: str, symbol: str | None = None) -> bool:
        for order in self.open_orders.values():
            if order.account == account and (symbol is None or order.symbol == symbol):
                return True
        for algo in self.open_algos.values():
            if algo.account == account and (symbol is None or algo.symbol == symbol):
                return True
        return False

    # -- valuation ----------------------------------------------------------------------------------
    def isolated_total(self, account: str) -> Decimal:
        total = ZERO
        for pos in self.positions.get(account, {}).values():
            if pos.isolated_wallet:
                total += pos.isolated_wallet
        return total

    def position_view(self, pos: Position) -> MarkedPosition:
        spec = self.spec(pos.symbol)
        setting = self.setting(pos.account, pos.symbol)
        mark = self.mark(pos.symbol)
        mmr = self.config.maint_margin_rate
        mm = pm.maint_margin(pos, mark, mmr)
        if pos.amount == 0:
            liq = ZERO
        elif setting.margin_type == "ISOLATED":
            liq = pm.liquidation_price(pos.amount, pos.entry_price, pos.isolated_wallet, mmr)
        else:
            others = ZERO
            for other in self.positions.get(pos.account, {}).values():
                if other is pos or other.amount == 0:
                    continue
                if self.setting(other.account, other.symbol).margin_type == "ISOLATED":
                    continue
                omark = self.mark(other.symbol)
                others += pm.unrealized(other, omark) - pm.maint_margin(other, omark, mmr)
            acct = self.account(pos.account)
            cross = acct.wallet - self.isolated_total(pos.account)
            liq = pm.liquidation_price(pos.amount, pos.entry_price, cross + others, mmr)
        return MarkedPosition(
            position=pos,
            spec=spec,
            mark=mark,
            unrealized=pm.unrealized(pos, mark),
            notional=pm.notional(pos, mark),
            initial_margin=pm.initial_margin(pos, mark, setting.leverage),
            maint_margin=mm,
            open_order_margin=self.open_order_margin(pos.account, pos.symbol, setting.leverage),
            liquidation_price=spec.round_price(liq) if liq else ZERO,
            break_even=pm.break_even(pos, self.config.taker_fee),
            leverage=setting.leverage,
            margin_type=setting.margin_type,
        )

    def account_view(self, account: str) -> AccountView:
        acct = self.account(account)
        upnl = cross_upnl = pos_im = mm = ZERO
        symbols: set[str] = set()
        for pos in self.positions.get(account, {}).values():
            symbols.add(pos.symbol)
            if pos.amount == 0:
                continue
            mark = self.mark(pos.symbol)
            setting = self.setting(account, pos.symbol)
            u = pm.unrealized(pos, mark)
            upnl += u
            mm += pm.maint_margin(pos, mark, self.config.maint_margin_rate)
            pos_im += pm.initial_margin(pos, mark, setting.leverage)
            if setting.margin_type != "ISOLATED":
                cross_upnl += u
        for acct_key, symbol, _side, _ps in self.order_agg:
            if acct_key == account:
                symbols.add(symbol)
        order_margin = ZERO
        for symbol in symbols:
            order_margin += self.open_order_margin(account, symbol, self.setting(account, symbol).leverage)
        isolated = self.isolated_total(account)
        cross_wallet = acct.wallet - isolated
        cross_im = ZERO
        for pos in self.positions.get(account, {}).values():
            if pos.amount and self.setting(account, pos.symbol).margin_type != "ISOLATED":
                cross_im += pm.initial_margin(
                    pos, self.mark(pos.symbol), self.setting(account, pos.symbol).leverage
                )
        available = cross_wallet + cross_upnl - cross_im - order_margin
        return AccountView(
            wallet=acct.wallet,
            cross_wallet=cross_wallet,
            unrealized=upnl,
            cross_unrealized=cross_upnl,
            position_initial_margin=pos_im,
            open_order_margin=order_margin,
            maint_margin=mm,
            available=available,
        )
