"""Helpers of the order-manager tests: a ``FuturesExchange`` on the REAL paper exchange over HTTP.

The paper exchange runs in-process (real candles, stepped replay clock: prices move only when a
test calls :func:`step`), optionally with faults or small rate limits; the manager talks to it
through our real client and user stream on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

from coordinator.exchange import RetryPolicy
from coordinator.exchange.facade import FuturesExchange
from coordinator.orders import Order, OrderState
from coordinator.tests.test_exchange_support import START_MS, transport
from paper_exchange.app import SERVICE_KEY
from paper_exchange.faults import FaultConfig, Faults
from paper_exchange.service import PaperExchangeService, ServiceConfig
from paper_exchange.settings import TransportSettings
from paper_exchange.tests.test_transport_support import KEY, SECRET, running_app
from xylen.config.schema import ExchangeConfig
from xylen.config.secrets import Secrets

CANDLE_MS = 300_000


@dataclass
class Venue:
    """The running paper exchange and our facade on it."""

    exchange: FuturesExchange
    app: web.Application
    url: str

    @property
    def service(self) -> PaperExchangeService:
        return self.app[SERVICE_KEY]  # type: ignore[return-value]

    def step(self, candles: float) -> None:
        """Move the replay clock forward by ``candles`` 5m candles."""
        service = self.service
        service.step_to(service.now_ms() + int(candles * CANDLE_MS))

    def sent(self, path: str) -> int:
        return self.exchange.client.transport.sent[path]


def exchange_config(url: str, **overrides: Any) -> ExchangeConfig:
    values: dict[str, Any] = {"paper_url": url, "request_timeout_seconds": 5.0, "poll_interval_seconds": 0.5}
    values.update(overrides)
    return ExchangeConfig(**values)


def paper_secrets() -> Secrets:
    return Secrets(paper_api_key=KEY, paper_api_secret=SECRET)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def venue(
    candles: Path,
    tmp_path: Path,
    *,
    faults: dict[str, Any] | None = None,
    settings: TransportSettings | None = None,
    balance: Decimal = Decimal(10_000),
    use_stream: bool = True,
    start: bool = True,
    retry: RetryPolicy | None = None,
    clock: Callable[[], float] = time.time,
    **config: Any,
) -> AsyncIterator[Venue]:
    """The paper exchange (stepped clock) and a started ``FuturesExchange`` on it."""
    home = tmp_path / f"home-{time.monotonic_ns()}"
    home.mkdir()
    (home / "candles").symlink_to(candles, target_is_directory=True)
    service = PaperExchangeService(ServiceConfig.from_home(home, start_ms=START_MS, balance=balance))
    fault_obj = Faults(FaultConfig.model_validate(faults or {}))
    async with running_app(service, settings or transport(), faults=fault_obj, clock=clock) as (url, app):
        exchange = await FuturesExchange.create(
            exchange_config(url, **config),
            paper_secrets(),
            tmp_path / "xylen.db",
            use_stream=use_stream,
            retry=retry or RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.05),
        )
        try:
            if start:
                await exchange.start()
                if exchange.stream is not None:
                    await exchange.stream.wait_connected(5.0)
            yield Venue(exchange, app, url)
        finally:
            await exchange.stop()


async def until(condition: Callable[[], bool], timeout_s: float = 5.0, what: str = "") -> float:
    """Wait for ``condition()``; returns the seconds it took (AssertionError on timeout)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or condition}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def state_of(v: Venue, client_order_id: str) -> OrderState:
    order = v.exchange.store.get_order(client_order_id)
    assert order is not None
    return order.state


def order_of(v: Venue, client_order_id: str) -> Order:
    order = v.exchange.store.get_order(client_order_id)
    assert order is not None
    return order
