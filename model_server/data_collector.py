"""``python -m model_server.data_collector``: closed klines from the exchange REST API into the candle store.

One poll, per symbol:

1. **Market clock.**  ``now = min(GET /fapi/v1/time serverTime, GET /fapi/v1/ticker/price time)``.
   On Binance both are wall time; on the paper exchange ``/time`` is wall time while market data
   (klines, ticker) run on the replay clock, so the ticker's time is the one that says which candle
   is still open.  Taking the earlier of the two can only delay a candle by one poll, never store an
   open one.
2. **What is missing** between ``start`` (``--start``, else ``--lookback-days`` before ``now``) and
   the last *closed* candle (``close_time < now``): the head before the first stored candle, every
   gap :func:`xylen.data.quality.check_candles` finds in the stored series, and the tail after the
   last stored candle.
3. **Back-fill** each missing range with ``startTime``/``endTime`` paged requests (``limit`` 1500),
   keep only rows with ``close_time < now`` inside the range, and merge them into the store
   (:meth:`xylen.data.store.CandleStore.write`, market ``um``: atomic, idempotent, unchanged months
   not rewritten; a stored candle the exchange now reports differently is overwritten, with a warning).

A head or interior gap the exchange has no candles for (a real outage) is asked for once per
process, then left alone (logged).  Every HTTP call has a timeout; connection errors, timeouts and
5xx answers are retried with exponential backoff and jitter; 429/418 wait ``Retry-After`` seconds;
other 4xx answers fail at once.

Exit codes: 0 done (``--once``) or stopped (``--loop``, SIGTERM/SIGINT), 1 a poll failed
(``--once``), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

import aiohttp
import numpy as np
import pandas as pd

from xylen.data.quality import check_candles, format_ms
from xylen.data.schema import CANDLE_COLUMNS, interval_ms
from xylen.data.store import CandleStore, validate_series
from xylen.errors import DataError, UsageError
from xylen.paths import Home

logger = logging.getLogger(__name__)

MARKET: Final = "um"
PAGE_LIMIT: Final = 1500
DAY_MS: Final = 86_400_000
KLINES_PATH: Final = "/fapi/v1/klines"
_RETRY_STATUSES: Final = frozenset({429, 418})


class CollectorError(Exception):
    """A request that failed for good (non-retryable answer, or retries exhausted)."""


@dataclass(frozen=True)
class CollectorConfig:
    """What to collect and how hard to try."""

    exchange_url: str
    symbols: tuple[str, ...]
    interval: str = "5m"
    home: Path | None = None
    start_ms: int | None = None  # gap repair from here; default now - lookback_days
    lookback_days: float = 30.0
    timeout_s: float = 10.0
    max_retries: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 300.0

    def validate(self) -> None:
        """``UsageError`` naming the first bad value."""
        if not self.exchange_url.startswith(("http://", "https://")):
            raise UsageError(f"--exchange-url must be http(s)://..., got {self.exchange_url!r}")
        if not self.symbols:
            raise UsageError("--symbols: at least one symbol")
        step = interval_ms(self.interval)
        if DAY_MS % step:
            raise UsageError(f"--interval {self.interval}: must divide a day (candles aligned to UTC)")
        for symbol in self.symbols:
            validate_series(MARKET, symbol, self.interval)
        if self.lookback_days <= 0 or self.timeout_s <= 0 or self.max_retries < 0:
            raise UsageError("--lookback-days and --timeout-s must be > 0, --max-retries >= 0")


@dataclass
class RequestStats:
    """Counters of one client (the tests and the poll log read them)."""

    requests: int = 0
    retries: int = 0
    server_errors: int = 0
    timeouts: int = 0
    rate_limited: int = 0


@dataclass(frozen=True)
class PollResult:
    """What one poll of one symbol did."""

    symbol: str
    now_ms: int
    last_closed_open_ms: int
    ranges_fetched: int
    candles_received: int
    added: int
    changed: int
    gaps_before: int
    gaps_after: int
    missing_after: int


class KlineClient:
    """Public REST calls with a timeout on each, retries with backoff, and ``Retry-After``."""

    def __init__(self, config: CollectorConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.session = session
        self.base = config.exchange_url.rstrip("/")
        self.stats = RequestStats()
        self._rng = random.Random()  # nosec B311 # retry jitter, not a secret

    def _backoff(self, attempt: int) -> float:
        delay = min(self.config.max_backoff_s, self.config.backoff_s * 2**attempt)
        return float(delay * (0.5 + self._rng.random() / 2))

    async def get(self, path: str, params: Mapping[str, str | int] | None = None) -> Any:
        """The decoded JSON of ``GET path``; :class:`CollectorError` when it cannot be had."""
        query = {k: str(v) for k, v in (params or {}).items()}
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        last = "no attempt"
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                self.stats.retries += 1
            self.stats.requests += 1
            wait: float | None = None
            try:
                async with self.session.get(self.base + path, params=query, timeout=timeout) as resp:
                    body = await resp.text()
                    if resp.status == 200:
                        return await resp.json(content_type=None)
                    last = f"HTTP {resp.status}: {body[:200]}"
                    if resp.status in _RETRY_STATUSES:
                        self.stats.rate_limited += 1
                        wait = min(self._retry_after(resp.headers), self.config.max_retry_after_s)
                    elif resp.status >= 500:
                        self.stats.server_errors += 1
                    else:
                        raise CollectorError(f"GET {path} {query}: {last}")
            except asyncio.TimeoutError:
                self.stats.timeouts += 1
                last = f"timeout after {self.config.timeout_s} s"
            except aiohttp.ClientError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if attempt == self.config.max_retries:
                break
            delay = wait if wait is not None else self._backoff(attempt)
            logger.warning("GET %s failed (%s); retry %d in %.2f s", path, last, attempt + 1, delay)
            await asyncio.sleep(delay)
        raise CollectorError(f"GET {path}: giving up after {self.config.max_retries + 1} attempt(s): {last}")

    def _retry_after(self, headers: Mapping[str, str]) -> float:
        try:
            return max(0.0, float(headers.get("Retry-After", "")))
        except ValueError:
            return self.config.max_backoff_s

    async def market_now(self, symbol: str) -> int:
        """The market clock in ms: the earlier of the server time and the ticker's time."""
        server = int((await self.get("/fapi/v1/time"))["serverTime"])
        ticker = await self.get("/fapi/v1/ticker/price", {"symbol": symbol})
        if isinstance(ticker, dict) and ticker.get("time") is not None:
            return min(server, int(ticker["time"]))
        return server

    async def klines(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[list[Any]]:
        """One page of klines with ``start_ms <= open_time <= end_ms``."""
        params: dict[str, str | int] = {
            "symbol": symbol,
            "interval": interval,
            "startTime": start_ms,
            "endTime": end_ms,
            "limit": PAGE_LIMIT,
        }
        rows = await self.get(KLINES_PATH, params)
        if not isinstance(rows, list):
            raise CollectorError(f"GET {KLINES_PATH}: expected a list, got {type(rows).__name__}")
        return rows


def klines_to_frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Binance kline arrays -> a candle frame (:data:`xylen.data.schema.CANDLE_COLUMNS`)."""
    frame = pd.DataFrame(
        {
            "open_time": np.array([int(r[0]) for r in rows], dtype=np.int64),
            "open": np.array([float(r[1]) for r in rows]),
            "high": np.array([float(r[2]) for r in rows]),
            "low": np.array([float(r[3]) for r in rows]),
            "close": np.array([float(r[4]) for r in rows]),
            "volume": np.array([float(r[5]) for r in rows]),
            "close_time": np.array([int(r[6]) for r in rows], dtype=np.int64),
            "quote_volume": np.array([float(r[7]) for r in rows]),
            "trades": np.array([float(r[8]) for r in rows]),
            "taker_buy_volume": np.array([float(r[9]) for r in rows]),
            "taker_buy_quote_volume": np.array([float(r[10]) for r in rows]),
        }
    )
    return frame[list(CANDLE_COLUMNS)]


def parse_start(text: str | None) -> int | None:
    """``YYYY-MM-DD`` (UTC) or epoch milliseconds -> ms; ``None`` stays ``None``."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        raise UsageError(f"--start: expected YYYY-MM-DD or epoch ms, got {text!r}") from None
    return int(day.timestamp() * 1000)


@dataclass
class DataCollector:
    """Polls closed klines into the candle store and repairs gaps (see the module docstring)."""

    config: CollectorConfig
    client: KlineClient
    store: CandleStore
    _tried: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def _missing(self, symbol: str, start: int, last_closed: int) -> tuple[list[tuple[int, int, str]], int]:
        """Missing ``(first_open, last_open, kind)`` ranges in ``[start, last_closed]``; and gaps seen."""
        step = interval_ms(self.config.interval)
        stored = self.store.read(MARKET, symbol, self.config.interval, start, last_closed + step)
        if stored.empty:
            return [(start, last_closed, "tail")], 0
        ot = stored["open_time"].to_numpy(np.int64)
        ranges: list[tuple[int, int, str]] = []
        if ot[0] > start:
            ranges.append((start, int(ot[0]) - step, "head"))
        gaps = check_candles(stored, self.config.interval).gaps
        ranges.extend((g.start, g.end, "gap") for g in gaps)
        if ot[-1] < last_closed:
            ranges.append((int(ot[-1]) + step, last_closed, "tail"))
        return ranges, len(gaps)

    async def _fetch(self, symbol: str, first: int, last: int, now: int) -> pd.DataFrame:
        """Closed candles with ``first <= open_time <= last``, paged by :data:`PAGE_LIMIT`."""
        step = interval_ms(self.config.interval)
        frames: list[pd.DataFrame] = []
        cursor = first
        while cursor <= last:
            rows = await self.client.klines(symbol, self.config.interval, cursor, last + step - 1)
            if not rows:
                break
            page = klines_to_frame(rows)
            ot = page["open_time"].to_numpy(np.int64)
            keep = (ot >= first) & (ot <= last) & (page["close_time"].to_numpy(np.int64) < now)
            frames.append(page[keep])
            if int(ot.max()) < cursor:
                break
            cursor = int(ot.max()) + step
        if not frames:
            return pd.DataFrame(columns=list(CANDLE_COLUMNS))
        out = pd.concat(frames, ignore_index=True)
        return out.drop_duplicates("open_time").sort_values("open_time").reset_index(drop=True)

    def _already_tried(self, symbol: str, first: int, last: int) -> bool:
        return any(a <= first and last <= b for a, b in self._tried.get(symbol, []))

    async def poll_symbol(self, symbol: str) -> PollResult:
        """One poll of ``symbol``: new closed candles and every repairable gap."""
        cfg = self.config
        step = interval_ms(cfg.interval)
        now = await self.client.market_now(symbol)
        last_closed = (now - step) // step * step  # close_time = open + step - 1 < now
        if cfg.start_ms is not None:
            start = -(-cfg.start_ms // step) * step
        else:
            start = -(-(now - int(cfg.lookback_days * DAY_MS)) // step) * step
        ranges, gaps_before = self._missing(symbol, start, last_closed)
        received = added = changed = fetched = 0
        for first, last, kind in ranges:
            if first > last:
                continue
            if kind != "tail" and self._already_tried(symbol, first, last):
                logger.debug("%s: %s %s..%s not offered by the exchange; skipped", symbol, kind, first, last)
                continue
            frame = await self._fetch(symbol, first, last, now)
            fetched += 1
            if kind != "tail":
                self._tried.setdefault(symbol, []).append((first, last))
            expected = (last - first) // step + 1
            if len(frame) < expected and kind != "tail":
                logger.warning(
                    "%s: exchange has %d of %d candle(s) for the %s %s .. %s",
                    symbol,
                    len(frame),
                    expected,
                    kind,
                    format_ms(first),
                    format_ms(last),
                )
            if frame.empty:
                continue
            received += len(frame)
            result = self.store.write(MARKET, symbol, cfg.interval, frame, overwrite=True)
            added += result.rows_added
            changed += result.rows_changed
            if result.rows_changed:
                logger.warning(
                    "%s: %d stored candle(s) differed from the exchange; replaced",
                    symbol,
                    result.rows_changed,
                )
        _, gaps_after = self._missing(symbol, start, last_closed)
        stored = self.store.read(MARKET, symbol, cfg.interval, start, last_closed + step)
        missing_after = (last_closed - start) // step + 1 - len(stored)
        result_ = PollResult(
            symbol,
            now,
            last_closed,
            fetched,
            received,
            added,
            changed,
            gaps_before,
            gaps_after,
            missing_after,
        )
        logger.info(
            "collector %s %s: now %s, last closed %s, %d range(s) fetched, %d candle(s) received, "
            "%d added, %d changed, gaps %d -> %d, %d missing",
            symbol,
            cfg.interval,
            format_ms(now),
            format_ms(last_closed),
            fetched,
            received,
            added,
            changed,
            gaps_before,
            gaps_after,
            missing_after,
        )
        return result_

    async def poll_once(self) -> list[PollResult]:
        """Poll every symbol once; the first failure propagates."""
        return [await self.poll_symbol(symbol) for symbol in self.config.symbols]

    async def run_loop(self, interval_s: float, stop: asyncio.Event) -> None:
        """Poll every ``interval_s`` seconds until ``stop`` is set; a failed poll is logged, not fatal."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self.poll_once()
            except (CollectorError, DataError, OSError) as exc:
                logger.error("poll failed: %s", exc)
            remaining = max(0.0, interval_s - (time.monotonic() - started))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=remaining)


async def collect(config: CollectorConfig, loop_interval_s: float | None = None) -> list[PollResult]:
    """Run once (``loop_interval_s`` None; returns the results) or until SIGTERM/SIGINT."""
    config.validate()
    store = CandleStore(Home.resolve(config.home).candles)
    async with aiohttp.ClientSession() as session:
        collector = DataCollector(config, KlineClient(config, session), store)
        if loop_interval_s is None:
            return await collector.poll_once()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        await collector.run_loop(loop_interval_s, stop)
        return []


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model_server.data_collector",
        description="Poll closed klines from a Binance USD-M REST API into the candle store, repairing gaps.",
    )
    parser.add_argument(
        "--exchange-url", required=True, help="e.g. https://fapi.binance.com or the paper exchange"
    )
    parser.add_argument("--symbols", required=True, help="comma-separated, e.g. BTCUSDT,ETHUSDT")
    parser.add_argument("--interval", default="5m", help="candle interval (default 5m)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="poll once and exit (default)")
    mode.add_argument("--loop", action="store_true", help="poll every --interval-s seconds")
    parser.add_argument("--interval-s", type=float, default=60.0, help="seconds between polls (--loop)")
    parser.add_argument("--home", default=None, help="home folder (default $XYLEN_HOME, else ./data)")
    parser.add_argument("--start", default=None, help="repair gaps from this day (YYYY-MM-DD) or epoch ms")
    parser.add_argument("--lookback-days", type=float, default=30.0, help="without --start (default 30)")
    parser.add_argument("--timeout-s", type=float, default=10.0, help="per request (default 10)")
    parser.add_argument("--max-retries", type=int, default=5, help="per request (default 5)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", default="auto", choices=["auto", "text", "json"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (exit codes in the module docstring)."""
    from xylen.logs import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        if args.interval_s <= 0:
            raise UsageError("--interval-s must be > 0")
        config = CollectorConfig(
            exchange_url=args.exchange_url,
            symbols=tuple(s.strip().upper() for s in args.symbols.split(",") if s.strip()),
            interval=args.interval,
            home=Path(args.home) if args.home else None,
            start_ms=parse_start(args.start),
            lookback_days=args.lookback_days,
            timeout_s=args.timeout_s,
            max_retries=args.max_retries,
        )
        config.validate()
    except (UsageError, ValueError, DataError) as exc:
        print(f"data_collector: error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(collect(config, args.interval_s if args.loop else None))
    except (CollectorError, DataError, OSError) as exc:
        logger.error("collector failed: %s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
