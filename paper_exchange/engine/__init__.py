"""The paper exchange's matching and margin engine (synchronous, deterministic, Decimal amounts).

Modules: :mod:`.errors` (ApiError and Binance messages), :mod:`.instruments` (symbol specs and
filters), :mod:`.models` (orders, positions, state machines), :mod:`.matching` (path crossings,
liquidity model), :mod:`.positions` (margin arithmetic), :mod:`.events` (user-data events),
:mod:`.state` (state and margin bookkeeping), :mod:`.orders`, :mod:`.algos`,
:mod:`.settlement` (funding, liquidation) and :mod:`.core` (the walk along the path).
"""

from paper_exchange.engine.core import Engine, Snapshot, max_notional, notional_brackets
from paper_exchange.engine.errors import ApiError
from paper_exchange.engine.instruments import SymbolSpec, spec_for
from paper_exchange.engine.models import (
    Account,
    AlgoOrder,
    AlgoStatus,
    Changes,
    IllegalTransition,
    Order,
    OrderStatus,
    Position,
    SymbolSettings,
    Trade,
)
from paper_exchange.engine.state import AccountView, EngineConfig, MarkedPosition

__all__ = [
    "Account",
    "AccountView",
    "AlgoOrder",
    "AlgoStatus",
    "ApiError",
    "Changes",
    "Engine",
    "EngineConfig",
    "IllegalTransition",
    "MarkedPosition",
    "Order",
    "OrderStatus",
    "Position",
    "Snapshot",
    "SymbolSettings",
    "SymbolSpec",
    "Trade",
    "max_notional",
    "notional_brackets",
    "spec_for",
]
