"""Checks of what is on this host: secrets, backups, free disk, the run history in the journal."""

from __future__ import annotations

import ipaddress
import shutil
import sqlite3
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from xylen.config.schema import ExchangeMode, XylenConfig
from xylen.config.secrets import DEFAULT_PAPER_API_KEY, ENV_NAMES, SECRETS_FILE_ENV, read_secrets_file
from xylen.errors import ConfigError
from xylen.preflight.report import Check, failed, passed, warned

GIB = 1024**3
BACKUP_WARN_HOURS = 26.0  # a daily backup plus slack
BACKUP_FAIL_HOURS = 72.0


def secrets_file_check(env: Mapping[str, str]) -> tuple[Check, dict[str, str]]:
    """The secrets file named by ``XYLEN_SECRETS_FILE``: present and mode 600.  Also its values
    (empty when there is none or it is refused), for the key checks."""
    name = "secrets file"
    given = env.get(SECRETS_FILE_ENV)
    if not given:
        return passed(name, f"none ({SECRETS_FILE_ENV} unset): secrets from the environment"), {}
    path = Path(given)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        return failed(name, f"{path}: {exc.strerror}"), {}
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return failed(name, f"{path} has mode {mode:03o}, must be 600 (chmod 600 {path})"), {}
    try:
        values = read_secrets_file(path)
    except ConfigError as exc:
        return failed(name, str(exc)), {}
    return passed(name, f"{path} mode {mode:03o}, {len(values)} value(s)"), values


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def key_checks(config: XylenConfig, env: Mapping[str, str], file_values: Mapping[str, str]) -> list[Check]:
    """The keys the configured mode needs are present (values are never shown)."""
    merged = {**file_values, **{k: v for k, v in env.items() if v}}

    def have(field: str) -> bool:
        return bool(merged.get(ENV_NAMES[field]))

    checks: list[Check] = []
    mode = config.exchange.mode
    if mode is ExchangeMode.PAPER:
        default = merged.get(ENV_NAMES["paper_api_key"], DEFAULT_PAPER_API_KEY) == DEFAULT_PAPER_API_KEY
        note = "are the documented local defaults" if default else "are set"
        checks.append(passed("exchange keys", f"paper mode: paper key and secret {note}"))
    else:
        missing = [ENV_NAMES[f] for f in ("binance_api_key", "binance_api_secret") if not have(f)]
        if missing:
            checks.append(failed("exchange keys", f"{mode.value} mode: {', '.join(missing)} missing"))
        else:
            checks.append(
                passed("exchange keys", f"{mode.value} mode: BINANCE_API_KEY and BINANCE_API_SECRET set")
            )
    servers = [s for s in config.model_servers if s.enabled]
    remote = [s.id for s in servers if not _loopback(s.url)]
    if have("model_token"):
        checks.append(passed("model token", "XYLEN_MODEL_TOKEN set"))
    elif remote:
        checks.append(
            failed("model token", f"XYLEN_MODEL_TOKEN missing; servers off this host: {', '.join(remote)}")
        )
    else:
        checks.append(
            warned("model token", "XYLEN_MODEL_TOKEN missing (model servers on loopback, auth off)")
        )
    if not config.dashboard.enabled or not config.dashboard.require_token:
        checks.append(warned("dashboard token", "the dashboard is off or requires no token"))
    elif have("dashboard_token"):
        checks.append(passed("dashboard token", "XYLEN_DASHBOARD_TOKEN set"))
    else:
        checks.append(
            failed("dashboard token", "XYLEN_DASHBOARD_TOKEN missing (dashboard.require_token is on)")
        )
    return checks


def leverage_config_check(config: XylenConfig) -> Check:
    lev, cap = config.exchange.leverage, config.risk.max_leverage
    if lev > cap:  # also refused when the config loads; kept for a config built in code
        return failed("leverage limits", f"exchange.leverage {lev} > risk.max_leverage {cap}")
    if lev > 5:
        return warned("leverage limits", f"exchange.leverage {lev} (<= risk.max_leverage {cap}) is above 5")
    return passed("leverage limits", f"exchange.leverage {lev} <= risk.max_leverage {cap}")


def backup_check(database: Path, backups: Path, now_s: float | None = None) -> Check:
    """The newest ``xylen-*.db`` under ``backups``: recent, and SQLite finds it intact."""
    name = "backups"
    now_s = time.time() if now_s is None else now_s
    found = sorted(backups.glob("xylen-*.db")) if backups.is_dir() else []
    if not found:
        if not database.exists():
            return warned(name, f"no journal yet and no backup under {backups}")
        return failed(name, f"no backup under {backups} (xylen db backup, scripts/backup_sqlite.sh)")
    newest = found[-1]
    age_h = (now_s - newest.stat().st_mtime) / 3600.0
    try:
        with sqlite3.connect(f"{newest.resolve().as_uri()}?mode=ro", uri=True, timeout=5) as conn:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as exc:
        verdict = str(exc)
    if verdict != "ok":
        return failed(name, f"newest backup {newest.name} is damaged: {verdict}")
    detail = f"newest {newest.name}, {age_h:.1f} h old, intact, {len(found)} kept"
    if age_h > BACKUP_FAIL_HOURS:
        return failed(name, detail + f" (older than {BACKUP_FAIL_HOURS:.0f} h)")
    if age_h > BACKUP_WARN_HOURS:
        return warned(name, detail + f" (older than {BACKUP_WARN_HOURS:.0f} h)")
    return passed(name, detail)


def disk_check(path: Path, min_free_gib: float = 1.0, warn_free_gib: float = 5.0) -> Check:
    """Free space on the file system of the home folder."""
    target = path if path.exists() else path.parent
    usage = shutil.disk_usage(target)
    free = usage.free / GIB
    detail = f"{free:.1f} GiB free of {usage.total / GIB:.1f} GiB at {target}"
    if free < min_free_gib:
        return failed("free disk", detail + f" (under {min_free_gib:g} GiB)")
    if free < warn_free_gib:
        return warned("free disk", detail + f" (under {warn_free_gib:g} GiB)")
    return passed("free disk", detail)


def _history(database: Path) -> tuple[int, int, int] | None:
    """(beats, trades, span in hours) of a journal; None when it has no journal tables."""
    try:
        with sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=5) as conn:
            beats, first, last = conn.execute(
                "SELECT count(*), min(ts_ms), max(ts_ms) FROM decisions"
            ).fetchone()
            trades = conn.execute("SELECT count(*) FROM trades").fetchone()[0]
    except sqlite3.Error:
        return None
    span_h = ((last or 0) - (first or 0)) / 3_600_000.0
    return int(beats), int(trades), int(span_h)


def history_check(config: XylenConfig, database: Path, history: Path | None, min_beats: int) -> Check:
    """A paper or testnet run before going live: decisions (one per beat and symbol) and trades.

    The journal does not record the venue it ran against, so in live mode the history must be
    named (``--history``: the journal of the paper/testnet run); in paper or testnet mode the
    home's own journal is that history."""
    name = "run history"
    live = config.exchange.mode is ExchangeMode.LIVE
    source = history if history is not None else (None if live else database)
    if source is None:
        return failed(name, "live mode: give --history with the journal of a paper or testnet run")
    if not source.exists():
        verdict = failed if live else warned
        return verdict(name, f"no journal at {source}: run on paper or testnet first")
    found = _history(source)
    if found is None:
        return failed(name, f"{source} is not a Xylen journal")
    beats, trades, span_h = found
    detail = f"{beats} decisions, {trades} closed trades over {span_h} h (replay time) in {source}"
    if beats == 0:
        return (failed if live else warned)(name, detail)
    if beats < min_beats:
        return (failed if live else warned)(name, detail + f" (fewer than {min_beats} decisions)")
    if trades == 0:
        return warned(name, detail + " (no trade yet)")
    return passed(name, detail)
