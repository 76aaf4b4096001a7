"""The risk manager: sizing, trade checks, circuit breakers, persisted state and statistics.

``RiskManager(config.risk, store=RiskStore(init_db(home.database)))`` (or
``RiskManager.from_config(config, store)``) -> ``size(...)``, ``validate(proposal, account, market,
now_ms) -> RiskResult``, the ``on_*`` updates, ``emergency_shutdown(executor, ...)``.  The checks are
pure functions in :mod:`~coordinator.risk.checks`; :mod:`~coordinator.risk.manager` states the rules
chosen (closing always allowed, latched daily limit), :mod:`~coordinator.risk.sizing` what a
"fraction of equity" means, :mod:`~coordinator.risk.breakers` the breakers and their cooldowns.
"""

from __future__ import annotations

from coordinator.risk.breakers import BreakerKind, BreakerParams, Breakers, BreakerState, cooldown_ms
from coordinator.risk.checks import (
    AccountView,
    Limits,
    MarketView,
    PositionView,
    Reason,
    TradeProposal,
    Violation,
)
from coordinator.risk.manager import Executor, OpenPosition, RiskManager, RiskResult, ShutdownReport
from coordinator.risk.sizing import SizeRefusal, SizeResult, SizingParams, kelly_fraction, size_position
from coordinator.risk.state import RiskState, RiskStatistics, RiskStore, reset_risk, statistics, utc_day
from coordinator.side import Side

__all__ = [
    "AccountView",
    "BreakerKind",
    "BreakerParams",
    "BreakerState",
    "Breakers",
    "Executor",
    "Limits",
    "MarketView",
    "OpenPosition",
    "PositionView",
    "Reason",
    "RiskManager",
    "RiskResult",
    "RiskState",
    "RiskStatistics",
    "RiskStore",
    "ShutdownReport",
    "Side",
    "SizeRefusal",
    "SizeResult",
    "SizingParams",
    "TradeProposal",
    "Violation",
    "cooldown_ms",
    "kelly_fraction",
    "reset_risk",
    "size_position",
    "statistics",
    "utc_day",
]
