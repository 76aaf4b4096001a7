"""The Binance USDⓈ-M exchange layer: REST client, user-data stream, filters, errors.

``BinanceFuturesClient.create(config, secrets)`` -> REST calls returning :mod:`schemas` objects;
``UserStream(client)`` -> parsed events on a bounded queue; ``SymbolRules`` (in ``client.rules``)
rounds and checks every price and quantity; errors are grouped by reaction in :mod:`errors`.
"""

from __future__ import annotations

from coordinator.exchange.client import BinanceFuturesClient
from coordinator.exchange.errors import (
    ClockSkewError,
    ExchangeError,
    FatalError,
    NotFoundError,
    RateLimitError,
    RejectedError,
    RetryableError,
    UnknownOutcomeError,
)
from coordinator.exchange.filters import SymbolRules
from coordinator.exchange.rate_limit import RateLimiter
from coordinator.exchange.retry import RetryPolicy
from coordinator.exchange.user_stream import UserStream

__all__ = [
    "BinanceFuturesClient",
    "ClockSkewError",
    "ExchangeError",
    "FatalError",
    "NotFoundError",
    "RateLimitError",
    "RateLimiter",
    "RejectedError",
    "RetryPolicy",
    "RetryableError",
    "SymbolRules",
    "UnknownOutcomeError",
    "UserStream",
]
