"""Shared helpers of the end-to-end tests: the REAL engine over real HTTP on 127.0.0.1.

Nothing here is faked.  Real Binance candles are imported once per session (per test worker)
with ``xylen.data.importers.import_file`` into a temporary candle store; every server gets its
own temporary home (the candle store linked in, a fresh ``paper_exchange.db``) and is built with
``ServiceConfig.from_home`` -> :class:`PaperExchangeService` -> ``create_app``, served on an
ephemeral port by ``running_app``.  The clients are the ones no one here wrote: python-binance's
``AsyncClient`` / ``BinanceSocketManager`` and ccxt's ``binanceusdm``, pointed at the server the way
Binance documents their base URLs.

The replay clock is stepped (``speed=None``) and starts at :data:`START_MS`, so prices are known:
the tests read them through the API (ticker) and derive order prices from them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import pytest

from paper_exchange.faults import Faults
from paper_exchange.service import PaperExchangeService, ServiceConfig
from paper_exchange.settings import TransportSettings
from paper_exchange.tests.test_transport_support import KEY, KEYS, SECRET, running_app
from xylen.data import CandleStore
from xylen.data.importers import import_file
from xylen.paths import SHARED_BTC_5M

SYMBOL = "BTCUSDT"
CCXT_SYMBOL = "BTC/USDT:USDT"
START_MS = 1_704_153_600_000  # 2024-01-02 00:00 UTC, well inside the BTC 5m file
BTC_FILE = SHARED_BTC_5M

_CANDLES: dict[Path, Path] = {}


def candle_root(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A candle store holding the real BTCUSDT 5m candles; imported once per session (worker)."""
    root = _CANDLES.get(shared_data)
    if root is None:
        root = tmp_path_factory.mktemp("e2e-candles") / "candles"
        import_file(shared_data / BTC_FILE, CandleStore(root))
        _CANDLES[shared_data] = root
    return root


def make_service(candles: Path, tmp_path: Path, **config: Any) -> PaperExchangeService:
    """A real service from a fresh tmp home whose candle store is ``candles`` (linked, not copied)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "candles").symlink_to(candles, target_is_directory=True)
    config.setdefault("start_ms", START_MS)
    service_config = ServiceConfig.from_home(home, **config)
    assert service_config.symbols == (SYMBOL,)
    assert service_config.db_path == home / "paper_exchange.db"
    return PaperExchangeService(service_config)


def transport(**overrides: Any) -> TransportSettings:
    """Real transport settings (Binance's limits) with the test keys and port 0."""
    values: dict[str, Any] = {"api_keys": KEYS, "port": 0, "tick_ms": 20}
    values.update(overrides)
    return TransportSettings(**values)


@contextlib.asynccontextmanager
async def serve(
    service: PaperExchangeService,
    settings: TransportSettings | None = None,
    faults: Faults | None = None,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[str]:
    """The real app around ``service`` on 127.0.0.1; yields the base URL."""
    async with running_app(service, settings or transport(), faults=faults, clock=clock) as (url, _app):
        yield url


# -- clients ---------------------------------------------------------------------------------------
async def binance_client(url: str, key: str = KEY, secret: str = SECRET) -> Any:
    """python-binance's AsyncClient pointed at ``url`` (create() pings /api/v3/ping and /time)."""
    from binance import AsyncClient

    class LocalClient(AsyncClient):  # type: ignore[misc]
        API_URL = f"{url}/api"
        FUTURES_URL = f"{url}/fapi"

    return await LocalClient.create(key, secret)


def ccxt_exchange(url: str, key: str = KEY, secret: str = SECRET, **config: Any) -> Any:
    """ccxt's async ``binanceusdm`` pointed at ``url``, the ``linear`` error table merged."""
    import ccxt.async_support as ccxt_async

    options: dict[str, Any] = {
        "apiKey": key,
        "secret": secret,
        "options": {"fetchCurrencies": False},
        "timeout": 10_000,
        "enableRateLimit": False,  # the server limits; ccxt's own throttle only slows the tests
    }
    options.update(config)
    exchange = ccxt_async.binanceusdm(options)
    for name, version in [
        ("fapiPublic", "v1"),
        ("fapiPublicV2", "v2"),
        ("fapiPublicV3", "v3"),
        ("fapiPrivate", "v1"),
        ("fapiPrivateV2", "v2"),
        ("fapiPrivateV3", "v3"),
    ]:
        exchange.urls["api"][name] = f"{url}/fapi/{version}"
    exchange.exceptions["exact"].update(exchange.exceptions["linear"]["exact"])
    return exchange


# -- prices ----------------------------------------------------------------------------------------
TICK = Decimal("0.1")


def tick(value: Decimal | float | str) -> str:
    """``value`` rounded down to BTCUSDT's tick, as the string an order sends."""
    return str(Decimal(str(value)).quantize(TICK, rounding=ROUND_DOWN))


def near(price: Decimal, factor: str) -> str:
    """``price x factor`` on the tick (inside PERCENT_PRICE for factors within +-5%)."""
    return tick(price * Decimal(factor))
