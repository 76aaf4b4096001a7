"""Lookups go with their order's priority: a stop's outcome is read ahead of market data.

The paper exchange over HTTP and the real client; the rate limiter's ``acquire`` is wrapped (not
replaced) to record the priority each request asks for.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

from coordinator.exchange.priority import Priority
from coordinator.orders import OrderKind, OrderState, Side
from coordinator.orders.brackets import latest_legs
from coordinator.tests.test_exchange_support import (
    SYMBOL,
    candles,  # noqa: F401 - fixture
)
from coordinator.tests.test_manager_support import venue


def test_a_legs_lookup_goes_with_protection_and_an_entrys_ahead_of_reads(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with venue(candles, tmp_path) as v:
            ex = v.exchange
            placed = await ex.place_order(
                SYMBOL, Side.BUY, Decimal("0.01"), Decimal("44000"), Decimal("44400")
            )
            assert placed.entry.state is OrderState.FILLED
            stop = latest_legs(ex.store.orders_of_intent(placed.intent.intent_id))[OrderKind.STOP_LOSS]
            limiter = ex.client.transport.limiter
            asked: list[Priority] = []
            acquire = limiter.acquire

            async def recording(weight: int, orders: int = 0, priority: Priority = Priority.ACCOUNT) -> Any:
                asked.append(priority)
                return await acquire(weight, orders, priority)

            limiter.acquire = recording  # type: ignore[method-assign]
            try:
                assert (await ex.manager.query(stop)).state is OrderState.NEW
                leg_lookups = list(asked)
                asked.clear()
                await ex.manager.query(ex.manager.current(placed.entry.client_order_id))
                entry_lookups = list(asked)
                asked.clear()
                await ex.client.get_algo_order(client_algo_id=stop.client_order_id)
                plain = list(asked)
            finally:
                limiter.acquire = acquire  # type: ignore[method-assign]
            assert leg_lookups and set(leg_lookups) == {Priority.PROTECT}, leg_lookups
            assert entry_lookups and set(entry_lookups) == {Priority.ENTRY}, entry_lookups
            assert plain == [Priority.ACCOUNT]  # the same read outside a query keeps its own priority

    asyncio.run(scenario())
