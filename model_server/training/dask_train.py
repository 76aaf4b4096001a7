"""Training on a Dask cluster: each worker reads its own months and LightGBM fits across them.

Used by ``xylen train --dask ADDRESS`` (``local:N`` starts an in-process cluster of N worker
processes)::

    with dask_session(parse_dask_target("tcp://10.0.0.5:8786")) as session:
        data = load_dask_dataset(session, store_root, "BTCUSDT", "5m", config.horizon_bars, config.cost)
        model = train_model(None, config, dataset=data.dataset, fit=data.fit, metadata_extra=data.info)

Everything except fitting boosters is the local code of :mod:`model_server.training.train`
(walk-forward folds, out-of-fold predictions, calibrator, final window, report, model directory).

**Data.** One task per month of the candle store (``<SYMBOL>-<interval>-<YYYY-MM>.parquet``),
pinned round-robin to the workers, so every walk-forward fold trains on all of them.  A task reads
its month plus the end of the previous one (:func:`context_bars`: every recursive indicator has
forgotten its seed, so the features equal those of one pass over the whole history to float32
round-off) and the first ``horizon_bars`` of the next (the labels of the month's last rows), and
keeps the month's rows that the local run keeps.  The partitions stay on the workers; the client gathers
the feature matrix once (it scores the out-of-fold and final-window rows and checks ONNX parity).

**Fitting.** A walk-forward fold or the final fit selects its rows inside the partitions (by open
time) and trains :class:`lightgbm.dask.DaskLGBMClassifier` on them: LightGBM's data-parallel
learner, each worker binning and building histograms over its own rows.
"""

from __future__ import annotations

import contextlib
import logging
import math
import operator
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

from model_server.training.dataset import Dataset
from model_server.training.labels import make_labels
from xylen.data.schema import interval_ms
from xylen.data.store import CandleStore, validate_series
from xylen.errors import DataError, UsageError
from xylen.features import compute_feature_matrix, feature_specs, max_warmup
from xylen.features.spec import (
    ADX_PERIOD,
    EMA_PERIODS,
    HIGHER_TIMEFRAMES,
    HTF_ATR_PERIOD,
    HTF_EMA_PERIOD,
    HTF_RSI_PERIOD,
    RSI_PERIODS,
    htf_factor,
)

logger = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]
MARKET: Final = "um"
CONNECT_TIMEOUT_S: Final = 10.0
DAY_MS: Final = 86_400_000
_META_COLUMNS: Final = ("open_time", "bar", "y", "forward_return")


@dataclass(frozen=True)
class DaskTarget:
    """Where to train: a scheduler address, or ``local`` workers started in this process."""

    scheduler: str | None  # e.g. tcp://10.0.0.5:8786; None: a LocalCluster
    local_workers: int = 0

    def describe(self) -> str:
        return self.scheduler or f"local:{self.local_workers}"


def parse_dask_target(value: str) -> DaskTarget:
    """``local:N`` or a scheduler address (``tcp://host:8786``, ``tls://...``, ``host:8786``)."""
    text = value.strip()
    if text.startswith("local:"):
        count = text.removeprefix("local:")
        if not count.isdigit() or not 1 <= int(count) <= 64:
            raise UsageError(f"--dask: expected local:N with 1 <= N <= 64, got {value!r}")
        return DaskTarget(None, int(count))
    scheme, sep, rest = text.rpartition("://")
    if sep and scheme not in ("tcp", "tls", "inproc", "ucx", "ws", "wss"):
        raise UsageError(f"--dask: unknown protocol {scheme!r} in {value!r}")
    host, colon, port = (rest if sep else text).rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(
            f"--dask: expected local:N or a scheduler address like tcp://host:8786, got {value!r}"
        )
    return DaskTarget(text if sep else f"tcp://{text}")


@dataclass
class DaskSession:
    client: Any  # distributed.Client
    target: DaskTarget

    def workers(self) -> list[str]:
        """Worker addresses, sorted (the round-robin order of the months)."""
        return sorted(self.client.scheduler_info()["workers"])


@contextlib.contextmanager
def dask_session(
    target: DaskTarget, timeout_s: float = CONNECT_TIMEOUT_S, threads_per_worker: int = 1
) -> Iterator[DaskSession]:
    """A connected client (and its LocalCluster for ``local:N``), closed on exit.

    An unreachable scheduler raises :class:`UsageError` after ``timeout_s`` (never hangs).  On a
    cluster LightGBM uses each worker's thread count (``dask worker --nthreads``); ``local:N``
    workers get ``threads_per_worker``.
    """
    try:
        import dask.dataframe  # noqa: F401  (the fits read Dask DataFrames)
        import distributed
    except ImportError as exc:
        raise UsageError(f"--dask needs Dask: pip install 'xylen[cluster]' ({exc})") from exc

    Client: Any = distributed.Client
    LocalCluster: Any = distributed.LocalCluster
    cluster: Any = None
    try:
        if target.scheduler is None:
            cluster = LocalCluster(
                n_workers=target.local_workers,
                threads_per_worker=threads_per_worker,
                processes=True,
                host="127.0.0.1",
                scheduler_kwargs={"dashboard": False},
                worker_dashboard_address=None,
            )
            client: Any = Client(cluster, timeout=timeout_s)
        else:
            try:
                client = Client(target.scheduler, timeout=timeout_s)
            except (OSError, TimeoutError, ValueError) as exc:
                raise UsageError(
                    f"--dask: cannot reach the Dask scheduler at {target.scheduler} "
                    f"within {timeout_s:g} s: {exc}"
                ) from exc
        try:
            if not client.scheduler_info()["workers"]:
                client.wait_for_workers(1, timeout=timeout_s)
        except (OSError, TimeoutError) as exc:
            client.close()
            raise UsageError(f"--dask: the scheduler at {target.describe()} has no worker") from exc
        try:
            yield DaskSession(client, target)
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


@dataclass(frozen=True)
class MonthTask:
    """What one worker reads and keeps: the rows of ``month`` (with their warm-up and label reach)."""

    root: str
    symbol: str
    interval: str
    month: str
    read_start: int  # ms: a day boundary context_bars(interval) before the month (or the span's start)
    read_end: int  # ms: horizon_bars after the month (or the span's end)
    keep_start: int  # ms: the month's start (or the span's start)
    keep_end: int  # ms: the month's end (or the span's end)
    warm_from: int  # ms: open time of the first row after the whole series' warm-up
    first_open_time: int  # ms: the series' first candle (bar 0)
    horizon_bars: int
    cost: float


@dataclass(frozen=True)
class MonthPart:
    frame: pd.DataFrame  # features, then open_time, bar, y, forward_return of the kept rows
    n_candles: int  # candles of the month inside the span
    n_hold: int  # rows of the month dropped for a hold-band label
    last_open_time: int  # newest candle of the month (-1: none)


def month_part(task: MonthTask) -> MonthPart:
    """Features and labels of one month's rows, computed with the previous month as warm-up."""
    store = CandleStore(task.root)
    path = store.month_path(MARKET, task.symbol, task.interval, task.month)
    if not path.is_file():
        # A worker that sees another folder (or none) would silently train on fewer months.
        raise DataError(
            f"this worker cannot read {path}: the candle store must be readable by every Dask worker "
            "at the same path (a shared folder or a copy)"
        )
    candles = store.read(MARKET, task.symbol, task.interval, task.read_start, task.read_end)
    names = [s.name for s in feature_specs(task.interval)]
    ot = candles["open_time"].to_numpy(np.int64)
    inside = (ot >= task.keep_start) & (ot < task.keep_end)
    if not inside.any():
        empty = pd.DataFrame({c: pd.Series(dtype="float32") for c in names})
        for col, dtype in zip(_META_COLUMNS, ("int64", "int64", "float32", "float64"), strict=True):
            empty[col] = pd.Series(dtype=dtype)
        return MonthPart(empty, 0, 0, -1)
    step = interval_ms(task.interval)
    matrix = compute_feature_matrix(candles, task.interval)
    labels, fwd = make_labels(candles["close"].to_numpy(np.float64), task.horizon_bars, task.cost, ot, step)
    keep = inside & (ot >= task.warm_from) & np.isfinite(matrix).all(axis=1)
    usable = keep & ~np.isnan(fwd)
    keep &= ~np.isnan(labels)
    idx = np.flatnonzero(keep)
    frame = pd.DataFrame(np.ascontiguousarray(matrix[idx]), columns=names, copy=False)
    frame["open_time"] = ot[idx]
    frame["bar"] = (ot[idx] - task.first_open_time) // step
    frame["y"] = labels[idx].astype(np.float32)
    frame["forward_return"] = fwd[idx]
    n_hold = int(usable.sum() - keep.sum())
    return MonthPart(frame, int(inside.sum()), n_hold, int(ot[inside][-1]))


def context_bars(interval: str) -> int:
    """Base bars read before a month so that its features equal those of one pass from the start.

    The recursive indicators (TA-Lib EMA, Wilder's RSI/ATR/ADX smoothing, also on the higher
    timeframes) forget their seed as ``(1 - alpha) ** n``; ``21 / alpha`` bars leave below 1e-9 of
    it, far under float32 round-off.  Plus the longest warm-up.  5m: about 13 days.
    """
    slowest_base = max((max(EMA_PERIODS) + 1) / 2, max(RSI_PERIODS), 2 * ADX_PERIOD)
    slowest_htf = max((HTF_EMA_PERIOD + 1) / 2, HTF_RSI_PERIOD, HTF_ATR_PERIOD)
    bars = 21 * slowest_base
    for tf in HIGHER_TIMEFRAMES:
        bars = max(bars, 21 * slowest_htf * htf_factor(interval, tf))
    return math.ceil(bars) + max_warmup(interval)


def _month_bounds(month: str) -> tuple[int, int]:
    start = np.datetime64(month, "M")
    lo = int(start.astype("datetime64[ms]").astype("int64"))
    return lo, int((start + 1).astype("datetime64[ms]").astype("int64"))


def month_tasks(
    root: Path,
    symbol: str,
    interval: str,
    horizon_bars: int,
    cost: float,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> list[MonthTask]:
    """One task per stored month inside ``[start_ms, end_ms)``; the client reads only the first
    month's open times (bar 0 and the end of the warm-up)."""
    validate_series(MARKET, symbol, interval)
    store = CandleStore(root)
    months = store.months(MARKET, symbol, interval)
    lo_all = -(2**62) if start_ms is None else start_ms
    hi_all = 2**62 if end_ms is None else end_ms
    months = [m for m in months if _month_bounds(m)[1] > lo_all and _month_bounds(m)[0] < hi_all]
    warm = max_warmup(interval)
    first_ot: int | None = None
    warm_from: int | None = None
    seen: list[int] = []
    for month in months:  # usually the first month alone
        lo, hi = _month_bounds(month)
        ot = store.read(MARKET, symbol, interval, max(lo, lo_all), min(hi, hi_all))["open_time"]
        seen.extend(ot.to_numpy(np.int64).tolist())
        if first_ot is None and seen:
            first_ot = seen[0]
        if len(seen) > warm:
            warm_from = seen[warm]
            break
    if first_ot is None or warm_from is None:
        raise DataError(
            f"no candles for {symbol} {interval} in store {MARKET}/{symbol}/{interval} beyond the warm-up"
        )
    tasks = []
    step = interval_ms(interval)
    for month in months:
        lo, hi = _month_bounds(month)
        read_from = (lo - context_bars(interval) * step) // DAY_MS * DAY_MS  # whole HTF buckets
        tasks.append(
            MonthTask(
                str(root),
                symbol,
                interval,
                month,
                read_start=max(read_from, lo_all),
                read_end=min(hi + horizon_bars * step, hi_all),
                keep_start=max(lo, lo_all),
                keep_end=min(hi, hi_all),
                warm_from=warm_from,
                first_open_time=first_ot,
                horizon_bars=horizon_bars,
                cost=cost,
            )
        )
    return tasks


def _ranges(open_time: I64, rows: I64) -> list[tuple[int, int]]:
    """Runs of consecutive dataset rows as inclusive open-time ranges."""
    if len(rows) == 0:
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks - 1, [len(rows) - 1]])
    return [(int(open_time[rows[a]]), int(open_time[rows[b]])) for a, b in zip(starts, ends, strict=True)]


def select_rows(frame: pd.DataFrame, ranges: list[tuple[int, int]]) -> pd.DataFrame:
    """The rows of a partition whose open time falls in one of the inclusive ``ranges``."""
    ot = frame["open_time"].to_numpy(np.int64)
    mask = np.zeros(len(frame), dtype=bool)
    for lo, hi in ranges:
        mask |= (ot >= lo) & (ot <= hi)
    return frame.loc[mask]


def _sklearn_params(params: Mapping[str, Any], rounds: int) -> dict[str, Any]:
    """LightGBM parameters for the Dask estimator (its ``n_estimators`` is the number of rounds)."""
    out = dict(params)
    out.pop("num_boost_round", None)
    for alias in ("num_threads", "num_thread", "nthread", "nthreads", "n_jobs"):
        out.pop(alias, None)  # each worker uses its own thread count (``dask worker --nthreads``)
    out["n_estimators"] = rounds
    return out


@dataclass
class DaskData:
    """The client's view of the cluster-held training set, and the booster-fitting function."""

    session: DaskSession
    parts: list[Any]  # futures of the month frames, on their workers
    dataset: Dataset
    months: list[str]
    placement: dict[str, list[str]]  # worker -> months

    @property
    def info(self) -> dict[str, Any]:
        """``metadata.json`` ``training`` section."""
        return {
            "training": {
                "dask": {
                    "workers": len(self.session.workers()),
                    "scheduler": self.session.target.describe(),
                    "partitions": len(self.parts),
                    "months": [self.months[0], self.months[-1]] if self.months else [],
                }
            }
        }

    def fit(self, ds: Dataset, rows: I64, params: Mapping[str, Any], num_boost_round: int) -> lgb.Booster:
        """Fit on dataset ``rows`` where the partitions live (a :data:`BoosterFit`)."""
        import dask.dataframe as dd
        from lightgbm.dask import DaskLGBMClassifier

        client = self.session.client
        ranges = _ranges(ds.open_time, rows)
        chosen = [client.submit(select_rows, part, ranges, pure=False) for part in self.parts]
        sizes = client.gather([client.submit(len, part) for part in chosen])
        chosen = [part for part, n in zip(chosen, sizes, strict=True) if n]
        if not chosen:
            raise ValueError("no training rows selected on the cluster")
        frame = dd.from_delayed(chosen, meta=self._meta(), verify_meta=False)
        names = list(ds.feature_names)
        model = DaskLGBMClassifier(client=client, **_sklearn_params(params, num_boost_round))
        model.fit(frame[names], frame["y"])
        booster: lgb.Booster = model.to_local().booster_
        logger.info(
            "dask fit: %d rows on %d partition(s), %d trees", sum(sizes), len(chosen), num_boost_round
        )
        return booster

    def _meta(self) -> pd.DataFrame:
        names = list(self.dataset.feature_names)
        meta = pd.DataFrame({c: pd.Series(dtype="float32") for c in names})
        for col, dtype in zip(_META_COLUMNS, ("int64", "int64", "float32", "float64"), strict=True):
            meta[col] = pd.Series(dtype=dtype)
        return meta


def load_dask_dataset(
    session: DaskSession,
    root: Path,
    symbol: str,
    interval: str,
    horizon_bars: int,
    cost: float,
    start_ms: int | None = None,
    end_ms: int | None = None,
    max_rows: int | None = None,
) -> DaskData:
    """Read and featurise the months on the workers (round-robin) and gather the client's Dataset.

    ``max_rows`` keeps the newest labelled rows (bars counted from the first kept row's warm-up).
    Every worker must read the store at ``root`` (the same path, or a shared folder).
    """
    client = session.client
    tasks = month_tasks(root, symbol, interval, horizon_bars, cost, start_ms, end_ms)
    workers = session.workers()
    placement: dict[str, list[str]] = {w: [] for w in workers}
    results = []
    for i, task in enumerate(tasks):
        worker = workers[i % len(workers)]
        placement[worker].append(task.month)
        results.append(client.submit(month_part, task, workers=[worker], pure=False))
    parts = [
        client.submit(operator.attrgetter("frame"), r, workers=[workers[i % len(workers)]], pure=False)
        for i, r in enumerate(results)
    ]
    stats = client.gather([client.submit(_stats, r, pure=False) for r in results])
    del results
    frames = client.gather(parts)
    names = tuple(s.name for s in feature_specs(interval))
    frame = pd.concat(frames, ignore_index=True)
    if frame.empty:
        raise DataError(f"no labelled rows for {symbol} {interval} in the candle store")
    ot = frame["open_time"].to_numpy(np.int64)
    if np.any(np.diff(ot) <= 0):
        raise DataError("candle open times are not strictly increasing across months")
    n_candles = sum(s[0] for s in stats)
    n_hold = sum(s[1] for s in stats)
    last_ot = max(s[2] for s in stats)
    step = interval_ms(interval)
    first_ot = tasks[0].first_open_time
    bar = frame["bar"].to_numpy(np.int64)
    offset = 0
    if max_rows is not None and len(frame) > max_rows:
        frame = frame.iloc[-max_rows:].reset_index(drop=True)
        bar = frame["bar"].to_numpy(np.int64)
        offset = max(0, int(bar[0]) - max_warmup(interval))
        bar = bar - offset
        ot = frame["open_time"].to_numpy(np.int64)
    ds = Dataset(
        X=np.ascontiguousarray(frame[list(names)].to_numpy(np.float32)),
        y=frame["y"].to_numpy(np.float32),
        bar=bar,
        open_time=ot,
        forward_return=frame["forward_return"].to_numpy(np.float64),
        feature_names=names,
        interval=interval,
        horizon_bars=horizon_bars,
        cost=cost,
        n_candles=n_candles,
        n_hold=n_hold,
        last_bar=int((last_ot - first_ot) // step) - offset,
    )
    del frames, frame
    logger.info(
        "dask dataset: %d months on %d worker(s) -> %d labelled rows (%d in the hold band dropped)",
        len(tasks),
        len(workers),
        len(ds),
        n_hold,
    )
    return DaskData(session, parts, ds, [t.month for t in tasks], placement)


def _stats(part: MonthPart) -> tuple[int, int, int]:
    return part.n_candles, part.n_hold, part.last_open_time


def worker_peak_rss_mb(session: DaskSession) -> dict[str, float]:
    """Each worker process's peak resident memory (MiB, :func:`xylen.peak_memory.peak_rss_kib`)."""
    return {w: round(v / 1024, 1) for w, v in session.client.run(_maxrss_kb).items()}


def _maxrss_kb() -> int:
    from xylen.peak_memory import peak_rss_kib

    return peak_rss_kib()
