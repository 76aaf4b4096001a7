"""The coordinator's composition root: everything built from one config, run as one supervised group.

:class:`CoordinatorApp` builds, in order: the SQLite database (``init_db``, migrations), the exchange
(:class:`FuturesExchange`: connect, reconcile SQLite with the exchange, monitor orders), margin mode
and leverage per symbol, the clock (accelerated and instant clocks start at the market data's
time, ``premiumIndex``'s ``time``, so a paper exchange replaying 2024 and the coordinator agree on
"now"), the model clients, the ensemble and risk manager (state restored from SQLite), metrics and
the dashboard servers, then the
:class:`~coordinator.heartbeat.Heartbeat`.

Tasks (named, supervised: the first one to crash stops the group and the process exits 1):
``heartbeat`` (the beat loop; with ``beats`` it ends the run after that many), ``backup`` (the daily
SQLite backup), ``orders-monitor`` (waits on the order monitor: its end for any reason stops the
process, so systemd restarts it and reconciliation takes over), ``safety`` (the
:class:`~coordinator.safety.SafetySwitch`: halt and flatten requests and their triggers),
``watchdog`` (systemd ``WATCHDOG=1`` when ``WATCHDOG_USEC`` is set).

Before anything is reconciled the account's position mode is checked: hedge mode is switched to
one-way when no position is open, else the start is refused (exit 1) with the reason.

Signals: SIGINT/SIGTERM finish the beat in progress, stop the tasks (each bounded by a timeout),
finish the protection (:meth:`FuturesExchange.stop`: an order whose request is on its way gets its
reply, an outcome left unknown is queried, a position without its stop gets one), checkpoint and
close SQLite, close the connections and exit 0; protective stop and take-profit orders stay on the
exchange.  If a position is still left without a stop, an error line names it and the exit status
is 1.  The coordinator holds its home's lock (:mod:`coordinator.storage.home_lock`) from start to
exit: a second coordinator, ``xylen db restore`` and ``xylen db migrate`` refuse meanwhile.

SIGHUP reloads the config file: an invalid file is refused with one log line
naming the key and the reason and the running config is kept; a valid one is applied before the next
beat (ensemble, risk and trading settings, beat timing; changes to sections that need a restart are
named in a warning and not applied).

systemd: with ``NOTIFY_SOCKET`` set, ``READY=1`` after start-up, ``WATCHDOG=1`` every half
``WATCHDOG_USEC``, ``STOPPING=1`` at shutdown (the datagram protocol of ``sd_notify(3)``, no library).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from coordinator.clock import Clock, InstantClock, make_clock
from coordinator.ensemble import Ensemble, EnsembleStore
from coordinator.exchange.facade import FuturesExchange
from coordinator.feed_models import DecisionView, EquityPoint, SystemView, TradeView, risk_text
from coordinator.heartbeat import BeatReport, Heartbeat
from coordinator.metrics import Metrics, MetricsServer
from coordinator.model_client import ModelClients
from coordinator.publish import FeedSources, daily_loss_limit, trade_view
from coordinator.risk import RiskManager
from coordinator.risk.state import RiskStore
from coordinator.safety import DashboardControls, HaltRequests, SafetySwitch
from coordinator.snapshot import MarketData
from coordinator.storage.backup import DailyBackup
from coordinator.storage.db import init_db
from coordinator.storage.home_lock import HomeLock
from coordinator.storage.journal import Journal
from coordinator.ws_server import DashboardLogHandler, DashboardServer
from xylen import __version__
from xylen.config import XylenConfig, load_config
from xylen.config.secrets import Secrets, load_secrets
from xylen.errors import ConfigError
from xylen.logs import setup_logging
from xylen.paths import Home
from xylen.sdnotify import sd_notify, watchdog_interval_s, watchdog_loop
from xylen.timeutil import wall_ms

logger = logging.getLogger(__name__)

RESTART_SECTIONS = ("exchange", "market", "model_servers", "storage", "monitoring", "dashboard")
SHUTDOWN_TIMEOUT_S = 5.0
ADMIN_TOKEN_ENV = "XYLEN_DASHBOARD_ADMIN_TOKEN"  # nosec B105 # the variable's name, not a token


def admin_token(secrets: Secrets, env: dict[str, str] | None = None) -> str | None:
    """The dashboard's admin token (environment only); None when unset.

    Raises :class:`ConfigError` (exit 2) when it equals the read token: the read token must never
    be able to act."""
    token = (os.environ if env is None else env).get(ADMIN_TOKEN_ENV) or None
    read = secrets.dashboard_token.get_secret_value() if secrets.dashboard_token else None
    if token is not None and token == read:
        raise ConfigError(ADMIN_TOKEN_ENV, "must differ from XYLEN_DASHBOARD_TOKEN", "secrets")
    if token is not None and len(token) < 16:
        raise ConfigError(ADMIN_TOKEN_ENV, "must be at least 16 characters", "secrets")
    return token


def beat_interval_ms(config: XylenConfig) -> int:
    """Real milliseconds between beats: the configured interval over an accelerated clock's speed
    (an instant clock beats as fast as it can: 1 s is shown)."""
    hb = config.heartbeat
    if hb.clock == "instant":
        return 1000
    seconds = hb.interval_seconds / hb.speed if hb.clock == "accelerated" else hb.interval_seconds
    return max(1, round(seconds * 1000))


def public_url(url: str) -> str:
    """``url`` without user info, query or fragment (nothing secret reaches the dashboard)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class JournalHistory:
    """The dashboard's history API (:class:`~coordinator.ws_server.HistoryProvider`) over the journal."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def trades_since(self, since_ms: int, limit: int) -> Sequence[TradeView]:
        return [trade_view(t) for t in self.journal.trades(since_ms)[:limit]]

    async def recent_decisions(self, limit: int) -> Sequence[DecisionView]:
        keys = set(DecisionView.model_fields)
        out = []
        for row in reversed(self.journal.recent_decisions(limit)):
            row["votes"] = [
                {k: v[k] for k in ("model_id", "prob_raw", "prob", "weight")} for v in row["votes"]
            ]
            reasons = [r["reason"] for r in row["risk_reasons"] or ()]
            row["risk"] = risk_text(row["risk_approved"], reasons)
            out.append(DecisionView.model_validate({k: v for k, v in row.items() if k in keys}))
        return out

    async def equity_since(self, since_ms: int, limit: int) -> Sequence[EquityPoint]:
        return [
            EquityPoint(ts=ts, equity_usd=float(eq), daily_pnl_usd=float(pnl))
            for ts, eq, pnl in self.journal.equity_curve(since_ms)[:limit]
        ]


@dataclass
class CoordinatorApp:
    """Build, run and stop the coordinator (module docstring).  ``run()`` returns the exit status."""

    config: XylenConfig
    home: Home
    config_path: Path | None = None
    beats: int | None = None
    secrets: Secrets | None = None
    on_beat: Callable[[BeatReport], None] | None = None
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    heartbeat: Heartbeat | None = None
    metrics_server: MetricsServer | None = None
    dashboard: DashboardServer | None = None
    exchange: FuturesExchange | None = None
    safety: SafetySwitch | None = None
    reloads: int = 0
    admin_token: str | None = None  # the dashboard's admin token (default: $XYLEN_DASHBOARD_ADMIN_TOKEN)
    started_ms: int = 0
    protected_at_exit: bool = True  # False: the exchange's stop left a position without a stop
    _conn: sqlite3.Connection | None = None
    _ensemble_store: EnsembleStore | None = None
    _models: ModelClients | None = None
    _log_handler: logging.Handler | None = None

    def stop(self) -> None:
        """Ask for a graceful stop (what SIGINT/SIGTERM do)."""
        if not self.stop_event.is_set():
            logger.info("stop requested: finishing the current beat")
        self.stop_event.set()

    # ------------------------------------------------------------------ start-up

    async def _build(self) -> Heartbeat:
        config = self.config
        secrets = self.secrets or load_secrets()
        admin = self.admin_token if self.admin_token is not None else admin_token(secrets)
        self.started_ms = wall_ms()
        self.home.root.mkdir(parents=True, exist_ok=True)
        self._conn = conn = init_db(self.home.database)
        self.exchange = exchange = await FuturesExchange.create(
            config.exchange, secrets, self.home.database, symbols=config.market.symbols
        )
        await exchange.ensure_one_way_mode()
        result = await exchange.start()
        logger.info("reconciliation done: %s", result)
        for symbol in config.market.symbols:
            await exchange.set_margin_mode(symbol, config.exchange.margin_mode)
            await exchange.set_leverage(symbol, config.exchange.leverage)
        logger.info("margin mode %s and leverage %dx set on %s", config.exchange.margin_mode,
                    config.exchange.leverage, ", ".join(config.market.symbols))  # fmt: skip
        start_ms = (
            None if config.heartbeat.clock == "wall" else await exchange.market_time(config.market.symbols[0])
        )
        clock: Clock = make_clock(config.heartbeat, start_ms)
        self._models = ModelClients(config.model_servers, secrets.model_token)
        await self._models.discover()  # each server's symbols and label, from its /health
        self._ensemble_store = EnsembleStore.open(self.home.database)
        ensemble = Ensemble.from_config(config, self._ensemble_store)
        risk = RiskManager.from_config(config, RiskStore(conn))
        metrics = Metrics()
        limiter = exchange.client.transport.limiter
        metrics.watch_rate_limit(lambda: limiter.used_weight, lambda: limiter.weight_limit)
        orders = exchange.manager
        metrics.watch_orders(lambda: orders.corrections, lambda: orders.handed_to_reconciliation)
        monitor, reconciler = exchange.monitor, exchange.reconciler
        metrics.watch_unprotected(lambda: monitor.unprotected)
        metrics.watch_reconciliation(lambda: reconciler.differences)
        self.metrics_server = MetricsServer(
            metrics, config.monitoring.metrics_host, config.monitoring.metrics_port
        )
        await self.metrics_server.start()
        journal = Journal(conn, ensemble.params)
        if config.dashboard.enabled:
            self.dashboard = DashboardServer(
                JournalHistory(journal),
                token=secrets.dashboard_token,
                require_token=config.dashboard.require_token,
                redact=[s for s in (secrets.model_token, secrets.paper_api_secret,
                                    secrets.binance_api_secret, secrets.binance_api_key) if s is not None],
                clock_ms=clock.now_ms,
                admin_token=admin,
            )  # fmt: skip
        market = MarketData(
            exchange.client, config.market.symbols, config.market.base_interval, config.market.history_candles
        )
        hb = Heartbeat(
            config, clock, market, exchange, self._models, ensemble, risk, journal, metrics,
            self.dashboard, on_beat=self._beaten,
        )  # fmt: skip
        hb.publisher.risk_of = lambda: (hb.risk, hb.config)
        metrics.set_risk(risk.halted, daily_loss_limit(config, risk.state.day_start_equity))  # before beat 1
        self.safety = SafetySwitch(
            exchange, HaltRequests(conn), lambda: hb.risk, lambda: hb.config, clock.now_ms,
            publish=self.dashboard.publish_risk if self.dashboard is not None else None,
            on_halted=metrics.set_halted,
        )  # fmt: skip
        hb.entries.guard(lambda: hb.risk, lambda: hb.config, self.safety.gate)
        self.safety.paused = journal.entries_paused()
        if self.safety.paused:
            logger.warning("entries are paused (from the dashboard); resume there to trade again")
        self.safety.apply_pause(hb.risk)
        if self.dashboard is not None:
            await self._start_dashboard(self.dashboard, hb, journal)
        return hb

    def system_view(self) -> SystemView:
        """The coordinator as the dashboard shows it (no secret: the URL without user info)."""
        config = self.config
        return SystemView(
            venue=config.exchange.mode.value,
            base_url=public_url(config.exchange.base_url),
            symbols=list(config.market.symbols),
            beat_interval_ms=beat_interval_ms(config),
            controls_enabled=self.dashboard is not None and self.dashboard.controls_enabled,
            version=__version__,
            started_ms=self.started_ms,
        )

    async def _start_dashboard(self, dashboard: DashboardServer, hb: Heartbeat, journal: Journal) -> None:
        """Wire the feed's sources and the controls, then bind the dashboard's port."""
        if self.safety is None or self.exchange is None:
            raise RuntimeError("the dashboard is started after the safety switch and the exchange")
        dashboard.set_controls(DashboardControls(self.safety, journal))
        hb.publisher.sources = FeedSources(
            config=lambda: hb.config, risk=lambda: hb.risk, ensemble=lambda: hb.ensemble,
            store=self.exchange.store, journal=journal, system=self.system_view, now_ms=hb.clock.now_ms,
        )  # fmt: skip
        dashboard.set_system(self.system_view())
        dashboard.publish_risk(self.safety.view())
        await dashboard.load_history()
        await dashboard.start(self.config.dashboard.host, self.config.dashboard.port)
        # the coordinator's log lines (INFO and above) become the feed's ``log`` messages
        self._log_handler = DashboardLogHandler(dashboard, asyncio.get_running_loop())
        logging.getLogger().addHandler(self._log_handler)
        if dashboard.controls_enabled:
            logger.warning("dashboard controls are ON (%s is set)", ADMIN_TOKEN_ENV)

    def _beaten(self, report: BeatReport) -> None:
        """After each beat: the safety switch looks at the risk state at once, then ``on_beat``."""
        if self.safety is not None:
            self.safety.wakeup.set()
        if self.on_beat is not None:
            self.on_beat(report)

    # ------------------------------------------------------------------ reload

    def reload(self) -> bool:
        """Re-read the config file (SIGHUP); True when the new one was accepted."""
        if self.config_path is None:
            logger.warning("SIGHUP: no config file was given; nothing to reload")
            return False
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            logger.error("config reload refused, keeping the running config: %s", exc)
            return False
        old = self.config
        needs_restart = [s for s in RESTART_SECTIONS if getattr(new, s) != getattr(old, s)]
        if needs_restart:
            logger.warning(
                "config reload: changes to %s need a restart; not applied", ", ".join(needs_restart)
            )
            new = new.model_copy(update={s: getattr(old, s) for s in RESTART_SECTIONS})
        hb = self.heartbeat
        if hb is not None and self._conn is not None:
            risk = RiskManager.from_config(new, RiskStore(self._conn))
            if self.safety is not None:
                self.safety.apply_pause(risk)  # a pause outlives a reload
            hb.stage(new, Ensemble.from_config(new, self._ensemble_store), risk)
        self.config = new
        self.reloads += 1
        logger.info("config reloaded from %s (applied before the next beat)", self.config_path)
        return True

    # ------------------------------------------------------------------ run

    async def run(self) -> int:
        """Start, beat until stopped (or ``beats`` done), stop cleanly; the exit status.

        Raises :class:`~coordinator.storage.home_lock.HomeLocked` (exit 1, naming the pid) when
        another process holds the home; the lock is held from here until the end of the run.
        """
        lock = HomeLock(self.home.root, "starting the coordinator")
        lock.acquire()
        try:
            return await self._run_locked()
        finally:
            lock.release()

    async def _run_locked(self) -> int:
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig, handler in ((signal.SIGTERM, self.stop), (signal.SIGINT, self.stop),
                             (signal.SIGHUP, self.reload)):  # fmt: skip
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, handler)
                installed.append(sig)
        status = 1
        try:
            self.heartbeat = await self._build()
            sd_notify("READY=1\nSTATUS=beating")
            logger.info("coordinator started: %s, %d model server(s), clock %s",
                        ", ".join(self.config.market.symbols), len(self.config.model_servers),
                        self.config.heartbeat.clock)  # fmt: skip
            status = await self._supervise(self.heartbeat)
        finally:
            sd_notify("STOPPING=1")
            await self._shutdown()
            for sig in installed:
                loop.remove_signal_handler(sig)
        if not self.protected_at_exit and status == 0:
            logger.error("a position is left without a stop (see above): exit 1")
            status = 1
        logger.info("coordinator stopped (exit %d)", status)
        return status

    def _loops(self, hb: Heartbeat) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
        backup = DailyBackup(
            self.home.database, self.home.backups, self.config.storage.backup_keep,
            self.config.storage.backup_hour_utc,
        )  # fmt: skip

        async def heartbeat() -> None:
            await hb.run(self.beats, self.stop_event)
            self.stop_event.set()

        # an instant clock moves when slept on: only the beat loop may drive it
        sleep = asyncio.sleep if isinstance(hb.clock, InstantClock) else hb.clock.sleep
        loops: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "heartbeat": heartbeat,
            "backup": lambda: backup.run_daily(hb.clock.now_ms, sleep),
        }
        if self.exchange is not None:
            loops["orders-monitor"] = self._watch_monitor
        if self.safety is not None:
            loops["safety"] = self.safety.run
        interval_s = watchdog_interval_s()
        if interval_s is not None:
            loops["watchdog"] = lambda: watchdog_loop(interval_s)
        return loops

    async def _watch_monitor(self) -> None:
        """Wait on the order monitor's task: its end, for any reason, is a crash of the group.

        Without the monitor no fill would get its stop; stopping the process (exit 1) lets systemd
        restart it and reconciliation take over, instead of trading on with nobody watching.
        """
        if self.exchange is None:
            raise RuntimeError("the order monitor is watched only once the exchange is built")
        task = self.exchange.monitor.task
        if task is None:
            raise RuntimeError("the order monitor is not running")
        await asyncio.wait([task])  # never cancels the monitor itself when this waiter is cancelled
        if task.cancelled():
            raise RuntimeError("the order monitor was cancelled")
        error = task.exception()
        if error is not None:
            raise RuntimeError(f"the order monitor crashed: {error!r}") from error
        raise RuntimeError("the order monitor stopped")

    async def _supervise(self, hb: Heartbeat) -> int:
        tasks = {name: asyncio.create_task(loop(), name=name) for name, loop in self._loops(hb).items()}
        stopper = asyncio.create_task(self.stop_event.wait(), name="stop")
        status = 0
        try:
            done, _ = await asyncio.wait([*tasks.values(), stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and not task.cancelled() and task.exception() is not None:
                    logger.critical("task %s crashed: stopping", task.get_name(), exc_info=task.exception())
                    status = 1
            self.stop_event.set()
            beat_task = tasks.pop("heartbeat")
            if not beat_task.done():
                # the loop sees the stop event after the beat in progress
                finished, _ = await asyncio.wait([beat_task], timeout=SHUTDOWN_TIMEOUT_S)
                if not finished:
                    logger.error("the beat in progress did not finish within %.0f s", SHUTDOWN_TIMEOUT_S)
                    beat_task.cancel()
                    await asyncio.wait([beat_task], timeout=1.0)
                elif beat_task.exception() is not None:
                    logger.critical("heartbeat crashed: stopping", exc_info=beat_task.exception())
                    status = 1
        finally:
            for task in [*tasks.values(), stopper]:
                task.cancel()
            pending = [t for t in [*tasks.values(), stopper] if not t.done()]
            if pending:
                _done, late = await asyncio.wait(pending, timeout=SHUTDOWN_TIMEOUT_S)
                for task in late:
                    logger.error("task %s did not stop within %.0f s", task.get_name(), SHUTDOWN_TIMEOUT_S)
        return status

    async def _shutdown(self) -> None:
        """Close everything this app opened, each step bounded and independent of the others."""
        steps: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = []
        if self._log_handler is not None:
            logging.getLogger().removeHandler(self._log_handler)
            self._log_handler = None
        if self.heartbeat is not None:
            steps.append(("heartbeat", self.heartbeat.close))
        if self.dashboard is not None:
            steps.append(("dashboard", self.dashboard.stop))
        if self.metrics_server is not None:
            steps.append(("metrics", self.metrics_server.stop))
        if self._models is not None:
            steps.append(("model clients", self._models.close))
        exchange = self.exchange
        if exchange is not None:

            async def stop_exchange() -> None:
                self.protected_at_exit = await exchange.stop()

            steps.append(("exchange", stop_exchange))
        for name, step in steps:
            # the exchange step waits for protective orders in flight, so it has its own bound
            bound = SHUTDOWN_TIMEOUT_S if name != "exchange" or exchange is None else (
                exchange.shutdown_timeout_s + SHUTDOWN_TIMEOUT_S
            )  # fmt: skip
            try:
                await asyncio.wait_for(step(), bound)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("stopping %s failed", name)
        if self._ensemble_store is not None:
            self._ensemble_store.close()
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.close()
            self._conn = None


def resolve_home(config: XylenConfig, home: str | None) -> Home:
    """``--home``, else ``$XYLEN_HOME``, else the config's ``storage.home``."""
    if home is None and not os.environ.get("XYLEN_HOME"):
        return Home.resolve(config.storage.home)
    return Home.resolve(home)


def run_coordinator(
    config_path: str | None,
    home: str | None = None,
    beats: int | None = None,
    *,
    log_level: str | None = None,
    log_format: str | None = None,
) -> int:
    """Load the config (a bad one raises :class:`ConfigError`, exit 2) and run the coordinator.

    Logging follows the config's ``logging`` section (level, terminal format, JSON-lines file; a
    relative file is under the home's ``logs/``); a ``--log-level`` or ``--log-format`` given on
    the command line wins over the file.
    """
    path = Path(config_path) if config_path else None
    config = load_config(path)
    resolved = resolve_home(config, home)
    file = None
    if config.logging.file:
        file = Path(config.logging.file).expanduser()
        file = file if file.is_absolute() else resolved.logs / file
    setup_logging(log_level or config.logging.level, log_format or config.logging.format, file)
    app = CoordinatorApp(config, resolved, path, beats)
    return asyncio.run(app.run())


__all__ = ["CoordinatorApp", "JournalHistory", "resolve_home", "run_coordinator"]
