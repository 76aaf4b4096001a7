"""Prometheus metrics of one model server, in a registry of its own (``GET /metrics``).

Names start with ``xylen_model_`` and carry their unit.  Children of labelled metrics
used per request are bound once (``latency``, :meth:`ServerMetrics.request`), so the hot path pays
for a dict lookup and an ``inc``/``observe``, nothing more.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.metrics import MetricWrapperBase

_LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
_RETRAIN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServerMetrics:
    """All metrics of the server; ``render()`` gives the Prometheus text exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, cpu, fds
        r = self.registry
        self.latency = Histogram(
            "xylen_model_prediction_latency_seconds",
            "Time inside /predict from the parsed request to the built response.",
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.requests = Counter(
            "xylen_model_http_requests_total",
            "HTTP requests by route and status.",
            ["route", "status"],
            registry=r,
        )
        self.inflight = Gauge("xylen_model_inflight_requests", "Requests being served now.", registry=r)
        self.rejected = Counter(
            "xylen_model_rejected_requests_total",
            "Requests refused before serving (queue, rate, memory, body size).",
            ["reason"],
            registry=r,
        )
        self.model_info = Gauge(
            "xylen_model_info",
            "The serving model version (value 1).",
            ["model_version", "backend", "feature_version"],
            registry=r,
        )
        self.rss = Gauge("xylen_model_memory_rss_bytes", "Resident memory of the server process.", registry=r)
        self.available = Gauge(
            "xylen_model_memory_available_bytes", "Memory available on the host.", registry=r
        )
        self.degraded = Gauge(
            "xylen_model_degraded", "1 while free memory is under the threshold.", registry=r
        )
        # Registered at the first sample: a server that never reads its disk exports no 0 that the
        # low-disk alert would take for a full disk.
        self._disk_free: Gauge | None = None
        self.retrain_requests = Counter(
            "xylen_model_retrain_requests_total", "/retrain calls by outcome.", ["status"], registry=r
        )
        self.retrain_seconds = Histogram(
            "xylen_model_retrain_duration_seconds",
            "Time of one /retrain (feedback write and online learning).",
            registry=r,
            buckets=_RETRAIN_BUCKETS,
        )
        self.retrain_samples = Counter(
            "xylen_model_retrain_samples_total", "Outcomes written to the feedback buffer.", registry=r
        )
        self.online_learned = Counter(
            "xylen_model_online_learned_total", "Outcomes learned by the online (River) model.", registry=r
        )
        self.feedback_size = Gauge(
            "xylen_model_feedback_buffer_samples", "Outcomes waiting in the feedback buffer.", registry=r
        )
        self.retrain_scheduled = Counter(
            "xylen_model_retrain_scheduled_total", "Batch retrains requested from the trainer.", registry=r
        )
        self.swaps = Counter(
            "xylen_model_hot_swaps_total",
            "Model version changes by result (swapped, refused, rollback).",
            ["result"],
            registry=r,
        )
        self._request_children: dict[tuple[str, int], MetricWrapperBase] = {}

    def request(self, route: str, status: int) -> None:
        """Count one finished request (children cached per route and status)."""
        key = (route, status)
        child = self._request_children.get(key)
        if child is None:
            child = self.requests.labels(route, str(status))
            self._request_children[key] = child
        child.inc()  # type: ignore[attr-defined]

    def set_disk_free(self, free_bytes: int) -> None:
        """``xylen_model_disk_free_bytes``: free bytes on the filesystem of the models folder."""
        if self._disk_free is None:
            self._disk_free = Gauge(
                "xylen_model_disk_free_bytes",
                "Free bytes on the filesystem of the models folder (sampled with the memory).",
                registry=self.registry,
            )
        self._disk_free.set(free_bytes)

    def set_model(self, version: str, backend: str, feature_version: str) -> None:
        """Make ``version`` the only one reported by ``xylen_model_info``."""
        self.model_info.clear()
        self.model_info.labels(version, backend, feature_version).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
