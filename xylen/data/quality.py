"""Quality checks on candle frames: gaps, short candles and OHLC sanity.

The checks only report; they never fill, drop or repair anything.  A
:class:`QualityReport` prints one line per issue, e.g.::

    gap: 1 missing candle(s) from 2023-03-24 13:00 to 2023-03-24 13:00 UTC
    short: candle 2023-03-24 12:00 closes at 2023-03-24 12:39:41.646 (expected 12:59:59.999)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from xylen.data.schema import interval_ms

logger = logging.getLogger(__name__)

IssueKind = Literal["gap", "irregular", "short", "long", "ohlc"]
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)


def format_ms(ms: int) -> str:
    """An epoch-millisecond time as ``YYYY-MM-DD HH:MM`` (with seconds/ms only when non-zero), UTC."""
    ts = _EPOCH + timedelta(milliseconds=int(ms))
    if ts.microsecond:
        return ts.strftime("%Y-%m-%d %H:%M:%S.") + f"{ts.microsecond // 1000:03d}"
    if ts.second:
        return ts.strftime("%Y-%m-%d %H:%M:%S")
    return ts.strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class QualityIssue:
    """One problem found in a candle series.

    ``start``/``end`` are open times in ms: for a gap the first and last *missing*
    open time, for other kinds the open time of the candle concerned (start == end).
    ``count`` is the number of missing candles for a gap, else 1.
    """

    kind: IssueKind
    start: int
    end: int
    count: int
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass(frozen=True)
class QualityReport:
    """The result of :func:`check_candles`; ``ok`` when no issue was found."""

    interval: str
    rows: int
    first_open: int | None
    last_open: int | None
    issues: tuple[QualityIssue, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def gaps(self) -> tuple[QualityIssue, ...]:
        return tuple(i for i in self.issues if i.kind == "gap")

    @property
    def short_candles(self) -> tuple[QualityIssue, ...]:
        return tuple(i for i in self.issues if i.kind == "short")

    @property
    def ohlc(self) -> tuple[QualityIssue, ...]:
        return tuple(i for i in self.issues if i.kind == "ohlc")

    @property
    def missing_candles(self) -> int:
        return sum(i.count for i in self.gaps)

    def lines(self) -> list[str]:
        """One printable line per issue."""
        return [str(issue) for issue in self.issues]

    def __str__(self) -> str:
        if self.rows == 0 or self.first_open is None or self.last_open is None:
            head = f"{self.interval}: no candles"
        else:
            head = (
                f"{self.interval}: {self.rows} candles {format_ms(self.first_open)} .. "
                f"{format_ms(self.last_open)} UTC, {len(self.issues)} issue(s)"
            )
        return "\n".join([head, *self.lines()])


def _gap_issues(open_time: npt.NDArray[np.int64], step: int) -> list[QualityIssue]:
    issues: list[QualityIssue] = []
    if len(open_time) < 2:
        return issues
    diffs = np.diff(open_time)
    for idx in np.flatnonzero(diffs != step):
        prev, nxt = int(open_time[idx]), int(open_time[idx + 1])
        diff = nxt - prev
        if diff > step and diff % step == 0:
            count = diff // step - 1
            first, last = prev + step, nxt - step
            issues.append(
                QualityIssue(
                    "gap",
                    first,
                    last,
                    count,
                    f"{count} missing candle(s) from {format_ms(first)} to {format_ms(last)} UTC",
                )
            )
        else:
            issues.append(
                QualityIssue(
                    "irregular",
                    nxt,
                    nxt,
                    1,
                    f"candle {format_ms(nxt)} opens {diff} ms after {format_ms(prev)} "
                    f"(not a multiple of {step} ms)",
                )
            )
    return issues


def _close_issues(
    open_time: npt.NDArray[np.int64], close_time: npt.NDArray[np.int64], step: int
) -> list[QualityIssue]:
    issues: list[QualityIssue] = []
    expected = open_time + step - 1
    for idx in np.flatnonzero(close_time != expected):
        start, actual, want = int(open_time[idx]), int(close_time[idx]), int(expected[idx])
        kind: IssueKind = "short" if actual < want else "long"
        issues.append(
            QualityIssue(
                kind,
                start,
                start,
                1,
                f"candle {format_ms(start)} closes at {format_ms(actual)} (expected {format_ms(want)}) UTC",
            )
        )
    return issues


def _ohlc_issues(frame: pd.DataFrame) -> list[QualityIssue]:
    o, h, lo, c, v = (
        frame[col].to_numpy(dtype="float64") for col in ("open", "high", "low", "close", "volume")
    )
    checks: list[tuple[str, npt.NDArray[np.bool_]]] = [
        ("missing price", np.isnan(o) | np.isnan(h) | np.isnan(lo) | np.isnan(c)),
        ("price <= 0", (o <= 0) | (h <= 0) | (lo <= 0) | (c <= 0)),
        ("high < max(open, close)", h < np.maximum(o, c)),
        ("low > min(open, close)", lo > np.minimum(o, c)),
        ("high < low", h < lo),
        ("negative volume", v < 0),
    ]
    open_time = frame["open_time"].to_numpy(dtype="int64")
    bad_any = np.zeros(len(frame), dtype=bool)
    reasons: dict[int, list[str]] = {}
    for label, mask in checks:
        bad_any |= mask
        for idx in np.flatnonzero(mask):
            reasons.setdefault(int(idx), []).append(label)
    issues: list[QualityIssue] = []
    for idx in np.flatnonzero(bad_any):
        start = int(open_time[idx])
        values = f"o={o[idx]} h={h[idx]} l={lo[idx]} c={c[idx]} v={v[idx]}"
        issues.append(
            QualityIssue(
                "ohlc",
                start,
                start,
                1,
                f"candle {format_ms(start)}: {', '.join(reasons[int(idx)])} ({values})",
            )
        )
    return issues


def check_candles(frame: pd.DataFrame, interval: str) -> QualityReport:
    """Check a normalized candle frame for gaps, wrong close times and OHLC nonsense.

    * ``gap``: open times missing between two candles (the first/last missing open
      time and how many candles are missing).
    * ``irregular``: two consecutive open times not a whole number of intervals apart.
    * ``short`` / ``long``: ``close_time != open_time + interval - 1`` (a candle cut
      short by an exchange halt, or one that claims to be longer).
    * ``ohlc``: missing or non-positive prices, ``high < max(open, close)``,
      ``low > min(open, close)``, ``high < low``, negative volume.

    Issues are ordered by open time.  Nothing in ``frame`` is changed.
    """
    step = interval_ms(interval)
    if frame.empty:
        return QualityReport(interval, 0, None, None, ())
    open_time = frame["open_time"].to_numpy(dtype="int64")
    close_time = frame["close_time"].to_numpy(dtype="int64")
    issues = _gap_issues(open_time, step) + _close_issues(open_time, close_time, step) + _ohlc_issues(frame)
    issues.sort(key=lambda i: (i.start, i.kind))
    return QualityReport(interval, len(frame), int(open_time[0]), int(open_time[-1]), tuple(issues))


def log_report(report: QualityReport, label: str) -> None:
    """Log every issue of ``report`` as a warning, prefixed with ``label`` (e.g. the series)."""
    for issue in report.issues:
        logger.warning("%s: %s", label, issue)
