"""Builders shared by the risk tests: one symbol's filters, a test config, clean views.

The numbers are chosen to compute by hand: price 100, step 0.01, min notional 5, equity 10,000,
exchange leverage 2, taker fee 5 bps (0.0005).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from coordinator.exchange.filters import SymbolRules
from coordinator.risk import (
    AccountView,
    MarketView,
    PositionView,
    RiskManager,
    RiskStore,
    Side,
    TradeProposal,
)
from xylen.config.schema import RiskConfig

D = Decimal
SYMBOL = "TESTUSDT"
OTHER = "OTHERUSDT"
THIRD = "THIRDUSDT"
NOW = 1_717_200_000_000  # 2024-06-01 00:00:00 UTC
DAY_MS = 86_400_000


def rules(symbol: str = SYMBOL, step: str = "0.01", min_notional: str = "5") -> SymbolRules:
    step_d = D(step)
    return SymbolRules(
        symbol=symbol,
        tick_size=D("0.1"),
        min_price=D("0.1"),
        max_price=D("1000000"),
        step_size=step_d,
        min_qty=step_d,
        max_qty=D("100000"),
        market_step_size=step_d,
        market_min_qty=step_d,
        market_max_qty=D("100000"),
        min_notional=D(min_notional),
    )


RULES = rules()


def config(**changes: Any) -> RiskConfig:
    """The test limits: fixed fraction 1 %, 3x, 2 % / 150 USD a day, 2 positions, 2000/4000 USD."""
    base: dict[str, Any] = {
        "sizing": "fixed_fraction",
        "fixed_fraction": 0.01,
        "kelly_fraction": 0.25,
        "max_position_fraction": 0.1,
        "fixed_amount_usd": 100.0,
        "max_leverage": 3,
        "daily_loss_limit_pct": 2.0,
        "daily_loss_limit_usd": 150.0,
        "max_open_positions": 2,
        "max_exposure_per_symbol_usd": 2000.0,
        "max_total_exposure_usd": 4000.0,
        "max_orders_per_minute": 10,
        "cooldown_after_loss_seconds": 900.0,
        "max_snapshot_age_seconds": 90.0,
        "max_mark_last_divergence_bps": 50.0,
        "breaker_consecutive_losses": 3,
        "breaker_max_drawdown_pct": 10.0,
        "breaker_error_burst": 5,
        "breaker_error_window_seconds": 60.0,
        "breaker_quorum_misses": 3,
        "breaker_base_cooldown_seconds": 3600.0,
        "breaker_clean_period_seconds": 86400.0,
    }
    base.update(changes)
    return RiskConfig(**base)


def manager(store: RiskStore | None = None, trading_enabled: bool = True, **changes: Any) -> RiskManager:
    return RiskManager(config(**changes), store=store, trading_enabled=trading_enabled, fee_rate=D("0.0005"))


def proposal(
    quantity: str | None = "10",
    side: Side = Side.BUY,
    symbol: str = SYMBOL,
    *,
    price: str = "100",
    stop: str = "98",
    take_profit: str = "104",
    probability: str = "0.6",
    reduce_only: bool = False,
) -> TradeProposal:
    """Default: buy 10 at 100 (notional 1000), stop 98, take-profit 104."""
    return TradeProposal(
        symbol=symbol,
        side=side,
        reference_price=D(price),
        stop_price=D(stop),
        take_profit_price=D(take_profit),
        probability=D(probability),
        quantity=None if quantity is None else D(quantity),
        reduce_only=reduce_only,
    )


def account(
    equity: str = "10000",
    available: str | None = None,
    unrealised: str = "0",
    positions: tuple[tuple[str, str, str], ...] = (),
    leverage: str = "2",
) -> AccountView:
    """``positions``: (symbol, signed quantity, mark price)."""
    return AccountView(
        equity=D(equity),
        available_balance=D(available if available is not None else equity),
        unrealised_pnl=D(unrealised),
        positions=tuple(PositionView(s, D(q), D(m)) for s, q, m in positions),
        leverage=D(leverage),
    )


def market(
    symbol: str = SYMBOL, mark: str = "100", last: str = "100", age_ms: int = 1_000, now: int = NOW
) -> MarketView:
    return MarketView(symbol, D(mark), D(last), now - age_ms, rules(symbol))
