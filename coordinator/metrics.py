"""The coordinator's Prometheus metrics: every name starts with ``xylen_`` and carries its unit.

:class:`Metrics` owns its own ``CollectorRegistry`` (never the process-global one), so tests and
several coordinators in one process never collide.  ``/metrics`` is served by a small aiohttp app on
``monitoring.metrics_host:metrics_port`` in the Prometheus text exposition format.

Families (labels in brackets):

==========================================  =========  =========================================
``xylen_beat_duration_seconds``             histogram  one heartbeat, features to orders
``xylen_votes_total`` [server, status]      counter    one per server per beat (ok, timeout, ...)
``xylen_vote_latency_seconds`` [server]     histogram  ``/predict`` round trip seen by the client
``xylen_decisions_total`` [action, reason]  counter    reason ``trade`` for LONG/SHORT
``xylen_orders_total`` [state]              counter    order state transitions reached
``xylen_exchange_errors_total`` [code]      counter    Binance error code or HTTP status
``xylen_rate_limit_weight_used``            gauge      last ``X-MBX-USED-WEIGHT-1M`` reported
``xylen_equity_usd``                        gauge      wallet balance plus unrealized PnL
``xylen_daily_pnl_usd``                     gauge      realized plus unrealized since 00:00 UTC
``xylen_open_positions``                    gauge      positions not flat
``xylen_breaker_state`` [breaker]           gauge      1 tripped, 0 armed
``xylen_model_server_up`` [server]          gauge      1 asked each beat, 0 in backoff/disabled
``xylen_ensemble_log_loss_nats``            gauge      the ensemble's answers, recent outcomes
   [predictor]                                         (predictor ``ensemble`` or ``constant``)
``xylen_ensemble_brier``  [predictor]       gauge      Brier score on the same outcomes
``xylen_ensemble_ece``                      gauge      the ensemble's ECE (15 bins), same outcomes
``xylen_ensemble_outcomes``                 gauge      outcomes in that window
``xylen_ensemble_weight`` [model]           gauge      pool share per model (``_base_rate``: the
                                                       constant's share)
``xylen_order_corrections_total``           counter    venue reports that overruled a final state
``xylen_orders_to_reconciliation_total``    counter    orders handed to reconciliation after
                                                       lasting refused events (read at scrape)
``xylen_trading_halted``                    gauge      1 while the emergency halt is on
``xylen_daily_loss_limit_usd``              gauge      the day's effective daily loss limit
``xylen_positions_unprotected``             gauge      open positions without a live stop of ours
                                                       (the order monitor's last sweep)
``xylen_reconciliation_differences_total``  counter    reconciliation differences, every kind
   [kind]                                              present from 0 (read at scrape)
``xylen_rate_limit_weight_limit``           gauge      request weight allowed per minute
==========================================  =========  =========================================
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from coordinator.ensemble.pool import QualitySnapshot

logger = logging.getLogger(__name__)

BEAT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
VOTE_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)


class Metrics:
    """Every coordinator metric, registered in a private registry, with small update helpers."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.beat_duration_seconds = Histogram(
            "xylen_beat_duration_seconds", "Duration of one heartbeat", buckets=BEAT_BUCKETS_S, registry=r
        )
        self.votes_total = Counter(
            "xylen_votes_total", "Model server answers per beat by status", ["server", "status"], registry=r
        )
        self.vote_latency_seconds = Histogram(
            "xylen_vote_latency_seconds",
            "Round trip of /predict seen by the coordinator",
            ["server"],
            buckets=VOTE_BUCKETS_S,
            registry=r,
        )
        self.decisions_total = Counter(
            "xylen_decisions_total",
            "Ensemble decisions by action and reason",
            ["action", "reason"],
            registry=r,
        )
        self.orders_total = Counter("xylen_orders_total", "Orders reaching each state", ["state"], registry=r)
        self.exchange_errors_total = Counter(
            "xylen_exchange_errors_total",
            "Exchange errors by Binance code or HTTP status",
            ["code"],
            registry=r,
        )
        self.rate_limit_weight_used = Gauge(
            "xylen_rate_limit_weight_used", "Request weight used in the current minute", registry=r
        )
        self.rate_limit_weight_limit = Gauge(
            "xylen_rate_limit_weight_limit", "Request weight allowed per minute", registry=r
        )
        self.trading_halted = Gauge(
            "xylen_trading_halted", "1 while the emergency halt is on, else 0", registry=r
        )
        self.daily_loss_limit_usd = Gauge(
            "xylen_daily_loss_limit_usd",
            "The day's effective daily loss limit in USD (the tighter of the USD and percentage limits)",
            registry=r,
        )
        self.daily_loss_limit_usd.set(math.nan)  # unknown until set: never a 0 limit any loss exceeds
        self.positions_unprotected = Gauge(
            "xylen_positions_unprotected",
            "Open positions without a live stop order of ours, as the order monitor last saw them",
            registry=r,
        )
        self.equity_usd = Gauge("xylen_equity_usd", "Account equity in USD", registry=r)
        self.daily_pnl_usd = Gauge("xylen_daily_pnl_usd", "PnL since 00:00 UTC in USD", registry=r)
        self.open_positions = Gauge("xylen_open_positions", "Open positions", registry=r)
        self.breaker_state = Gauge(
            "xylen_breaker_state", "Circuit breaker state (1 tripped, 0 armed)", ["breaker"], registry=r
        )
        self.model_server_up = Gauge(
            "xylen_model_server_up",
            "Model server asked each beat (1) or in backoff (0)",
            ["server"],
            registry=r,
        )
        self.ensemble_log_loss_nats = Gauge(
            "xylen_ensemble_log_loss_nats",
            "Mean log-loss (nats) over the ensemble's recent outcomes, of the ensemble and the constant",
            ["predictor"],
            registry=r,
        )
        self.ensemble_brier = Gauge(
            "xylen_ensemble_brier",
            "Brier score over the ensemble's recent outcomes, of the ensemble and the constant",
            ["predictor"],
            registry=r,
        )
        self.ensemble_ece = Gauge(
            "xylen_ensemble_ece", "Expected calibration error (15 bins) of the ensemble", registry=r
        )
        self.ensemble_outcomes = Gauge(
            "xylen_ensemble_outcomes", "Outcomes behind the ensemble quality gauges", registry=r
        )
        self.ensemble_weight = Gauge(
            "xylen_ensemble_weight", "Pool share of each model and of the base rate", ["model"], registry=r
        )

    # ------------------------------------------------------------------ helpers

    def set_ensemble_quality(
        self, quality: QualitySnapshot | None, weights: Mapping[str, float] | None = None
    ) -> None:
        """The ensemble's record against the constant (NaN figures are left unset) and pool shares."""
        if quality is not None and quality.n > 0:
            self.ensemble_log_loss_nats.labels(predictor="ensemble").set(quality.log_loss)
            self.ensemble_log_loss_nats.labels(predictor="constant").set(quality.constant_log_loss)
            self.ensemble_brier.labels(predictor="ensemble").set(quality.brier)
            self.ensemble_brier.labels(predictor="constant").set(quality.constant_brier)
            self.ensemble_ece.set(quality.ece)
        self.ensemble_outcomes.set(0 if quality is None else quality.n)
        for model, weight in (weights or {}).items():
            self.ensemble_weight.labels(model=model).set(weight)

    def observe_beat(self, seconds: float) -> None:
        """One heartbeat took ``seconds``."""
        self.beat_duration_seconds.observe(seconds)

    def observe_vote(self, server: str, status: str, latency_seconds: float | None) -> None:
        """One server's result in a beat; ``latency_seconds`` None when it was not asked."""
        self.votes_total.labels(server=server, status=status).inc()
        if latency_seconds is not None:
            self.vote_latency_seconds.labels(server=server).observe(latency_seconds)

    def observe_decision(self, action: str, reasons: Iterable[str]) -> None:
        """One decision: counted once per HOLD reason, or once with reason ``trade``."""
        labels = list(reasons) or ["trade" if action != "HOLD" else "none"]
        for reason in labels:
            self.decisions_total.labels(action=action, reason=reason).inc()

    def order_state(self, state: str) -> None:
        """An order reached ``state``."""
        self.orders_total.labels(state=state).inc()

    def exchange_error(self, code: int | str) -> None:
        """The exchange answered with error ``code``."""
        self.exchange_errors_total.labels(code=str(code)).inc()

    def set_breaker(self, breaker: str, tripped: bool) -> None:
        """Breaker ``breaker`` is tripped (1) or armed (0)."""
        self.breaker_state.labels(breaker=breaker).set(1.0 if tripped else 0.0)

    def set_model_server_up(self, server: str, up: bool) -> None:
        """Server ``server`` is asked each beat (1) or not (0)."""
        self.model_server_up.labels(server=server).set(1.0 if up else 0.0)

    def watch_rate_limit(
        self, used_weight: Callable[[], int | None], weight_limit: Callable[[], int] | None = None
    ) -> None:
        """Read ``xylen_rate_limit_weight_used`` from ``used_weight()`` (0 until known) and
        ``xylen_rate_limit_weight_limit`` from ``weight_limit()`` at every scrape."""

        def read() -> float:
            value = used_weight()
            return float(value) if value is not None else 0.0

        self.rate_limit_weight_used.set_function(read)
        if weight_limit is not None:
            self.rate_limit_weight_limit.set_function(lambda: float(weight_limit()))

    def watch_unprotected(self, unprotected: Callable[[], int]) -> None:
        """Read ``xylen_positions_unprotected`` from the order monitor at every scrape."""
        self.positions_unprotected.set_function(lambda: float(unprotected()))

    def watch_reconciliation(self, differences: Callable[[], Mapping[str, int]]) -> None:
        """Read the reconciler's running totals by kind at every scrape (runs before this
        registry existed, the one at start included)."""
        self.registry.register(_ReconciliationCounts(differences))

    def set_risk(self, halted: bool, daily_loss_limit_usd: float) -> None:
        """The halt flag and the day's effective daily loss limit."""
        self.trading_halted.set(1.0 if halted else 0.0)
        self.daily_loss_limit_usd.set(daily_loss_limit_usd)

    def set_halted(self, halted: bool) -> None:
        """The halt flag alone (set by the safety switch as soon as a halt runs)."""
        self.trading_halted.set(1.0 if halted else 0.0)

    def watch_orders(self, corrections: Callable[[], int], to_reconciliation: Callable[[], int]) -> None:
        """Read the order manager's correction and hand-over counts at every scrape."""
        self.registry.register(_OrderCounts(corrections, to_reconciliation))

    def set_account(self, equity_usd: float, daily_pnl_usd: float, open_positions: int) -> None:
        """The account figures after a beat."""
        self.equity_usd.set(equity_usd)
        self.daily_pnl_usd.set(daily_pnl_usd)
        self.open_positions.set(open_positions)

    # ------------------------------------------------------------------ exposition

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        data: bytes = generate_latest(self.registry)
        return data

    async def handle_metrics(self, request: web.Request) -> web.Response:
        """aiohttp handler for ``GET /metrics``."""
        return web.Response(body=self.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    def make_app(self) -> web.Application:
        """An aiohttp application serving ``GET /metrics``."""
        app = web.Application()
        app.router.add_get("/metrics", self.handle_metrics)
        return app


class _OrderCounts(Collector):
    """Counters kept by the order manager (plain ints), exposed as Prometheus counters."""

    def __init__(self, corrections: Callable[[], int], to_reconciliation: Callable[[], int]) -> None:
        self._corrections = corrections
        self._to_reconciliation = to_reconciliation

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "xylen_order_corrections",
            "Venue reports that overruled a final order state",
            value=self._corrections(),
        )
        yield CounterMetricFamily(
            "xylen_orders_to_reconciliation",
            "Orders handed to reconciliation after lasting refused events",
            value=self._to_reconciliation(),
        )


class _ReconciliationCounts(Collector):
    """The reconciler's differences by kind (plain ints), exposed as one labelled counter."""

    def __init__(self, differences: Callable[[], Mapping[str, int]]) -> None:
        self._differences = differences

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "xylen_reconciliation_differences",
            "Differences between SQLite and the exchange found by reconciliation, by kind",
            labels=["kind"],
        )
        for kind, count in sorted(self._differences().items()):
            family.add_metric([kind], count)
        yield family


class MetricsServer:
    """``/metrics`` on ``host:port``: :meth:`start` binds, :meth:`stop` closes (with a timeout)."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self._metrics = metrics
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        if self._runner is not None and self._runner.addresses:
            port: int = self._runner.addresses[0][1]
            return port
        return self._port

    async def start(self) -> None:
        """Bind and serve."""
        runner = web.AppRunner(self._metrics.make_app(), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        logger.info("metrics on http://%s:%s/metrics", self._host, self.port)

    async def stop(self) -> None:
        """Stop serving (connections closed within about 2 s)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
