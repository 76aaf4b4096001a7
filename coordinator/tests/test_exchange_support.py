"""Helpers of the exchange integration tests: the REAL paper exchange over HTTP on 127.0.0.1.

Real BTCUSDT 5m candles (imported once per test session into a temporary candle store), a fresh
home and ``paper_exchange.db`` per server, ``PaperExchangeService`` behind ``create_app`` on an
ephemeral port; the replay clock is stepped (prices fixed at :data:`START_MS`).  No fakes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from coordinator.exchange import BinanceFuturesClient, RetryPolicy
from coordinator.exchange.constants import Endpoint
from paper_exchange.faults import FaultConfig, Faults
from paper_exchange.service import PaperExchangeService, ServiceConfig
from paper_exchange.settings import TransportSettings
from paper_exchange.tests.test_transport_support import KEY, KEYS, SECRET, running_app
from xylen.config.schema import ExchangeConfig
from xylen.config.secrets import Secrets
from xylen.data import CandleStore
from xylen.data.importers import import_file
from xylen.paths import SHARED_BTC_5M

SYMBOL = "BTCUSDT"
START_MS = 1_704_153_600_000  # 2024-01-02 00:00 UTC, inside the BTC 5m file
BTC_FILE = SHARED_BTC_5M
TICKER = Endpoint("GET", "/fapi/v1/ticker/price", 1, 2)

_CANDLES: dict[Path, Path] = {}


@pytest.fixture(scope="session")
def candles(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A candle store with the real BTCUSDT 5m candles, imported once per session."""
    root = _CANDLES.get(shared_data)
    if root is None:
        root = tmp_path_factory.mktemp("exchange-candles") / "candles"
        import_file(shared_data / BTC_FILE, CandleStore(root))
        _CANDLES[shared_data] = root
    return root


def make_service(candles: Path, tmp_path: Path) -> PaperExchangeService:
    """A real service in a fresh home under ``tmp_path`` (candles linked, not copied)."""
    home = tmp_path / f"home-{time.monotonic_ns()}"
    home.mkdir()
    (home / "candles").symlink_to(candles, target_is_directory=True)
    return PaperExchangeService(ServiceConfig.from_home(home, start_ms=START_MS))


def transport(**overrides: Any) -> TransportSettings:
    """Binance's limits, the test keys, port 0."""
    values: dict[str, Any] = {"api_keys": KEYS, "port": 0, "tick_ms": 20}
    values.update(overrides)
    return TransportSettings(**values)


@contextlib.asynccontextmanager
async def paper_exchange(
    candles: Path,
    tmp_path: Path,
    *,
    faults: dict[str, Any] | None = None,
    settings: TransportSettings | None = None,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[tuple[str, web.Application]]:
    """The real paper exchange on 127.0.0.1 with optional faults (a dict as in a faults YAML)."""
    fault_obj = Faults(FaultConfig.model_validate(faults or {}))
    service = make_service(candles, tmp_path)
    async with running_app(service, settings or transport(), faults=fault_obj, clock=clock) as (url, app):
        yield url, app


async def make_client(
    url: str,
    *,
    timeout_s: float = 5.0,
    retry: RetryPolicy | None = None,
    key: str = KEY,
    secret: str = SECRET,
) -> BinanceFuturesClient:
    """Our client in paper mode pointed at ``url`` with the test keys."""
    config = ExchangeConfig(paper_url=url, request_timeout_seconds=timeout_s)
    secrets = Secrets(paper_api_key=key, paper_api_secret=secret)  # type: ignore[arg-type]
    return await BinanceFuturesClient.create(
        config, secrets, retry=retry or RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.05)
    )


async def last_price(client: BinanceFuturesClient) -> Decimal:
    """The replay's current price of BTCUSDT."""
    return Decimal((await client.raw_request(TICKER, {"symbol": SYMBOL}))["price"])
