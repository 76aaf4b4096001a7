"""The data and feature pipeline behind ``xylen demo`` (and so ``make run``).

Steps, each idempotent so that a second run finds the work done and says so:

1. find market data: a folder given by the user, ``$XYLEN_DATA_DIR``, ``data.source_dir`` from
   the config, or ``../shared/data`` beside the repository (freqtrade feather files or a
   binance.vision-style tree of 5m kline zips); with none, download the last two complete
   months from binance.vision;
2. import the 5m candles into the candle store and check them for gaps and short candles;
3. derive 15m and 1h candles and compare them with the exchange's own files where present;
4. compute the feature set, write it to ``<home>/features/``, and compute the newest row
   incrementally, checking it against the batch row.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from xylen.data import CandleStore, check_candles, download, import_file
from xylen.data.importers import read_freqtrade_feather
from xylen.data.quality import format_ms
from xylen.errors import DataError
from xylen.features import (
    FEATURE_NAMES,
    FEATURE_VERSION,
    compute_features,
    feature_metadata,
    latest_row,
    resample_candles,
)
from xylen.features.incremental import DEFAULT_HISTORY
from xylen.fileio import atomic_write_parquet
from xylen.paths import Home

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DATA_DIR_ENV = "XYLEN_DATA_DIR"
MARKET = "um"
BASE = "5m"
HIGHER = ("15m", "1h")


@dataclass
class SymbolReport:
    symbol: str
    rows: int = 0
    rows_new: int = 0
    first_open: int = 0
    last_open: int = 0
    quality_issues: list[str] = field(default_factory=list)
    timeframe_checks: dict[str, str] = field(default_factory=dict)
    features_path: Path | None = None
    feature_rows: int = 0
    warmup_rows: int = 0
    features_seconds: float = 0.0
    latest_ms: float = 0.0
    latest_max_rel_diff: float = 0.0


def candidate_dirs(explicit: str | None, configured: str | None) -> list[Path]:
    chosen = [explicit, os.environ.get(DATA_DIR_ENV), configured]
    out = [Path(p).expanduser() for p in chosen if p]
    out += [REPO.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    return out


def _freqtrade_file(folder: Path, symbol: str, interval: str) -> Path | None:
    base = symbol.removesuffix("USDT")
    for sub in (folder / "freqtrade_binance_futures", folder):
        path = sub / f"{base}_USDT_USDT-{interval}-futures.feather"
        if path.is_file():
            return path
    return None


def _vision_zips(folder: Path, symbol: str) -> list[Path]:
    root = folder / "data" / "futures" / "um"
    return sorted(root.glob(f"*/klines/{symbol}/{BASE}/{symbol}-{BASE}-*.zip")) if root.is_dir() else []


def locate_sources(dirs: list[Path], symbol: str) -> tuple[Path | None, list[Path]]:
    """The first folder holding 5m candles of ``symbol`` and the files to import from it."""
    for folder in dirs:
        if not folder.is_dir():
            continue
        feather = _freqtrade_file(folder, symbol, BASE)
        if feather is not None:
            return folder, [feather]
        zips = _vision_zips(folder, symbol)
        if zips:
            return folder, zips
    return None, []


def _last_complete_months(count: int) -> tuple[str, str]:
    now = datetime.now(timezone.utc)
    year, month = now.year, now.month - 1
    if month == 0:
        year, month = year - 1, 12
    first_index = year * 12 + (month - 1) - (count - 1)
    return f"{first_index // 12:04d}-{first_index % 12 + 1:02d}", f"{year:04d}-{month:02d}"


def compare_timeframe(derived: pd.DataFrame, reference: pd.DataFrame) -> str:
    """One line: how many derived candles differ from the exchange's own file, and which."""
    merged = derived.merge(reference, on="open_time", suffixes=("", "_ref"))
    if merged.empty:
        return "no overlapping candles"
    differs = np.zeros(len(merged), dtype=bool)
    for col in ("open", "high", "low", "close"):
        differs |= merged[col].to_numpy() != merged[f"{col}_ref"].to_numpy()
    vol, ref = merged["volume"].to_numpy(), merged["volume_ref"].to_numpy()
    differs |= np.abs(vol - ref) > 1e-9 * np.maximum(np.abs(ref), 1.0)
    bad = merged.loc[differs, "open_time"].tolist()
    shown = ", ".join(format_ms(int(t)) for t in bad[:5]) + (" ..." if len(bad) > 5 else "")
    verdict = "all equal" if not bad else f"{len(bad)} differ ({shown})"
    return f"{len(merged):,} candles compared with the exchange's file: {verdict}"


def run_symbol(symbol: str, home: Home, dirs: list[Path], mirror: str, compression: str) -> SymbolReport:
    report = SymbolReport(symbol)
    store = CandleStore(home.candles, compression=compression)
    folder, files = locate_sources(dirs, symbol)
    if files:
        for path in files:
            result = import_file(path, store, market=MARKET, symbol=symbol, interval=BASE)
            report.rows_new += result.rows_stored
        logger.info("%s: imported %d file(s) from %s", symbol, len(files), folder)
    else:
        start, end = _last_complete_months(2)
        logger.info("%s: no local data found; downloading %s..%s from %s", symbol, start, end, mirror)
        summary = download(
            symbol,
            BASE,
            start,
            end,
            market=MARKET,
            mirror=mirror,
            dest=home.downloads,
            store=store,
            progress=False,
        )
        report.rows_new += summary.rows_stored
    candles = store.read(MARKET, symbol, BASE)
    if candles.empty:
        raise DataError(f"{symbol}: no {BASE} candles could be found or downloaded")
    report.rows = len(candles)
    report.first_open = int(candles["open_time"].iloc[0])
    report.last_open = int(candles["open_time"].iloc[-1])
    report.quality_issues = [str(issue) for issue in check_candles(candles, BASE).issues]

    for target in HIGHER:
        derived = resample_candles(candles, BASE, target)
        ref_path = _freqtrade_file(folder, symbol, target) if folder else None
        if ref_path is None:
            report.timeframe_checks[target] = (
                f"{len(derived):,} candles derived (no exchange file to compare)"
            )
            continue
        reference = read_freqtrade_feather(ref_path)
        report.timeframe_checks[target] = compare_timeframe(derived, reference)

    started = time.perf_counter()
    features = compute_features(candles, BASE)
    report.features_seconds = time.perf_counter() - started
    report.feature_rows = len(features)
    values = features[list(FEATURE_NAMES)].to_numpy()
    report.warmup_rows = int(np.isnan(values).any(axis=1).sum())
    out = home.features / MARKET / symbol / BASE / f"{symbol}-{BASE}-{FEATURE_VERSION}.parquet"
    atomic_write_parquet(features, out, metadata=feature_metadata(BASE))
    report.features_path = out

    tail = candles.iloc[-DEFAULT_HISTORY:]
    started = time.perf_counter()
    newest = latest_row(tail, BASE)
    report.latest_ms = (time.perf_counter() - started) * 1000
    batch = values[-1].astype(np.float64)
    inc = np.array([newest[name] for name in FEATURE_NAMES], dtype=np.float64)
    scale = np.maximum(np.abs(batch), 1e-12)
    report.latest_max_rel_diff = float(np.nanmax(np.abs(inc - batch) / scale))
    return report


def format_report(report: SymbolReport) -> list[str]:
    lines = [
        f"{report.symbol} {BASE}: {report.rows:,} candles {format_ms(report.first_open)} .. "
        f"{format_ms(report.last_open)} in the store ({report.rows_new:,} new this run)",
        "  quality: "
        + (
            "no gaps, no short candles"
            if not report.quality_issues
            else f"{len(report.quality_issues)} issue(s): " + "; ".join(report.quality_issues[:3])
        ),
    ]
    lines += [f"  {tf} from {BASE}: {text}" for tf, text in report.timeframe_checks.items()]
    lines.append(
        f"  features {FEATURE_VERSION}: {len(FEATURE_NAMES)} columns x {report.feature_rows:,} rows in "
        f"{report.features_seconds:.2f} s ({report.warmup_rows:,} warm-up rows NaN) -> {report.features_path}"
    )
    lines.append(
        f"  newest row incrementally from the last {DEFAULT_HISTORY:,} candles: {report.latest_ms:.2f} ms, "
        f"max relative difference to the batch row {report.latest_max_rel_diff:.1e}"
    )
    return lines
