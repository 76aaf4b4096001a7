"""The data collector against the REAL paper exchange (in-process, real BTCUSDT 5m candles, real HTTP).

The exchange's replay clock is stepped (``service.step_to``), so which candles are closed is known
exactly; the collector writes into its own temporary home, and what it stored is compared with the
candles the exchange replays.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model_server.data_collector import (
    CollectorConfig,
    DataCollector,
    KlineClient,
    PollResult,
    main,
)
from paper_exchange.faults import FaultConfig, Faults
from paper_exchange.service import PaperExchangeService
from paper_exchange.tests.e2e_support import START_MS, SYMBOL, candle_root, make_service, serve
from xylen.data.quality import check_candles
from xylen.data.store import CandleStore

STEP = 300_000
START = START_MS - 2 * 86_400_000 - 12 * STEP  # 2023-12-30 23:00 UTC: two month files
LAST_CLOSED = START_MS - STEP  # at the replay clock START_MS the 00:00 candle has just opened


@pytest.fixture(scope="module")
def candles(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    return candle_root(tmp_path_factory, shared_data)


@pytest.fixture()
def service(candles: Path, tmp_path: Path) -> Iterator[PaperExchangeService]:
    svc = make_service(candles, tmp_path)
    yield svc
    svc.close()


def _config(url: str, home: Path, **overrides: Any) -> CollectorConfig:
    values: dict[str, Any] = {
        "exchange_url": url,
        "symbols": (SYMBOL,),
        "home": home,
        "start_ms": START,
        "timeout_s": 5.0,
        "backoff_s": 0.01,
    }
    values.update(overrides)
    return CollectorConfig(**values)


async def _poll(config: CollectorConfig) -> tuple[PollResult, KlineClient]:
    async with aiohttp.ClientSession() as session:
        client = KlineClient(config, session)
        store = CandleStore(Path(str(config.home)) / "candles")
        results = await DataCollector(config, client, store).poll_once()
        return results[0], client


def _stored(home: Path, start: int = START, end: int | None = None) -> pd.DataFrame:
    return CandleStore(home / "candles").read("um", SYMBOL, "5m", start, end)


def _assert_matches_source(stored: pd.DataFrame, source_root: Path) -> None:
    source = CandleStore(source_root).read("um", SYMBOL, "5m", int(stored.open_time.iloc[0]))
    source = source.set_index("open_time").loc[stored["open_time"].to_numpy()]
    for col in ("open", "high", "low", "close"):
        np.testing.assert_allclose(stored[col].to_numpy(), source[col].to_numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(stored["volume"].to_numpy(), source["volume"].to_numpy(), atol=1e-3)


def test_polls_closed_candles_and_never_the_open_one(
    service: PaperExchangeService, candles: Path, tmp_path: Path
) -> None:
    home = tmp_path / "collector"

    async def scenario() -> None:
        async with serve(service) as url:
            config = _config(url, home)
            first, _ = await _poll(config)
            stored = _stored(home)
            expected = (LAST_CLOSED - START) // STEP + 1
            assert first.added == expected == len(stored) and first.missing_after == 0
            assert int(stored.open_time.iloc[-1]) == LAST_CLOSED
            assert (stored.close_time < first.now_ms).all() and first.now_ms == START_MS
            assert check_candles(stored, "5m").ok
            _assert_matches_source(stored, candles)

            # An hour and a half candle later: 12 candles closed, the 13th (open at 01:00) is not.
            service.step_to(START_MS + 12 * STEP + STEP // 2)
            second, _ = await _poll(config)
            assert second.added == 12 and second.gaps_after == 0
            stored = _stored(home)
            assert int(stored.open_time.iloc[-1]) == START_MS + 11 * STEP
            assert START_MS + 12 * STEP not in set(stored.open_time)

            # Polling again at the same clock changes nothing (idempotent).
            again, _ = await _poll(config)
            assert again.added == 0 and again.changed == 0 and again.ranges_fetched == 0

            # Once it has closed, the candle arrives with its final values.
            service.step_to(START_MS + 13 * STEP)
            third, _ = await _poll(config)
            assert third.added == 1 and third.changed == 0
            stored = _stored(home)
            assert int(stored.open_time.iloc[-1]) == START_MS + 12 * STEP
            _assert_matches_source(stored, candles)

    asyncio.run(scenario())


def test_repairs_gaps_and_deleted_months(service: PaperExchangeService, tmp_path: Path) -> None:
    home = tmp_path / "collector"
    series = home / "candles" / "um" / SYMBOL / "5m"

    async def scenario() -> None:
        async with serve(service) as url:
            config = _config(url, home)
            await _poll(config)
            jan = series / f"{SYMBOL}-5m-2024-01.parquet"
            dec = series / f"{SYMBOL}-5m-2023-12.parquet"
            originals = {p: p.read_bytes() for p in (jan, dec)}
            full = _stored(home)

            # A hole in the middle of January and a whole month deleted.
            frame = pq.read_table(jan).to_pandas()
            holed = frame.drop(index=range(100, 140)).reset_index(drop=True)
            pq.write_table(pa.Table.from_pandas(holed, preserve_index=False), jan)
            dec.unlink()
            report = check_candles(_stored(home), "5m")
            assert report.missing_candles == 40 and len(report.gaps) == 1

            result, _ = await _poll(config)
            assert result.gaps_before == 1 and result.gaps_after == 0 and result.missing_after == 0
            assert result.added == 40 + 300  # the hole + December (2023-12-30 23:00 .. 31 23:55)
            pd.testing.assert_frame_equal(_stored(home), full)
            assert {p: p.read_bytes() for p in (jan, dec)} == originals  # byte-identical repair

    asyncio.run(scenario())


def test_5xx_faults_are_retried(candles: Path, tmp_path: Path) -> None:
    service = make_service(candles, tmp_path)
    home = tmp_path / "collector"
    faults = Faults(
        FaultConfig.model_validate({"seed": 7, "error_rate": {"rate": 0.5, "statuses": [503, 500]}})
    )

    async def scenario() -> None:
        async with serve(service, faults=faults) as url:
            # Three pages of back-fill (3,000+ candles): half of all requests answer 503/500.
            config = _config(url, home, start_ms=START_MS - 11 * 86_400_000, max_retries=8)
            result, client = await _poll(config)
            assert client.stats.server_errors > 0 and client.stats.retries == client.stats.server_errors
            assert result.missing_after == 0 and result.gaps_after == 0
            assert len(_stored(home, config.start_ms or 0)) == (LAST_CLOSED - START_MS) // STEP + 11 * 288 + 1

    try:
        asyncio.run(scenario())
    finally:
        service.close()


def test_cli_once_and_bad_arguments(service: PaperExchangeService, tmp_path: Path) -> None:
    home = tmp_path / "collector"

    async def scenario() -> int:
        async with serve(service) as url:
            argv = ["--exchange-url", url, "--symbols", "btcusdt", "--interval", "5m", "--once"]
            argv += ["--home", str(home), "--start", "2024-01-01"]
            return await asyncio.to_thread(main, argv)

    assert asyncio.run(scenario()) == 0
    stored = _stored(home, 0)
    assert len(stored) == 288 and int(stored.open_time.iloc[-1]) == LAST_CLOSED
    assert main(["--exchange-url", "ftp://x", "--symbols", SYMBOL]) == 2
    assert main(["--exchange-url", "http://127.0.0.1:9", "--symbols", SYMBOL, "--interval", "7x"]) == 2
    unreachable = ["--exchange-url", "http://127.0.0.1:9", "--symbols", SYMBOL, "--max-retries", "0"]
    assert main([*unreachable, "--home", str(tmp_path / "other"), "--timeout-s", "2"]) == 1
    assert not os.path.exists(tmp_path / "other" / "candles" / "um")
