"""Candles -> training set: features of :mod:`xylen.features` (the one feature engine) + labels.

One market (:func:`build_dataset`) or several pooled (:func:`build_pooled_dataset`): each symbol's
features are computed from its own candles (every feature is scale-free, so BTC and ETH rows share
one scale), labelled with :mod:`xylen.labels`, and the rows are merged in time order.

Rows kept: after the feature warm-up (:func:`xylen.features.max_warmup`), all features finite, and a
label that is up or down (hold-band rows and rows without a full horizon are dropped; see
:mod:`model_server.training.labels`).  Each row keeps its *bar number*
``(open_time - first_open_time) // step``, so walk-forward purging and embargo are measured in time,
also across dropped rows and gaps in the candles.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from model_server.training.labels import make_labels
from xylen.data.inputs import read_input
from xylen.data.schema import interval_ms
from xylen.errors import DataError, UsageError
from xylen.features import compute_feature_matrix, feature_specs, max_warmup
from xylen.paths import Home

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Dataset:
    """Feature matrix and labels of the tradable rows, oldest first."""

    X: F32  # (n, F) float32, C-ordered
    y: F32  # (n,) 0.0 / 1.0
    bar: I64  # (n,) bar number from the first candle (time / step)
    open_time: I64  # (n,) ms UTC
    forward_return: F64  # (n,)
    feature_names: tuple[str, ...]
    interval: str
    horizon_bars: int
    cost: float
    n_candles: int
    n_hold: int
    last_bar: int = -1  # bar number of the newest candle (labelled or not); -1: the newest row's
    symbols: tuple[str, ...] = ()  # the markets pooled (empty: one market, not named here)
    symbol_index: I64 | None = None  # (n,) index into ``symbols`` of each row (pooled only)

    @property
    def n_bars(self) -> int:
        """Bars spanned by the candles (the newest candle counts even without a label)."""
        return max(self.last_bar, int(self.bar[-1]) if len(self.bar) else -1) + 1

    def __len__(self) -> int:
        return len(self.y)

    @property
    def up_share(self) -> float:
        return float(self.y.mean()) if len(self.y) else float("nan")


def load_candles(
    symbol: str,
    interval: str,
    home: str | Path | None = None,
    input_path: str | Path | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> pd.DataFrame:
    """Candles of ``symbol``/``interval`` from a file (``input_path``) or the candle store (USDⓈ-M).

    ``start_ms <= open_time < end_ms`` (either bound optional).  Raises :class:`DataError` when
    nothing is left, :class:`UsageError` for a missing or unsupported file.
    """
    if input_path is not None:
        path = Path(input_path)
        if not path.is_file():
            raise UsageError(f"input file not found: {path}")
        frame = read_input(str(path), None if home is None else str(home))
        ot = frame["open_time"].to_numpy(np.int64)
        mask = np.ones(len(frame), dtype=bool)
        if start_ms is not None:
            mask &= ot >= start_ms
        if end_ms is not None:
            mask &= ot < end_ms
        frame = frame.loc[mask].reset_index(drop=True)
        source = str(path)
    else:
        from xylen.data.store import CandleStore

        store = CandleStore(Home.resolve(home).candles)
        frame = store.read("um", symbol, interval, start_ms, end_ms)
        source = f"store um/{symbol}/{interval}"
    if frame.empty:
        raise DataError(f"no candles for {symbol} {interval} in {source} for the requested span")
    logger.info("loaded %d candles from %s", len(frame), source)
    return frame


def build_dataset(
    candles: pd.DataFrame,
    interval: str,
    horizon_bars: int,
    cost: float,
    max_rows: int | None = None,
) -> Dataset:
    """Features + labels of ``candles`` (sorted by ``open_time``); ``max_rows`` keeps the newest.

    With ``max_rows`` the candles are cut to the newest ``max_rows + warm-up + horizon`` before the
    features are computed, so a memory-limited profile never materialises the full history.
    """
    step = interval_ms(interval)
    warm = max_warmup(interval)
    if max_rows is not None and len(candles) > max_rows + warm + horizon_bars:
        candles = candles.iloc[-(max_rows + warm + horizon_bars) :].reset_index(drop=True)
    n = len(candles)
    if n <= warm + horizon_bars:
        raise DataError(f"{n} candles: need more than warm-up {warm} + horizon {horizon_bars}")
    ot = candles["open_time"].to_numpy(np.int64)
    if np.any(np.diff(ot) <= 0):
        raise DataError("candle open times are not strictly increasing")
    close = candles["close"].to_numpy(np.float64)
    matrix = compute_feature_matrix(candles, interval)
    labels, fwd = make_labels(close, horizon_bars, cost, ot, step)
    keep = np.zeros(n, dtype=bool)
    keep[warm:] = True
    keep &= np.isfinite(matrix).all(axis=1)
    usable = keep & ~np.isnan(fwd)
    keep &= ~np.isnan(labels)
    n_hold = int(usable.sum() - keep.sum())
    idx = np.flatnonzero(keep)
    if len(idx) == 0:
        raise DataError("no labelled rows (all inside the hold band or in the warm-up)")
    names = tuple(s.name for s in feature_specs(interval))
    X = np.ascontiguousarray(matrix[idx])
    del matrix
    ds = Dataset(
        X=X,
        y=labels[idx].astype(np.float32),
        bar=(ot[idx] - ot[0]) // step,
        open_time=ot[idx],
        forward_return=fwd[idx],
        feature_names=names,
        interval=interval,
        horizon_bars=horizon_bars,
        cost=cost,
        n_candles=n,
        n_hold=n_hold,
        last_bar=int((ot[-1] - ot[0]) // step),
    )
    logger.info(
        "dataset: %d candles -> %d labelled rows (%d in the hold band dropped), up share %.3f",
        n,
        len(ds),
        n_hold,
        ds.up_share,
    )
    return ds


def build_pooled_dataset(
    candles: Mapping[str, pd.DataFrame],
    interval: str,
    horizon_bars: int,
    cost: float,
    max_rows: int | None = None,
) -> Dataset:
    """One training set over several symbols: each symbol's own features and labels, merged in time.

    Bar numbers count from the oldest candle of any symbol, so rows of different symbols at the same
    time share a bar and walk-forward folds, purge and embargo cut all markets at the same instants.
    ``max_rows`` bounds the pooled rows (each symbol keeps its newest ``max_rows // n_symbols``).
    """
    if not candles:
        raise DataError("no symbol to pool")
    symbols = tuple(candles)
    if len(symbols) == 1:
        ds = build_dataset(candles[symbols[0]], interval, horizon_bars, cost, max_rows)
        return replace(ds, symbols=symbols, symbol_index=np.zeros(len(ds), dtype=np.int64))
    per = None if max_rows is None else max(1, max_rows // len(symbols))
    parts = [build_dataset(candles[s], interval, horizon_bars, cost, per) for s in symbols]
    step = interval_ms(interval)
    # the first candle each part used (a row's bar counts from it): open_time - bar * step
    first = min(int(d.open_time[0]) - int(d.bar[0]) * step for d in parts)
    open_time = np.concatenate([d.open_time for d in parts])
    which = np.concatenate([np.full(len(d), i, dtype=np.int64) for i, d in enumerate(parts)])
    order = np.lexsort((which, open_time))  # time first, then the symbols' order
    last = max(int(candles[s]["open_time"].iloc[-1]) for s in symbols)
    ds = Dataset(
        X=np.ascontiguousarray(np.concatenate([d.X for d in parts])[order]),
        y=np.concatenate([d.y for d in parts])[order],
        bar=(open_time[order] - first) // step,
        open_time=open_time[order],
        forward_return=np.concatenate([d.forward_return for d in parts])[order],
        feature_names=parts[0].feature_names,
        interval=interval,
        horizon_bars=horizon_bars,
        cost=cost,
        n_candles=sum(d.n_candles for d in parts),
        n_hold=sum(d.n_hold for d in parts),
        last_bar=(last - first) // step,
        symbols=symbols,
        symbol_index=which[order],
    )
    logger.info(
        "pooled dataset over %s: %d labelled rows (%s), up share %.3f",
        ",".join(symbols),
        len(ds),
        ", ".join(f"{s} {len(d)}" for s, d in zip(symbols, parts, strict=True)),
        ds.up_share,
    )
    return ds


def feature_rows(candles: pd.DataFrame, interval: str, max_rows: int | None = None) -> F32:
    """Finite feature rows (after the warm-up) of ``candles``: real inputs for ONNX validation."""
    matrix = compute_feature_matrix(candles, interval)[max_warmup(interval) :]
    matrix = matrix[np.isfinite(matrix).all(axis=1)]
    if max_rows is not None:
        matrix = matrix[-max_rows:]
    return np.ascontiguousarray(matrix)
