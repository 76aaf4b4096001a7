"""Download of kline archives from data.binance.vision (or a mirror) into the candle store.

The site publishes one zip per symbol, interval and month (``monthly``) or day
(``daily``), each with a ``<zip>.CHECKSUM`` file holding ``<sha256>  <zip name>``::

    <base>/data/futures/um/monthly/klines/<SYMBOL>/<interval>/<SYMBOL>-<interval>-<YYYY-MM>.zip
    <base>/data/futures/um/daily/klines/<SYMBOL>/<interval>/<SYMBOL>-<interval>-<YYYY-MM-DD>.zip

(spot under ``data/spot/...``, COIN-M under ``data/futures/cm/...``).  Whole months in
the requested range use monthly archives, partial months daily ones; a monthly archive
that is not published (404) falls back to its daily archives.  Days from today (UTC)
on are never requested: their archives cannot exist yet.

Every zip is verified against its CHECKSUM and parsed before it is kept in the
download cache or stored; a mismatch or a corrupted zip stores nothing from that file.
Connection errors, timeouts and 5xx answers are retried with exponential backoff and
jitter; a 404 means "not published" and is reported, not retried.  A zip already in
the cache whose checksum verifies is not fetched again.  After downloading, the
candles are quality-checked (issues logged as warnings, never filled) and written to
the store.  Files that failed are listed in the summary and make :func:`download`
raise :class:`IncompleteDownload` after everything else has been stored.
"""

from __future__ import annotations

import calendar
import hashlib
import http.client
import logging
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final, Literal

import pandas as pd
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_random
from tqdm import tqdm

from xylen.data.parse import read_kline_zip
from xylen.data.quality import QualityReport, check_candles, log_report
from xylen.data.schema import empty_candles, normalize_candles
from xylen.data.store import CandleStore, validate_series
from xylen.errors import DataError, DownloadError, UsageError, XylenError
from xylen.fileio import atomic_write_bytes

logger = logging.getLogger(__name__)

DEFAULT_MIRROR: Final[str] = "https://data.binance.vision"
MARKET_PATHS: Final[dict[str, str]] = {"um": "data/futures/um", "cm": "data/futures/cm", "spot": "data/spot"}
_CHECKSUM_RE: Final = re.compile(r"^([0-9a-fA-F]{64})\s+\*?(\S+)\s*$")
_BOUND_RE: Final = re.compile(r"^([0-9]{4})-([0-9]{2})(?:-([0-9]{2}))?$")


class IncompleteDownload(DownloadError):
    """Some archives could not be downloaded or verified; the rest was stored.

    ``summary`` describes what was fetched, stored, missing and failed.
    """

    def __init__(self, message: str, summary: DownloadSummary) -> None:
        super().__init__(message)
        self.summary = summary


class _NotPublished(Exception):
    """The archive does not exist on the mirror (HTTP 404 / no such file)."""


class _Transient(Exception):
    """A failure worth retrying: connection error, timeout, HTTP 5xx or 429."""


@dataclass(frozen=True)
class Archive:
    """One kline archive on the site; ``period`` is ``YYYY-MM`` (monthly) or ``YYYY-MM-DD`` (daily)."""

    market: str
    symbol: str
    interval: str
    period: str

    @property
    def kind(self) -> Literal["monthly", "daily"]:
        return "monthly" if len(self.period) == 7 else "daily"

    @property
    def name(self) -> str:
        return f"{self.symbol}-{self.interval}-{self.period}.zip"

    @property
    def path(self) -> str:
        """Path relative to the site root, e.g. ``data/futures/um/daily/klines/BTCUSDT/1m/<name>``."""
        return f"{MARKET_PATHS[self.market]}/{self.kind}/klines/{self.symbol}/{self.interval}/{self.name}"


@dataclass
class DownloadSummary:
    """What :func:`download` did.  ``frame`` holds every candle downloaded (stored or not)."""

    market: str
    symbol: str
    interval: str
    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    rows: int = 0
    rows_stored: int = 0
    report: QualityReport | None = None
    frame: pd.DataFrame = field(default_factory=empty_candles, repr=False)

    @property
    def quality_issues(self) -> int:
        return len(self.report.issues) if self.report is not None else 0

    def lines(self) -> list[str]:
        """A short human summary, one fact per line."""
        out = [
            f"{self.market} {self.symbol} {self.interval}: {len(self.fetched)} file(s) fetched, "
            f"{len(self.skipped)} already cached, {len(self.missing)} not published, "
            f"{len(self.failed)} failed",
            f"{self.rows} candle(s) downloaded, {self.rows_stored} new or changed in the store, "
            f"{self.quality_issues} quality issue(s)",
        ]
        if self.report is not None:
            out.extend(f"  {line}" for line in self.report.lines())
        out.extend(f"  not published: {name}" for name in self.missing)
        out.extend(f"  failed: {name}: {reason}" for name, reason in self.failed)
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


# -- planning ---------------------------------------------------------------------------------------
def parse_bound(text: str, is_end: bool) -> date:
    """``YYYY-MM`` or ``YYYY-MM-DD`` as a day: a month's first day, or its last day when ``is_end``."""
    match = _BOUND_RE.match(text.strip())
    if match is None:
        raise UsageError(f"bad date {text!r} (expected YYYY-MM or YYYY-MM-DD)")
    year, month = int(match.group(1)), int(match.group(2))
    try:
        if match.group(3) is not None:
            return date(year, month, int(match.group(3)))
        day = calendar.monthrange(year, month)[1] if is_end else 1
        return date(year, month, day)
    except ValueError as exc:
        raise UsageError(f"bad date {text!r}: {exc}") from exc


def _utc_today() -> date:
    return datetime.now(timezone.utc).date()


def _days(first: date, last: date) -> Iterable[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def plan_archives(
    market: str, symbol: str, interval: str, start: str, end: str, today: date | None = None
) -> list[Archive]:
    """The archives covering ``start``..``end`` (inclusive): monthly for whole months, else daily.

    Days on or after ``today`` (UTC, default: now) are left out; they are not published yet.
    """
    validate_series(market, symbol, interval)
    first, last = parse_bound(start, is_end=False), parse_bound(end, is_end=True)
    if last < first:
        raise UsageError(f"--end {end} is before --start {start}")
    last = min(last, (today or _utc_today()) - timedelta(days=1))
    plan: list[Archive] = []
    year, month = first.year, first.month
    while date(year, month, 1) <= last:
        month_first = date(year, month, 1)
        month_last = date(year, month, calendar.monthrange(year, month)[1])
        lo, hi = max(first, month_first), min(last, month_last)
        if lo == month_first and hi == month_last:
            plan.append(Archive(market, symbol, interval, f"{year:04d}-{month:02d}"))
        else:
            plan.extend(Archive(market, symbol, interval, day.isoformat()) for day in _days(lo, hi))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return plan


def daily_fallback(archive: Archive, today: date | None = None) -> list[Archive]:
    """The daily archives of a monthly ``archive`` (days before ``today`` only)."""
    year, month = int(archive.period[:4]), int(archive.period[5:7])
    first = date(year, month, 1)
    last = min(
        date(year, month, calendar.monthrange(year, month)[1]), (today or _utc_today()) - timedelta(days=1)
    )
    return [
        Archive(archive.market, archive.symbol, archive.interval, d.isoformat()) for d in _days(first, last)
    ]


# -- fetching ---------------------------------------------------------------------------------------
Fetcher = Callable[[str], bytes]


def _http_fetcher(base_url: str, timeout: float) -> Fetcher:
    base = base_url.rstrip("/")

    def fetch(rel: str) -> bytes:
        url = f"{base}/{rel}"
        request = urllib.request.Request(url, headers={"User-Agent": "xylen-data/1"})
        try:
            # make_fetcher passes only http(s) URLs here
            with urllib.request.urlopen(request, timeout=timeout) as response:  # nosec B310 # http(s) only
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise _NotPublished(url) from exc
            if exc.code >= 500 or exc.code == 429:
                raise _Transient(f"HTTP {exc.code} for {url}") from exc
            raise DownloadError(f"HTTP {exc.code} for {url}") from exc
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            raise _Transient(f"{type(exc).__name__} for {url}: {exc}") from exc

    return fetch


def _dir_fetcher(root: Path) -> Fetcher:
    def fetch(rel: str) -> bytes:
        path = root / rel
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise _NotPublished(str(path)) from exc
        except OSError as exc:
            raise DownloadError(f"cannot read {path}: {exc}") from exc

    return fetch


def make_fetcher(mirror: str | os.PathLike[str], timeout: float = 30.0) -> Fetcher:
    """A function fetching a site-relative path from an http(s) base URL or a local mirror folder."""
    text = os.fspath(mirror)
    if text.startswith(("http://", "https://")):
        return _http_fetcher(text, timeout)
    root = Path(text).expanduser()
    if not root.is_dir():
        raise UsageError(f"mirror {text!r} is neither an http(s) URL nor a folder")
    return _dir_fetcher(root)


def _with_retries(fetch: Fetcher, retries: int, backoff: float) -> Fetcher:
    def fetch_retrying(rel: str) -> bytes:
        retrying = Retrying(
            stop=stop_after_attempt(max(1, retries)),
            wait=wait_exponential(multiplier=backoff, max=max(backoff, 30.0)) + wait_random(0, backoff),
            retry=retry_if_exception_type(_Transient),
            reraise=True,
            before_sleep=lambda state: logger.warning(
                "retrying %s (attempt %d): %s",
                rel,
                state.attempt_number,
                state.outcome.exception() if state.outcome else "",
            ),
        )
        try:
            return retrying(fetch, rel)
        except _Transient as exc:
            raise DownloadError(f"{rel}: failed after {retries} attempt(s): {exc}") from exc

    return fetch_retrying


def parse_checksum(text: bytes, zip_name: str) -> str:
    """The sha256 hex digest from a ``.CHECKSUM`` file (``<sha256>  <zip name>``); checks the name."""
    line = text.decode("utf-8", "replace").strip()
    match = _CHECKSUM_RE.match(line)
    if match is None:
        raise DataError(f"{zip_name}.CHECKSUM: malformed checksum file {line[:120]!r}")
    if match.group(2) != zip_name:
        raise DataError(f"{zip_name}.CHECKSUM: checksum is for {match.group(2)!r}")
    return match.group(1).lower()


@dataclass
class _Outcome:
    archive: Archive
    status: Literal["fetched", "cached", "missing", "failed"]
    frame: pd.DataFrame | None = None
    error: str = ""


def _from_cache(archive: Archive, cache: Path) -> pd.DataFrame | None:
    zip_path, sum_path = cache / archive.path, cache / f"{archive.path}.CHECKSUM"
    if not (zip_path.is_file() and sum_path.is_file()):
        return None
    try:
        expected = parse_checksum(sum_path.read_bytes(), archive.name)
        data = zip_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected:
            logger.info("%s: cached copy does not verify, fetching again", archive.name)
            return None
        return read_kline_zip(data, archive.name)
    except (DataError, OSError) as exc:
        logger.info("%s: cached copy unusable (%s), fetching again", archive.name, exc)
        return None


def fetch_archive(archive: Archive, fetch: Fetcher, cache: Path | None) -> _Outcome:
    """Get one archive (cache first), verify its checksum, parse it; never raises for data problems."""
    try:
        if cache is not None:
            cached = _from_cache(archive, cache)
            if cached is not None:
                return _Outcome(archive, "cached", cached)
        try:
            checksum_bytes = fetch(f"{archive.path}.CHECKSUM")
            expected = parse_checksum(checksum_bytes, archive.name)
            data = fetch(archive.path)
        except _NotPublished:
            return _Outcome(archive, "missing")
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise DataError(
                f"{archive.name}: checksum mismatch (expected {expected}, got {actual}); file refused"
            )
        frame = read_kline_zip(data, archive.name)
        if cache is not None:
            atomic_write_bytes(cache / archive.path, data)
            atomic_write_bytes(cache / f"{archive.path}.CHECKSUM", checksum_bytes)
        return _Outcome(archive, "fetched", frame)
    except XylenError as exc:
        logger.error("%s: %s", archive.name, exc)
        return _Outcome(archive, "failed", error=str(exc))


# -- the whole download -----------------------------------------------------------------------------
def _run(
    archives: list[Archive], fetch: Fetcher, cache: Path | None, workers: int, bar: tqdm[Any]
) -> list[_Outcome]:
    outcomes: list[_Outcome] = []
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="bv-download") as pool:
        futures: list[Future[_Outcome]] = [pool.submit(fetch_archive, a, fetch, cache) for a in archives]
        for future in as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            bar.update(1)
            bar.set_postfix_str(outcome.archive.period, refresh=False)
    return outcomes


def download(
    symbol: str,
    interval: str,
    start: str,
    end: str,
    market: str = "um",
    mirror: str | os.PathLike[str] = DEFAULT_MIRROR,
    dest: str | os.PathLike[str] | None = None,
    store: CandleStore | None = None,
    workers: int = 4,
    progress: bool = True,
    *,
    timeout: float = 30.0,
    retries: int = 5,
    backoff: float = 1.0,
    overwrite: bool = False,
    today: date | None = None,
) -> DownloadSummary:
    """Download ``symbol``/``interval`` klines for ``start``..``end`` (``YYYY-MM[-DD]``, inclusive).

    ``dest`` is the download cache (site layout, verified zips only; None: no cache).
    ``store`` receives the candles (None: only returned in ``summary.frame``).  Raises
    ``UsageError`` for bad arguments, ``DataError`` when the downloaded candles conflict
    with the store, and :class:`IncompleteDownload` when some archive failed (after
    storing the others).
    """
    symbol = symbol.upper()
    if workers < 1:
        raise UsageError(f"workers must be >= 1, got {workers}")
    plan = plan_archives(market, symbol, interval, start, end, today)
    fetch = _with_retries(make_fetcher(mirror, timeout), retries, backoff)
    cache = Path(dest) if dest is not None else None
    summary = DownloadSummary(market, symbol, interval)
    disable = not progress or not sys.stderr.isatty()
    logger.info("%s %s %s: %d archive(s) planned from %s", market, symbol, interval, len(plan), mirror)
    with tqdm(total=len(plan), unit="file", desc=f"{symbol} {interval}", disable=disable) as bar:
        outcomes = _run(plan, fetch, cache, workers, bar)
        missing_months = [
            o.archive for o in outcomes if o.status == "missing" and o.archive.kind == "monthly"
        ]
        fallback = [day for month in missing_months for day in daily_fallback(month, today)]
        if missing_months:
            logger.info(
                "%d monthly archive(s) not published (%s), trying %d daily archive(s)",
                len(missing_months),
                ", ".join(a.name for a in missing_months),
                len(fallback),
            )
            bar.total = (bar.total or 0) + len(fallback)
            bar.refresh()
            outcomes += _run(fallback, fetch, cache, workers, bar)
    frames: list[pd.DataFrame] = []
    for outcome in sorted(outcomes, key=lambda o: o.archive.period):
        name = outcome.archive.name
        if outcome.status == "fetched":
            summary.fetched.append(name)
        elif outcome.status == "cached":
            summary.skipped.append(name)
        elif outcome.status == "missing":
            if outcome.archive.kind == "daily":
                logger.warning("%s: not published", name)
            summary.missing.append(name)
        else:
            summary.failed.append((name, outcome.error))
        if outcome.frame is not None:
            frames.append(outcome.frame)
    if frames:
        try:
            summary.frame = normalize_candles(pd.concat(frames, ignore_index=True))
        except ValueError as exc:
            raise DataError(f"{market} {symbol} {interval}: archives overlap: {exc}") from exc
        summary.rows = len(summary.frame)
        summary.report = check_candles(summary.frame, interval)
        log_report(summary.report, f"{market} {symbol} {interval}")
        if store is not None:
            result = store.write(market, symbol, interval, summary.frame, overwrite=overwrite)
            summary.rows_stored = result.rows_added + result.rows_changed
    if summary.failed:
        reasons = "; ".join(reason for _, reason in summary.failed)
        raise IncompleteDownload(f"{len(summary.failed)} archive(s) failed: {reasons}", summary)
    return summary
