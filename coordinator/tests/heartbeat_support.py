"""Helpers of the heartbeat and app tests: the REAL paper exchange, REAL model server processes.

* the paper exchange in-process (:func:`paper_venue`) on real BTCUSDT 5m candles, its replay clock
  stepped by the test (or running at ``speed``);
* two ``python -m model_server`` processes serving LightGBM models trained on the real candles
  (:func:`model_servers`);
* a config for a coordinator trading on them (:func:`coordinator_config`).  To let real models
  trade in a short test, costs are zero (fees and slippage 0 bps), ``min_edge`` is 0 and the
  disagreement gate wide: then any calibrated probability off 0.5 has a positive EV and the
  ensemble takes the favoured side.  Nothing is stubbed;
* a coordinator without a live model server, for tests that place orders themselves
  (:func:`offline_app`), its heartbeat built and the app shut down by :func:`built_heartbeat`.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from coordinator.app import CoordinatorApp
from coordinator.heartbeat import Heartbeat
from coordinator.orders import IntentStatus
from coordinator.tests.test_exchange_support import START_MS, SYMBOL
from model_server.tests.server_support import (
    TOKEN,
    ServerProcess,
    start_server,
    train_booster,
    write_model_dir,
)
from paper_exchange.service import PaperExchangeService, ServiceConfig
from paper_exchange.settings import TransportSettings
from paper_exchange.tests.test_transport_support import KEY, KEYS, SECRET, running_app
from xylen.config import parse_config
from xylen.config.secrets import Secrets
from xylen.paths import Home

__all__ = ["KEY", "SECRET", "START_MS", "SYMBOL"]
STEP_MS = 300_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def venue_service(
    candles: Path, tmp_path: Path, speed: float | None = None, balance: Decimal = Decimal(10_000)
) -> PaperExchangeService:
    """A real paper exchange service in a fresh home (candles linked), replay at START_MS."""
    home = tmp_path / f"venue-{time.monotonic_ns()}"
    home.mkdir()
    (home / "candles").symlink_to(candles, target_is_directory=True)
    config = ServiceConfig.from_home(home, start_ms=START_MS, speed=speed, balance=balance)
    return PaperExchangeService(config)


@contextlib.asynccontextmanager
async def paper_venue(service: PaperExchangeService) -> AsyncIterator[str]:
    """``service`` over HTTP on 127.0.0.1 (the test keys); yields the base URL."""
    settings = TransportSettings(api_keys=KEYS, port=0, tick_ms=20)
    async with running_app(service, settings) as (url, _app):
        yield url


@contextlib.contextmanager
def model_servers(btc_5m_path: Path, root: Path, count: int = 2) -> Iterator[list[ServerProcess]]:
    """``count`` model server processes, each with its own LightGBM model (different seeds)."""
    servers: list[ServerProcess] = []
    try:
        for i in range(count):
            home = root / f"ms-{i}"
            booster = train_booster(btc_5m_path, rounds=30 + 10 * i, seed=i)
            write_model_dir(home / "models" / "v1", booster, f"v{i}")
            servers.append(start_server(home, {"TRAINING_INTERVAL": "0"}))
        yield servers
    finally:
        for server in servers:
            server.stop()


def coordinator_config(
    exchange_url: str,
    servers: list[ServerProcess],
    *,
    clock: str = "instant",
    speed: float = 1.0,
    trading: bool = True,
    dashboard_port: int | None = None,
) -> dict[str, Any]:
    """A config (as a dict) for a coordinator on the test venue and servers (module docstring)."""
    return {
        "exchange": {"paper_url": exchange_url, "request_timeout_seconds": 5.0, "poll_interval_seconds": 1.0},
        "market": {"symbols": [SYMBOL], "history_candles": 1000},
        "heartbeat": {"interval_seconds": 300.0, "deadline_seconds": 5.0, "clock": clock, "speed": speed},
        "model_servers": [{"id": f"ms-{i}", "url": s.url, "timeout_ms": 3000} for i, s in enumerate(servers)],
        "ensemble": {"quorum": 1, "min_edge": 0.0, "max_disagreement": 0.5},
        "risk": {"sizing": "fixed_fraction", "fixed_fraction": 0.01, "cooldown_after_loss_seconds": 0.0},
        "trading": {
            "enabled": trading,
            "horizon_minutes": 10,
            "entry": "market",
            "taker_fee_bps": 0.0,
            "maker_fee_bps": 0.0,
            "slippage_bps": 0.0,
        },
        "monitoring": {"metrics_port": free_port()},
        "dashboard": {
            "enabled": dashboard_port is not None,
            "port": dashboard_port or 8765,
            "require_token": False,
        },
    }


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def offline_app(url: str, home: Path, *, trading: bool = False, **trading_overrides: Any) -> CoordinatorApp:
    """A coordinator on the paper exchange at ``url`` whose only model server is dead (its beats
    HOLD): for tests that place orders themselves.  ``trading_overrides`` update its ``trading``."""
    data = coordinator_config(url, [], trading=trading)
    data["model_servers"] = [{"id": "ms-0", "url": f"http://127.0.0.1:{free_port()}", "timeout_ms": 500}]
    data["trading"].update(trading_overrides)
    secrets = Secrets(paper_api_key=KEY, paper_api_secret=SECRET, model_token=TOKEN)
    return CoordinatorApp(parse_config(data), Home(home), secrets=secrets)


@contextlib.asynccontextmanager
async def built_heartbeat(app: CoordinatorApp) -> AsyncIterator[Heartbeat]:
    """``app`` started (its heartbeat built, not beating on its own); shut down on exit."""
    hb = await app._build()
    try:
        yield hb
    finally:
        await app._shutdown()


def intent_status(hb: Heartbeat, intent_id: str) -> IntentStatus | None:
    """The intent's status in SQLite (``None``: no such intent)."""
    intent = hb.exchange.store.get_intent(intent_id)
    return None if intent is None else intent.status
