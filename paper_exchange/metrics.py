"""Prometheus metrics of the paper exchange (``GET /metrics``), in a registry of its own.

Families (names start with ``xylen_paper_``):

=========================================  =========  ==========================================
``xylen_paper_http_requests_total``        counter    REST and WebSocket requests by ``route``
  [route, status]                                     (``METHOD /path``; ``unmatched`` for 404/405)
``xylen_paper_orders_total`` [event]       counter    regular orders ``placed``, ``filled``,
                                                      ``canceled``, ``expired`` (every event from 0)
``xylen_paper_algo_orders_total`` [status] counter    algo order updates by status (``NEW``,
                                                      ``TRIGGERED``, ``CANCELED``, ...)
``xylen_paper_open_orders`` [kind]         gauge      open orders now (``order``, ``algo``)
``xylen_paper_replay_time_seconds``        gauge      the replay clock (Unix seconds)
=========================================  =========  ==========================================

Orders are counted from the user-data events the engine delivers after each commit (the same
events the user streams carry), so a rolled-back request counts nothing.  The open-order gauges and
the replay clock are read from the service at each scrape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

UNMATCHED = "unmatched"
ORDER_EVENTS = ("placed", "filled", "canceled", "expired")
_EXEC_EVENTS = {"NEW": "placed", "CANCELED": "canceled", "EXPIRED": "expired"}
_FILL_EXECS = frozenset({"TRADE", "CALCULATED"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ExchangeMetrics:
    """Every metric of the paper exchange; :meth:`middleware` counts requests, :meth:`on_event`
    orders, :meth:`watch_service` the open orders and the replay clock."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "xylen_paper_http_requests_total",
            "Requests by route and HTTP status",
            ["route", "status"],
            registry=r,
        )
        self.orders = Counter(
            "xylen_paper_orders_total",
            "Regular orders placed, filled, canceled and expired",
            ["event"],
            registry=r,
        )
        self._order_children = {event: self.orders.labels(event=event) for event in ORDER_EVENTS}
        self.algo_orders = Counter(
            "xylen_paper_algo_orders_total", "Algo order updates by status", ["status"], registry=r
        )
        self.replay_time = Gauge(
            "xylen_paper_replay_time_seconds", "The replay clock of the exchange (Unix seconds)", registry=r
        )
        # children bound once per (method, route, status): a request pays a dict lookup and an inc
        self._request_children: dict[tuple[str, str | None, int], Any] = {}

    def on_event(self, account: str, event: Mapping[str, Any]) -> None:
        """A user-data event from the engine (a subscriber: cheap, never raises on odd input)."""
        kind = event.get("e")
        o = event.get("o")
        if not isinstance(o, Mapping):
            return
        if kind == "ORDER_TRADE_UPDATE":
            exec_type = o.get("x")
            if exec_type in _FILL_EXECS:
                if o.get("X") == "FILLED":
                    self._order_children["filled"].inc()
            elif isinstance(exec_type, str) and exec_type in _EXEC_EVENTS:
                self._order_children[_EXEC_EVENTS[exec_type]].inc()
        elif kind == "ALGO_UPDATE" and isinstance(o.get("X"), str):
            self.algo_orders.labels(status=o["X"]).inc()

    def watch_service(self, service: object) -> None:
        """Read the replay clock (``service.now_ms()``) and the engine's open orders at each scrape,
        when the service has them (a test double may not)."""
        now_ms = getattr(service, "now_ms", None)
        if callable(now_ms):
            self.replay_time.set_function(lambda: now_ms() / 1000.0)
        engine = getattr(service, "engine", None)
        if engine is not None and hasattr(engine, "open_orders") and hasattr(engine, "open_algos"):
            self.registry.register(_OpenOrders(lambda: {"order": len(engine.open_orders),
                                                        "algo": len(engine.open_algos)}))  # fmt: skip

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count every request by route (``METHOD /path`` as routed) and status."""
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            info = request.match_info
            resource = info.route.resource if info.route is not None else None
            key = (request.method, None if resource is None else resource.canonical, status)
            child = self._request_children.get(key)
            if child is None:
                child = self.requests.labels(route=_route_of(key[0], key[1]), status=str(status))
                self._request_children[key] = child
            child.inc()

    async def handle(self, request: web.Request) -> web.Response:
        """``GET /metrics``: the registry in the Prometheus text format."""
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


def _route_of(method: str, canonical: str | None) -> str:
    """``METHOD /path`` of the route that served a request (``unmatched`` for the catch-all)."""
    if canonical is None or "{tail" in canonical:
        return UNMATCHED
    return f"{method} {canonical}"


class _OpenOrders(Collector):
    """Open orders by kind, read from the engine at each scrape."""

    def __init__(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("xylen_paper_open_orders", "Open orders now by kind", labels=["kind"])
        for kind, count in sorted(self._counts().items()):
            family.add_metric([kind], count)
        yield family
