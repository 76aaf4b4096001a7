"""Trade validation: the input types and the checks, each with a named :class:`Reason`.

Everything here is synchronous and pure: the checks read a :class:`GateState` (what the manager
knows: halted, cooldowns, breakers, the day's PnL, recent orders) and the proposal, account and
market views, and return every failing check as a :class:`Violation` -- all of them, not the
first.  :class:`~coordinator.risk.manager.RiskManager` builds the inputs and keeps the state.

Notional conventions: existing positions are valued at their own mark price; the proposal's symbol
is valued, after the trade, at the proposal's reference price (the price we expect to trade at).
Exposure, leverage and open-position limits refuse an order only when it *increases* the quantity
they measure beyond the limit, so an order that shrinks an oversized book is never refused by them.

Closing (reduce-only) orders are not checked here at all: closing is always allowed, even when
halted or with a breaker tripped (see :mod:`coordinator.risk.manager`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from coordinator.exchange.filters import SymbolRules
from coordinator.risk.breakers import BreakerKind
from coordinator.side import Side
from xylen.config.schema import RiskConfig

ZERO = Decimal(0)
MINUTE_MS = 60_000


class Reason(str, Enum):
    """Why an order is refused.  Values are stable: logs, metrics and the dashboard use them."""

    TRADING_DISABLED = "trading_disabled"
    HALTED = "halted"
    COOLDOWN = "cooldown_after_loss"
    BREAKER_CONSECUTIVE_LOSSES = "breaker_consecutive_losses"
    BREAKER_DRAWDOWN = "breaker_drawdown"
    BREAKER_ERROR_BURST = "breaker_error_burst"
    BREAKER_QUORUM_LOSS = "breaker_quorum_loss"
    DAILY_LOSS_LIMIT_PCT = "daily_loss_limit_pct"
    DAILY_LOSS_LIMIT_USD = "daily_loss_limit_usd"
    MAX_OPEN_POSITIONS = "max_open_positions"
    SYMBOL_EXPOSURE = "max_exposure_per_symbol"
    TOTAL_EXPOSURE = "max_total_exposure"
    LEVERAGE = "max_leverage"
    ORDER_RATE = "max_orders_per_minute"
    STALE_SNAPSHOT = "stale_snapshot"
    MARK_LAST_DIVERGENCE = "mark_last_divergence"
    INSUFFICIENT_MARGIN = "insufficient_margin"
    # from sizing (same values as coordinator.risk.sizing.SizeRefusal)
    NO_EQUITY = "no_equity"
    INVALID_PRICE = "invalid_price"
    INVALID_STOP = "invalid_stop"
    INVALID_TAKE_PROFIT = "invalid_take_profit"
    NO_EDGE = "no_edge"
    NO_HEADROOM = "no_headroom"
    BELOW_MIN_QUANTITY = "below_min_quantity"
    BELOW_MIN_NOTIONAL = "below_min_notional"
    # closing orders
    NOTHING_TO_REDUCE = "nothing_to_reduce"
    # an entry while the symbol already holds a position or an open intent (checked before sizing)
    POSITION_OPEN = "position_open"


BREAKER_REASONS = {
    BreakerKind.CONSECUTIVE_LOSSES: Reason.BREAKER_CONSECUTIVE_LOSSES,
    BreakerKind.DRAWDOWN: Reason.BREAKER_DRAWDOWN,
    BreakerKind.ERROR_BURST: Reason.BREAKER_ERROR_BURST,
    BreakerKind.QUORUM_LOSS: Reason.BREAKER_QUORUM_LOSS,
}


@dataclass(frozen=True, slots=True)
class TradeProposal:
    """An order the coordinator would like to place (independent of the ensemble's types).

    ``side`` is the order's direction.  ``quantity`` None asks the risk manager to size it.
    ``reduce_only`` marks a closing order: it may only shrink the position on ``symbol``.
    ``probability`` is the calibrated probability of reaching ``take_profit_price`` first (a float from
    the ensemble enters as ``Decimal(str(p))``); it is used by Kelly sizing only.
    """

    symbol: str
    side: Side
    reference_price: Decimal
    stop_price: Decimal = ZERO
    take_profit_price: Decimal = ZERO
    probability: Decimal = Decimal("0.5")
    quantity: Decimal | None = None
    reduce_only: bool = False


@dataclass(frozen=True, slots=True)
class PositionView:
    """One open position: ``quantity`` is signed (> 0 long, < 0 short)."""

    symbol: str
    quantity: Decimal
    mark_price: Decimal


@dataclass(frozen=True, slots=True)
class AccountView:
    """The account as last reported by the exchange.

    ``equity`` is wallet balance plus unrealised PnL; ``leverage`` is the leverage set on the
    exchange (initial margin = notional / leverage).
    """

    equity: Decimal
    available_balance: Decimal
    unrealised_pnl: Decimal = ZERO
    positions: tuple[PositionView, ...] = ()
    leverage: Decimal = Decimal(1)

    def position(self, symbol: str) -> Decimal:
        """The signed quantity held in ``symbol`` (0 when flat)."""
        return sum((p.quantity for p in self.positions if p.symbol == symbol), ZERO)


@dataclass(frozen=True, slots=True)
class MarketView:
    """The market snapshot the decision was made on, and the symbol's exchange filters."""

    symbol: str
    mark_price: Decimal
    last_price: Decimal
    snapshot_ms: int
    rules: SymbolRules


@dataclass(frozen=True, slots=True)
class Limits:
    """The checked limits of :class:`RiskConfig` as Decimals and ms (built once, read per order)."""

    max_leverage: Decimal
    daily_loss_limit_pct: Decimal
    daily_loss_limit_usd: Decimal
    max_open_positions: int
    max_exposure_per_symbol_usd: Decimal
    max_total_exposure_usd: Decimal
    max_orders_per_minute: int
    max_snapshot_age_ms: int
    max_mark_last_divergence_bps: Decimal
    cooldown_after_loss_ms: int
    fee_rate: Decimal

    @classmethod
    def from_config(cls, risk: RiskConfig, fee_rate: Decimal) -> Limits:
        """``fee_rate`` is the taker fee as a fraction (5 bps -> 0.0005), counted in the margin check."""
        return cls(
            max_leverage=Decimal(risk.max_leverage),
            daily_loss_limit_pct=Decimal(str(risk.daily_loss_limit_pct)),
            daily_loss_limit_usd=Decimal(str(risk.daily_loss_limit_usd)),
            max_open_positions=risk.max_open_positions,
            max_exposure_per_symbol_usd=Decimal(str(risk.max_exposure_per_symbol_usd)),
            max_total_exposure_usd=Decimal(str(risk.max_total_exposure_usd)),
            max_orders_per_minute=risk.max_orders_per_minute,
            max_snapshot_age_ms=round(risk.max_snapshot_age_seconds * 1000),
            max_mark_last_divergence_bps=Decimal(str(risk.max_mark_last_divergence_bps)),
            cooldown_after_loss_ms=round(risk.cooldown_after_loss_seconds * 1000),
            fee_rate=fee_rate,
        )


@dataclass(frozen=True, slots=True)
class GateState:
    """What the risk manager knows at the time of a check."""

    trading_enabled: bool
    halted: bool
    cooldown_until_ms: int
    breakers: tuple[BreakerKind, ...]
    daily_pnl: Decimal
    day_start_equity: Decimal
    daily_latched: tuple[Reason, ...]
    orders_last_minute: int


@dataclass(frozen=True, slots=True)
class Violation:
    """One failed check: its reason and the numbers behind it."""

    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class Book:
    """Notionals before and after an order (see the module docstring for the prices used)."""

    symbol_before: Decimal
    symbol_after: Decimal
    total_before: Decimal
    total_after: Decimal
    opens_position: bool
    open_positions_after: int


def book_after(account: AccountView, symbol: str, signed_quantity: Decimal, price: Decimal) -> Book:
    """The book if an order of ``signed_quantity`` at ``price`` filled."""
    others = ZERO
    others_open = 0
    held = ZERO
    for position in account.positions:
        if position.symbol == symbol:
            held += position.quantity
        elif position.quantity:
            others += abs(position.quantity) * position.mark_price
            others_open += 1
    after = held + signed_quantity
    symbol_before = abs(held) * price
    symbol_after = abs(after) * price
    return Book(
        symbol_before=symbol_before,
        symbol_after=symbol_after,
        total_before=others + symbol_before,
        total_after=others + symbol_after,
        opens_position=not held and bool(after),
        open_positions_after=others_open + (1 if after else 0),
    )


def headroom_notional(limits: Limits, account: AccountView, symbol: str, price: Decimal) -> Decimal:
    """The largest order notional that keeps exposure, leverage and margin within limits.

    Conservative: the order is assumed to add to the symbol's exposure whatever its side.
    """
    book = book_after(account, symbol, ZERO, price)
    leverage = account.leverage if account.leverage > 0 else Decimal(1)
    return min(
        limits.max_exposure_per_symbol_usd - book.symbol_before,
        limits.max_total_exposure_usd - book.total_before,
        account.equity * limits.max_leverage - book.total_before,
        account.available_balance / (1 / leverage + limits.fee_rate),
    )


def gate_violations(limits: Limits, gate: GateState, now_ms: int) -> list[Violation]:
    """Checks that depend on the manager's state only (not on the order)."""
    found: list[Violation] = []
    if not gate.trading_enabled:
        found.append(Violation(Reason.TRADING_DISABLED, "trading.enabled is false"))
    if gate.halted:
        found.append(Violation(Reason.HALTED, "emergency halt: only `xylen risk reset` resumes"))
    if now_ms < gate.cooldown_until_ms:
        found.append(Violation(Reason.COOLDOWN, f"cooling down after a loss until {gate.cooldown_until_ms}"))
    for kind in gate.breakers:
        found.append(Violation(BREAKER_REASONS[kind], f"breaker {kind.value} is tripped"))
    found.extend(daily_loss_violations(limits, gate.daily_pnl, gate.day_start_equity, gate.daily_latched))
    if gate.orders_last_minute >= limits.max_orders_per_minute:
        found.append(
            Violation(
                Reason.ORDER_RATE,
                f"{gate.orders_last_minute} orders in the last minute (max {limits.max_orders_per_minute})",
            )
        )
    return found


def daily_loss_reached(limits: Limits, daily_pnl: Decimal, day_start_equity: Decimal) -> list[Reason]:
    """The daily limits that ``daily_pnl`` reaches (a loss equal to a limit reaches it)."""
    loss = -daily_pnl
    reached: list[Reason] = []
    if day_start_equity > 0 and loss * 100 >= limits.daily_loss_limit_pct * day_start_equity:
        reached.append(Reason.DAILY_LOSS_LIMIT_PCT)
    if loss >= limits.daily_loss_limit_usd:
        reached.append(Reason.DAILY_LOSS_LIMIT_USD)
    return reached


def daily_loss_violations(
    limits: Limits, daily_pnl: Decimal, day_start_equity: Decimal, latched: tuple[Reason, ...]
) -> list[Violation]:
    """Daily limits reached now or earlier today (latched: a recovery does not lift them)."""
    reasons = set(latched) | set(daily_loss_reached(limits, daily_pnl, day_start_equity))
    return [
        Violation(reason, f"daily PnL {daily_pnl} (day start equity {day_start_equity}); reached today")
        for reason in (Reason.DAILY_LOSS_LIMIT_PCT, Reason.DAILY_LOSS_LIMIT_USD)
        if reason in reasons
    ]


def order_violations(
    limits: Limits,
    proposal: TradeProposal,
    quantity: Decimal,
    account: AccountView,
    market: MarketView,
    now_ms: int,
) -> list[Violation]:
    """Checks of one entry order of ``quantity`` (already on the step grid)."""
    found: list[Violation] = []
    price = proposal.reference_price
    book = book_after(account, proposal.symbol, quantity * proposal.side.sign, price)
    if book.opens_position and book.open_positions_after > limits.max_open_positions:
        found.append(
            Violation(
                Reason.MAX_OPEN_POSITIONS,
                f"{book.open_positions_after} positions after the order (max {limits.max_open_positions})",
            )
        )
    if book.symbol_after > limits.max_exposure_per_symbol_usd and book.symbol_after > book.symbol_before:
        found.append(
            Violation(
                Reason.SYMBOL_EXPOSURE,
                f"{proposal.symbol} exposure {book.symbol_after} > {limits.max_exposure_per_symbol_usd}",
            )
        )
    if book.total_after > limits.max_total_exposure_usd and book.total_after > book.total_before:
        found.append(
            Violation(
                Reason.TOTAL_EXPOSURE, f"total exposure {book.total_after} > {limits.max_total_exposure_usd}"
            )
        )
    if book.total_after > book.total_before and (
        account.equity <= 0 or book.total_after > account.equity * limits.max_leverage
    ):
        found.append(
            Violation(
                Reason.LEVERAGE,
                f"notional {book.total_after} on equity {account.equity} exceeds {limits.max_leverage}x",
            )
        )
    age = now_ms - market.snapshot_ms
    if age > limits.max_snapshot_age_ms:
        found.append(
            Violation(Reason.STALE_SNAPSHOT, f"snapshot is {age} ms old (max {limits.max_snapshot_age_ms})")
        )
    mark, last = market.mark_price, market.last_price
    if last <= 0 or mark <= 0 or abs(mark - last) * 10_000 > limits.max_mark_last_divergence_bps * last:
        found.append(
            Violation(
                Reason.MARK_LAST_DIVERGENCE,
                f"mark {mark} and last {last} differ by more than {limits.max_mark_last_divergence_bps} bps",
            )
        )
    notional = quantity * price
    leverage = account.leverage if account.leverage > 0 else Decimal(1)
    needed = notional / leverage + notional * limits.fee_rate
    if needed > account.available_balance:
        found.append(
            Violation(
                Reason.INSUFFICIENT_MARGIN,
                f"initial margin + fees {needed} > available balance {account.available_balance}",
            )
        )
    return found


def grid_violations(rules: SymbolRules, quantity: Decimal, price: Decimal) -> list[Violation]:
    """An order below the exchange's minimum quantity or notional (never rounded up)."""
    if quantity <= 0 or quantity < rules.min_qty:
        return [
            Violation(Reason.BELOW_MIN_QUANTITY, f"quantity {quantity} below the minimum {rules.min_qty}")
        ]
    if rules.min_notional > 0 and quantity * price < rules.min_notional:
        return [
            Violation(
                Reason.BELOW_MIN_NOTIONAL,
                f"notional {quantity * price} below the exchange minimum {rules.min_notional}",
            )
        ]
    return []


def position_open_violation(account: AccountView, symbol: str, intents_open: int) -> Violation | None:
    """An entry on ``symbol`` while it holds a position or ``intents_open`` open intents.

    One position (and one intent) per symbol at a time: an entry on top of it is not an add-on to
    size but no trade, named ``position_open``.  The caller checks this before sizing, so such an
    entry is neither sized (whose refusal would name the exposure already taken) nor counted toward
    the order rate.
    """
    held = account.position(symbol)
    if held:
        return Violation(Reason.POSITION_OPEN, f"{'LONG' if held > 0 else 'SHORT'} {abs(held)} {symbol} held")
    if intents_open:
        return Violation(Reason.POSITION_OPEN, f"{intents_open} intent(s) open on {symbol}")
    return None
