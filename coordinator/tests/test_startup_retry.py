"""A 5xx on a start-up call is retried with backoff, not fatal (REAL paper exchange over HTTP).

The paper exchange's ``error_rate`` fault, limited to the start-up paths, with a seed whose draws
fail the first request of each pair and pass the second (checked below on a twin of the fault):
``/fapi/v1/time`` fails once, then ``exchangeInfo`` fails once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from coordinator.tests.test_exchange_support import (
    SYMBOL,
    candles,  # noqa: F401 - fixture
)
from coordinator.tests.test_manager_support import venue
from paper_exchange.faults import FaultConfig, Faults

STARTUP_PATHS = ["/fapi/v1/time", "/fapi/v1/exchangeInfo"]
FAULTS: dict[str, Any] = {"error_rate": {"rate": 0.5, "statuses": [503], "paths": STARTUP_PATHS, "seed": 3}}


def test_the_fault_fails_time_once_then_exchange_info_once() -> None:
    twin = Faults(FaultConfig.model_validate(FAULTS))
    draws = [twin.server_error(path) is not None for path in STARTUP_PATHS[:1] * 2 + STARTUP_PATHS[1:] * 2]
    assert draws == [True, False, True, False]


def test_a_single_5xx_on_time_and_exchange_info_does_not_stop_the_start(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with venue(candles, tmp_path, faults=FAULTS, start=False, use_stream=False) as v:
            exchange = v.exchange
            await exchange.ensure_one_way_mode()
            result = await exchange.start()
            assert result.differences == []
            assert await exchange.market_time(SYMBOL) > 0
            assert exchange.client.symbol_rules(SYMBOL) is not None

    asyncio.run(scenario())
