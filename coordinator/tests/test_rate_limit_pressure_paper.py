"""Rate-limit pressure against the REAL paper exchange over HTTP: the stop goes first, no 418.

Another client shares the IP (the paper exchange's ``foreign_weight_per_s`` fault) while tasks
of ours hammer market data and account reads; the real :class:`FuturesExchange` (order manager,
monitor, user stream) opens positions with brackets and closes them, over and over.  Every fill
must be protected (its stop acknowledged by the venue) within one monitor round, and the IP is
never banned.

The weight window is shrunk on both sides (the paper exchange's ``weight_window_ms``, our
limiter's weight counter) so that each "minute" lasts :data:`WINDOW_MS`: the test covers many
windows, with their turns, in seconds.  ``XYLEN_PRESSURE_REAL_S`` runs the same scenario with
Binance's real one-minute window for that many seconds instead (slow; run by hand).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from coordinator.exchange import BinanceFuturesClient, RetryPolicy
from coordinator.exchange.errors import ExchangeError
from coordinator.exchange.facade import FuturesExchange
from coordinator.exchange.rate_limit import RateLimiter, WindowCounter
from coordinator.orders import IntentStatus, OrderKind, OrderState, Side
from coordinator.orders.brackets import latest_legs
from coordinator.orders.store import OrderStore
from coordinator.tests.test_exchange_support import (
    START_MS,
    SYMBOL,
    candles,  # noqa: F401 - fixture
    transport,
)
from coordinator.tests.test_manager_support import exchange_config, paper_secrets, until
from paper_exchange.app import GATEWAY_KEY
from paper_exchange.faults import FaultConfig, Faults
from paper_exchange.service import PaperExchangeService, ServiceConfig
from paper_exchange.tests.test_transport_support import running_app

WINDOW_MS = 4_000
MONITOR_ROUND_S = 1.0
BEAT_S = 0.25
BEAT_TICKERS = 12


@dataclass
class Load:
    """What the competing tasks of ours did."""

    sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def _limiter(weight: int, window_ms: int, margin_ms: int) -> RateLimiter:
    """Our limiter, told the shrunk window (its weight counter is a plain :class:`WindowCounter`)."""
    limiter = RateLimiter(weight, 300, 1200, margin_ms=margin_ms)
    limiter.weight = WindowCounter(weight, window_ms, margin_ms)
    return limiter


@contextlib.asynccontextmanager
async def _pressured_venue(
    candle_root: Path, tmp_path: Path, *, weight: int, window_ms: int, foreign_per_s: float
) -> AsyncIterator[tuple[FuturesExchange, PaperExchangeService, object]]:
    home = tmp_path / "paper"
    home.mkdir()
    (home / "candles").symlink_to(candle_root, target_is_directory=True)
    service = PaperExchangeService(ServiceConfig.from_home(home, start_ms=START_MS, balance=Decimal(100_000)))
    settings = transport(weight_limit_1m=weight, weight_window_ms=window_ms, ban_initial_s=30)
    faults = Faults(FaultConfig(foreign_weight_per_s=foreign_per_s))
    async with running_app(service, settings, faults=faults) as (url, app):
        config = exchange_config(url, poll_interval_seconds=MONITOR_ROUND_S)
        client = await BinanceFuturesClient.create(
            config,
            paper_secrets(),
            retry=RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.05),
            limiter=_limiter(weight, window_ms, margin_ms=min(200, window_ms // 4)),
        )
        exchange = FuturesExchange(config, client, OrderStore.open(tmp_path / "xylen.db"))
        try:
            await exchange.start()
            assert exchange.stream is not None
            await exchange.stream.wait_connected(5.0)
            yield exchange, service, app[GATEWAY_KEY]
        finally:
            await exchange.stop()


async def _hammer(call: object, load: Load, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await call()  # type: ignore[operator]
            load.sent += 1
        except ExchangeError as exc:
            load.failed += 1
            load.errors.append(type(exc).__name__)
        await asyncio.sleep(0)


def _protection_delay_s(exchange: FuturesExchange, intent_id: str) -> float:
    """Seconds from the entry's fill to the venue's acknowledgement of its stop (recorded times)."""
    legs = latest_legs(exchange.store.orders_of_intent(intent_id))
    entry, stop = legs[OrderKind.ENTRY], legs.get(OrderKind.STOP_LOSS)
    assert stop is not None, f"intent {intent_id}: no stop"
    entry_events = exchange.store.events(entry.client_order_id)
    filled = [e.recorded_ms for e in entry_events if e.state_after is OrderState.FILLED]
    acked = [
        e.recorded_ms
        for e in exchange.store.events(stop.client_order_id)
        if e.state_after in (OrderState.NEW, OrderState.FILLED, OrderState.CANCELED)
    ]
    assert filled and acked, f"intent {intent_id}: entry filled {filled}, stop acknowledged {acked}"
    return (acked[0] - filled[0]) / 1000.0


def _stop_acknowledged(exchange: FuturesExchange, intent_id: str) -> bool:
    stop = latest_legs(exchange.store.orders_of_intent(intent_id)).get(OrderKind.STOP_LOSS)
    return stop is not None and stop.state is not OrderState.PENDING


def _closed(exchange: FuturesExchange, intent_id: str) -> bool:
    intent = exchange.store.get_intent(intent_id)
    return intent is not None and intent.status is not IntentStatus.OPEN


async def _run(
    candle_root: Path, tmp_path: Path, *, weight: int, window_ms: int, foreign: float, seconds: float
) -> None:
    async with _pressured_venue(
        candle_root, tmp_path, weight=weight, window_ms=window_ms, foreign_per_s=foreign
    ) as (ex, _service, gateway):
        load = Load()
        stop = asyncio.Event()

        async def beats() -> None:
            # a beat's reads leave together: market data of many symbols, then the account
            while not stop.is_set():
                calls: list[Awaitable[object]] = [ex.book_ticker(SYMBOL) for _ in range(BEAT_TICKERS)]
                calls += [ex.get_account_balance(), ex.get_open_positions()]
                for result in await asyncio.gather(*calls, return_exceptions=True):
                    if isinstance(result, ExchangeError):
                        load.failed += 1
                        load.errors.append(type(result).__name__)
                    elif isinstance(result, BaseException):
                        raise result
                    else:
                        load.sent += 1
                await asyncio.sleep(BEAT_S)

        hammers = [
            asyncio.create_task(beats()),
            *(asyncio.create_task(_hammer(lambda: ex.book_ticker(SYMBOL), load, stop)) for _ in range(2)),
            asyncio.create_task(_hammer(ex.get_open_positions, load, stop)),
        ]
        delays: list[float] = []
        try:
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                placed = await ex.place_order(
                    SYMBOL, Side.BUY, Decimal("0.01"), Decimal("40000"), Decimal("48000")
                )
                assert placed.entry.state is OrderState.FILLED, placed.reason
                iid = placed.intent.intent_id
                await until(lambda i=iid: _stop_acknowledged(ex, i), 30.0, "the stop acknowledged")  # type: ignore[misc]
                delays.append(_protection_delay_s(ex, iid))
                await ex.close_position(SYMBOL)
                await until(lambda i=iid: _closed(ex, i), 30.0, "the intent closed")  # type: ignore[misc]
        finally:
            stop.set()
            await asyncio.gather(*hammers, return_exceptions=True)
        statuses = dict(ex.client.transport.statuses)
        limiter = gateway.limiter  # type: ignore[attr-defined]
        banned = [ip for ip, state in limiter._ips.items() if state.bans]
        print(
            f"positions {len(delays)}, protection delays max {max(delays):.3f} s, "
            f"load sent {load.sent} failed {load.failed}, statuses {statuses}"
        )
        assert statuses.get(418, 0) == 0 and not banned, statuses
        assert statuses.get(429, 0) <= 2, statuses  # a rare 429 at worst, never a volley
        assert len(delays) >= 3
        assert max(delays) <= MONITOR_ROUND_S, delays
        assert load.sent > 50  # the competing load really competed


def test_under_another_clients_weight_the_stop_goes_first_and_the_ip_is_never_banned(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    # 200 weight per 4 s window, the neighbour takes 25/s = half of it; about 6 windows.
    asyncio.run(_run(candles, tmp_path, weight=200, window_ms=WINDOW_MS, foreign=25.0, seconds=24.0))


def test_real_minute_windows_for_minutes_when_asked(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    seconds = float(os.environ.get("XYLEN_PRESSURE_REAL_S", "0"))
    if seconds <= 0:
        import pytest

        pytest.skip("set XYLEN_PRESSURE_REAL_S to run minutes of real-window pressure")
    # Binance's 2400 per minute, the neighbour uses 30/s = 1800 of it.
    asyncio.run(_run(candles, tmp_path, weight=2400, window_ms=60_000, foreign=30.0, seconds=seconds))
