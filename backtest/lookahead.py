"""Look-ahead analysis: does any feature or decision change when the future is removed?

For a config and a span, the whole pipeline is computed once on the full data, then again on the
data truncated at several cut points (the candles after the cut do not exist at all: not in the
features, not in the votes, not in the venue).  Whatever was known at a candle must not change
when later candles disappear:

* **features** -- the one feature engine (:func:`xylen.features.compute_features`, the
  higher-timeframe features included) plus any extra feature functions under test
  (``extra``: name -> function of the candle frame), recomputed on the truncated frame and
  compared row by row with the full computation on every span row up to the cut;
* **decisions** -- the backtest (:mod:`backtest.engine`): the models' votes recomputed from the
  truncated features, the ensemble, risk, entries and settlement; every decision column but the
  outcome label (which needs the future by definition), compared on every candle up to the cut;
* **account** -- the equity curve's columns (equity, position, fees, funding) at those candles:
  the account the risk manager sized the decision with.

Cut points: half of them at the span's trade decisions of the full run (where a peek matters
most), the rest spread evenly over the span; the last candle of the span is always one.  A finding
names the feature or column, the first candle time it differs at and the largest absolute
difference (a value against a NaN counts as a difference of ``inf``).

Cost: every cut re-runs the backtest from the span's start to the cut, so the decision check
costs about ``cuts / 2`` full runs (the backtest runs about 2,000-2,800 candles/s).  The feature
check alone (``decisions=False``) costs a feature computation per cut (milliseconds).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from backtest.data import MarketHistory, history_of
from backtest.engine import RunOptions, run_backtest
from backtest.result import BacktestResult
from backtest.votes import ModelVotes, VoteBook
from xylen.config.schema import XylenConfig
from xylen.errors import UsageError
from xylen.features import compute_features

FeatureFn = Callable[[pd.DataFrame], "npt.ArrayLike | pd.Series[float]"]
"""An extra feature under test: the candle frame (open_time, OHLCV) in, one value per row out."""

VoteSource = Callable[[MarketHistory], list[ModelVotes]]
"""The models' votes for every row of a history, computed from that history's features only."""

Progress = Callable[[int, int], None]

SKIP_DECISION_COLUMNS = ("outcome",)  # the label at the horizon: the future by definition
EQUITY_CHECKED = ("equity_usd", "position_qty", "position_notional_usd", "fees_usd", "funding_usd")
DEFAULT_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Finding:
    """One feature or decision column that changed when the future was removed."""

    name: str
    kind: str  # "feature", "decision" or "account"
    first_ms: int  # close time of the first candle where it differs (a decision's ts)
    max_abs_diff: float  # inf when a value met a NaN or the values are not numbers
    rows: int  # differing (cut, row) pairs
    cuts: int  # cut points at which it differs
    example: tuple[str, str]  # (full data, truncated) at the first difference
    cut_rows_only: bool = False  # it differs only at the cut candles: it reads exactly one candle ahead

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "first_differs": _iso(self.first_ms),
            "first_differs_ms": self.first_ms,
            "max_abs_diff": None if math.isinf(self.max_abs_diff) else self.max_abs_diff,
            "max_abs_diff_text": repr(self.max_abs_diff),
            "rows": self.rows,
            "cuts": self.cuts,
            "full_value": self.example[0],
            "truncated_value": self.example[1],
            "cut_rows_only": self.cut_rows_only,
        }


@dataclass
class LookaheadReport:
    """What :func:`analyse` found."""

    symbol: str
    interval: str
    start_ms: int
    end_ms: int
    cuts_ms: list[int]  # close times of the cut candles (the last candle kept)
    features_checked: list[str]
    decision_columns_checked: list[str]
    findings: list[Finding] = field(default_factory=list)
    decisions_checked: int = 0  # (cut, decision) pairs compared
    tolerance: float = DEFAULT_TOLERANCE

    @property
    def clean(self) -> bool:
        return not self.findings

    def peeking(self, kind: str) -> list[str]:
        """Names of the findings of ``kind`` ("feature", "decision" or "account")."""
        return [f.name for f in self.findings if f.kind == kind]

    def as_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "interval": self.interval,
            "from": _iso(self.start_ms),
            "to": _iso(self.end_ms),
            "clean": self.clean,
            "cuts": [_iso(c) for c in self.cuts_ms],
            "tolerance": self.tolerance,
            "features_checked": len(self.features_checked),
            "decision_columns_checked": self.decision_columns_checked,
            "decisions_compared": self.decisions_checked,
            "peeking_features": [f.as_dict() for f in self.findings if f.kind == "feature"],
            "peeking_decisions": [f.as_dict() for f in self.findings if f.kind == "decision"],
            "peeking_account": [f.as_dict() for f in self.findings if f.kind == "account"],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n"


def _iso(ms: int) -> str:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M:%S")


# ------------------------------------------------------------------------------------ features


def analysis_features(
    candles: pd.DataFrame, interval: str, extra: Mapping[str, FeatureFn] | None = None
) -> pd.DataFrame:
    """The feature engine's frame for ``candles`` plus the ``extra`` features under test."""
    frame = compute_features(candles, interval)
    for name, fn in (extra or {}).items():
        if name in frame.columns:
            raise UsageError(f"extra feature {name!r}: the feature engine already has a feature of that name")
        values = np.asarray(fn(candles.reset_index(drop=True)), dtype=np.float64)
        if values.shape != (len(candles),):
            raise UsageError(f"extra feature {name!r}: {values.shape} values for {len(candles)} candles")
        frame[name] = values
    return frame


def with_extra_features(history: MarketHistory, extra: Mapping[str, FeatureFn] | None) -> MarketHistory:
    """``history`` whose features also hold the ``extra`` ones (computed on its own candles)."""
    if not extra:
        return history
    return dataclasses.replace(history, features=analysis_features(history.candles, history.interval, extra))


@dataclass
class _Diffs:
    """Differences of one named series over all cuts."""

    first_ms: int = 2**62
    max_abs: float = 0.0
    rows: int = 0
    cuts: int = 0
    example: tuple[str, str] = ("", "")
    cut_rows_only: bool = True

    def add(
        self, times: npt.NDArray[np.int64], full: npt.NDArray[Any], part: npt.NDArray[Any], tol: float
    ) -> None:
        differ, size = _differ(full, part, tol)
        if not differ.any():
            return
        idx = np.flatnonzero(differ)
        self.rows += len(idx)
        self.cuts += 1
        self.max_abs = max(self.max_abs, size)
        self.cut_rows_only = self.cut_rows_only and idx.tolist() == [len(differ) - 1]
        j = int(idx[0])
        if int(times[j]) < self.first_ms:
            self.first_ms = int(times[j])
            self.example = (repr(_plain(full[j])), repr(_plain(part[j])))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _differ(
    full: npt.NDArray[Any], part: npt.NDArray[Any], tol: float
) -> tuple[npt.NDArray[np.bool_], float]:
    """Which rows differ (NaN equals NaN), and the largest absolute difference among them."""
    if full.dtype.kind in "fiub" and part.dtype.kind in "fiub":
        a = full.astype(np.float64)
        b = part.astype(np.float64)
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        with np.errstate(invalid="ignore"):
            gap = np.abs(a - b)
        differ = (nan_a != nan_b) | (~nan_a & ~nan_b & (gap > tol))
        if not differ.any():
            return differ, 0.0
        size = math.inf if (nan_a != nan_b)[differ].any() else float(np.nanmax(gap[differ]))
        return differ, size
    differ = np.array(
        [not _same(x, y) for x, y in zip(full.tolist(), part.tolist(), strict=True)], dtype=bool
    )
    return differ, math.inf if differ.any() else 0.0


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    return bool(x == y)


def check_features(
    full: MarketHistory,
    cut_histories: Sequence[tuple[int, MarketHistory]],
    extra: Mapping[str, FeatureFn] | None,
    tolerance: float,
    progress: Progress | None = None,
) -> tuple[list[str], list[Finding]]:
    """Every feature of the truncated histories against the full one, on the span's rows up to each cut."""
    whole = analysis_features(full.candles, full.interval, extra)
    names = [c for c in whole.columns if c != "open_time"]
    close_ms = full.open_time + full.step_ms - 1
    diffs = {n: _Diffs() for n in names}
    for k, (cut, part) in enumerate(cut_histories):
        if part.first != full.first or len(part.candles) != cut + 1:
            raise RuntimeError(f"cut at row {cut}: the truncated history is not a prefix of the full one")
        frame = analysis_features(part.candles, part.interval, extra)
        rows = slice(full.first, cut + 1)
        for n in names:
            diffs[n].add(close_ms[rows], whole[n].to_numpy()[rows], frame[n].to_numpy()[rows], tolerance)
        if progress is not None:
            progress(k + 1, len(cut_histories))
    return names, _findings(diffs, "feature")


def _findings(diffs: Mapping[str, _Diffs], kind: str) -> list[Finding]:
    found = [
        Finding(n, kind, d.first_ms, d.max_abs, d.rows, d.cuts, d.example, d.cut_rows_only)
        for n, d in diffs.items()
        if d.rows
    ]
    return sorted(found, key=lambda f: (f.first_ms, f.name))


# ------------------------------------------------------------------------------------ decisions


def truncated(
    candles: pd.DataFrame,
    full: MarketHistory,
    cut: int,
    extra: Mapping[str, FeatureFn] | None = None,
    warmup_candles: int = 1000,
) -> MarketHistory:
    """The history of the same span cut after row ``cut`` of ``full`` (later candles removed)."""
    last_open = int(full.open_time[cut])
    kept = candles[candles["open_time"].to_numpy(np.int64) <= last_open].reset_index(drop=True)
    part = history_of(
        kept,
        full.symbol,
        int(full.open_time[full.first]),
        last_open + full.step_ms,
        interval=full.interval,
        warmup_candles=warmup_candles,
        funding=full.funding,
    )
    return with_extra_features(part, extra)


def cut_points(full: MarketHistory, n: int, actions: Sequence[str] | None = None) -> list[int]:
    """``n`` cut rows of ``full``'s span: half at trade decisions (``actions`` of the full run, one per
    span row), the rest evenly spread; the span's last row always included."""
    first, last = full.first + 1, full.stop - 1  # a run needs two candles
    n = max(1, min(n, last - first + 1))
    chosen = {last}
    if actions is not None:
        trades = [full.first + k for k, a in enumerate(actions) if a != "HOLD" and k > 0]
        want = min(len(trades), n // 2)
        if want:
            picks = np.linspace(0, len(trades) - 1, want).round().astype(int)
            chosen.update(trades[int(p)] for p in picks)
    for row in np.linspace(first, last, n).round().astype(int):
        if len(chosen) >= n:
            break
        chosen.add(int(row))
    return sorted(chosen)


def _run(config: XylenConfig, history: MarketHistory, votes: VoteSource) -> BacktestResult:
    book = VoteBook(votes(history))
    return asyncio.run(run_backtest(config, history, votes=book, options=RunOptions()))


def check_decisions(
    config: XylenConfig,
    full: MarketHistory,
    full_result: BacktestResult,
    cut_histories: Sequence[tuple[int, MarketHistory]],
    votes: VoteSource,
    tolerance: float,
    progress: Progress | None = None,
) -> tuple[list[str], int, list[Finding]]:
    """The backtest on each truncated history against the full run, decision by decision."""
    whole = full_result.decisions
    columns = [c for c in whole.columns if c not in SKIP_DECISION_COLUMNS]
    diffs = {c: _Diffs() for c in columns}
    account = {c: _Diffs() for c in EQUITY_CHECKED}
    compared = 0
    for k, (cut, part) in enumerate(cut_histories):
        result = _run(config, part, votes)
        n = cut - full.first + 1
        dec = result.decisions
        times = whole["ts"].to_numpy(np.int64)[:n]
        if len(dec) != n:
            raise RuntimeError(f"truncated run made {len(dec)} decisions, expected {n}")
        for c in columns:
            part_col = dec[c].to_numpy() if c in dec.columns else np.full(n, np.nan)
            diffs[c].add(times, whole[c].to_numpy()[:n], part_col, tolerance)
        eq_full, eq_part = full_result.equity.iloc[:n], result.equity
        for c in EQUITY_CHECKED:
            account[c].add(times, eq_full[c].to_numpy(), eq_part[c].to_numpy()[:n], tolerance)
        compared += n
        if progress is not None:
            progress(k + 1, len(cut_histories))
    return [*columns, *EQUITY_CHECKED], compared, _findings(diffs, "decision") + _findings(account, "account")


# ------------------------------------------------------------------------------------ the analysis


def analyse(
    config: XylenConfig,
    candles: pd.DataFrame,
    symbol: str,
    start_ms: int,
    end_ms: int,
    votes: VoteSource,
    *,
    interval: str = "5m",
    funding: pd.DataFrame | None = None,
    cuts: int = 20,
    extra: Mapping[str, FeatureFn] | None = None,
    decisions: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    progress: Progress | None = None,
) -> LookaheadReport:
    """Features and decisions on the full data against the same on data cut at ``cuts`` points."""
    full = with_extra_features(
        history_of(candles, symbol, start_ms, end_ms, interval=interval, funding=funding), extra
    )
    full_result = _run(config, full, votes) if decisions else None
    actions = list(full_result.decisions["action"]) if full_result is not None else None
    rows = cut_points(full, cuts, actions)
    parts = [(c, truncated(candles, full, c, extra)) for c in rows]
    steps = len(parts) * (2 if full_result is not None else 1)

    def step(offset: int) -> Progress | None:
        if progress is None:
            return None
        report = progress
        return lambda done, _total: report(offset + done, steps)

    names, findings = check_features(full, parts, extra, tolerance, step(0))
    columns: list[str] = []
    compared = 0
    if full_result is not None:
        columns, compared, found = check_decisions(
            config, full, full_result, parts, votes, tolerance, step(len(parts))
        )
        findings += found
    return LookaheadReport(
        symbol=symbol,
        interval=interval,
        start_ms=int(full.open_time[full.first]),
        end_ms=int(full.open_time[full.stop - 1]) + full.step_ms,
        cuts_ms=[int(full.open_time[c]) + full.step_ms - 1 for c in rows],
        features_checked=names,
        decision_columns_checked=columns,
        findings=findings,
        decisions_checked=compared,
        tolerance=tolerance,
    )
