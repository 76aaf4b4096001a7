"""Fault injection for the paper exchange, read from a YAML file and validated at start.

Example (every key optional)::

    seed: 7                        # base seed; each fault draws from its own generator
    latency_ms: {fixed: 20, jitter: 30, paths: ["/fapi/v1/order"]}   # or just a number
    error_rate: {rate: 0.05, statuses: [503, 500]}                  # or just a number
    unknown_error_rate: 0.02
    unreadable_reply_rate: 0.02
    fill_after_cancel_rate: 0.1
    ws_drop_rate: {rate: 0.01, events: [ORDER_TRADE_UPDATE]}
    ws_delay_ms: {fixed: 200, jitter: 100}
    clock_skew_ms: 1500
    foreign_weight_per_s: 30       # another client on this IP uses 30 weight per second

Semantics:

- ``latency_ms``: every matching request waits ``fixed + uniform(0, jitter)`` ms before it is
  handled.
- ``error_rate``: a matching request is answered with a 5xx and NOT executed: 503
  ``{"code":-1001,"msg":"Service Unavailable."}`` or 500 ``{"code":-1001,"msg":"Internal error;
  unable to process your request. Please try again."}``, the status drawn from ``statuses``.
- ``unknown_error_rate``: applies to order endpoints (routes that count as ORDERS, or the TRADE
  routes named in ``paths``).  The request IS executed; if the service accepted it the client
  gets 503 ``{"timestamp":..,"path":..,"msg":"Unknown error, please check your request or try
  again later."}`` instead of the reply (Binance's "execution status unknown").
- ``unreadable_reply_rate``: applies to order placements (``POST /fapi/v1/order`` and
  ``POST /fapi/v1/algoOrder``, or the TRADE routes named in ``paths``).  The request IS executed;
  if the service accepted it the client gets HTTP 200 with the reply's JSON cut in half (a
  truncated body, as a proxy or a dropped connection mid-body leaves it): the order exists, only
  its reply is unreadable.
- ``fill_after_cancel_rate``: applies to ``DELETE /fapi/v1/order`` (or the paths named).  The
  cancel races a fill and loses: the engine fills the open order's remaining quantity at its own
  price (a reduce-only order no more than the position it reduces; nothing to fill -> a normal
  cancel), exactly as a match would (trade, position, wallet, ``ORDER_TRADE_UPDATE`` with
  ``x=TRADE``), while the client's cancel reply still says ``CANCELED`` with the executed quantity
  from before the fill.  A query (``GET /fapi/v1/order``) and the user stream then show ``FILLED``.
- ``ws_drop_rate``: each user-data event is dropped for a connection with this probability.
- ``ws_delay_ms``: each user-data event is sent ``fixed + uniform(0, jitter)`` ms after it
  happened; events of one connection never overtake each other.
- ``clock_skew_ms``: the server's clock reads this many ms ahead (negative: behind) for the
  timestamp/recvWindow checks and in ``serverTime`` of the ``/time`` endpoints.
- ``foreign_weight_per_s``: another client shares every IP and uses this much REQUEST_WEIGHT
  per second, continuously from the IP's first request: the rate limiter adds it to the IP's
  used weight (in ``X-MBX-USED-WEIGHT-1M``, toward 429s and 418 bans).  It takes no filter.

Each fault takes an optional ``paths`` filter (exact paths, or prefixes ending in ``*``; for the
WebSocket faults the path of the stream, ``/private/ws`` or ``/ws/*``), WebSocket faults also
``events`` (event types), and an optional ``seed`` overriding the one derived from the base seed
and the fault's name, so adding one fault never changes another's draws.
"""

from __future__ import annotations

import logging
import random
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from xylen.errors import ConfigError
from xylen.timeutil import wall_ms

logger = logging.getLogger(__name__)

MSG_SERVICE_UNAVAILABLE = "Service Unavailable."
MSG_INTERNAL = "Internal error; unable to process your request. Please try again."
MSG_UNKNOWN = "Unknown error, please check your request or try again later."
PLACEMENT_PATHS = frozenset({"/fapi/v1/order", "/fapi/v1/algoOrder"})
CANCEL_PATH = "/fapi/v1/order"


def truncated(body: bytes) -> bytes:
    """The first half of a JSON body: what an unreadable reply looks like (never valid JSON)."""
    return body[: max(1, len(body) // 2)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Filtered(_Strict):
    paths: tuple[str, ...] | None = None
    seed: int | None = None


class DelaySpec(_Filtered):
    fixed: float = Field(0.0, ge=0)
    jitter: float = Field(0.0, ge=0)
    events: tuple[str, ...] | None = None


class RateSpec(_Filtered):
    rate: float = Field(ge=0.0, le=1.0)
    events: tuple[str, ...] | None = None


class ErrorSpec(RateSpec):
    statuses: tuple[Literal[500, 503], ...] = (503, 500)


class SkewSpec(_Filtered):
    ms: int = 0


def _number_to(field_name: str, value: Any) -> Any:
    if isinstance(value, bool):
        return value
    return {field_name: value} if isinstance(value, int | float) else value


class FaultConfig(_Strict):
    """The validated fault file."""

    seed: int = 0
    latency_ms: DelaySpec | None = None
    error_rate: ErrorSpec | None = None
    unknown_error_rate: RateSpec | None = None
    unreadable_reply_rate: RateSpec | None = None
    fill_after_cancel_rate: RateSpec | None = None
    ws_drop_rate: RateSpec | None = None
    ws_delay_ms: DelaySpec | None = None
    clock_skew_ms: SkewSpec | None = None
    foreign_weight_per_s: float = Field(0.0, ge=0.0, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, inner in (
            ("latency_ms", "fixed"),
            ("ws_delay_ms", "fixed"),
            ("error_rate", "rate"),
            ("unknown_error_rate", "rate"),
            ("unreadable_reply_rate", "rate"),
            ("fill_after_cancel_rate", "rate"),
            ("ws_drop_rate", "rate"),
            ("clock_skew_ms", "ms"),
        ):
            if name in data:
                data[name] = _number_to(inner, data[name])
        return data


def load_fault_config(path: Path) -> FaultConfig:
    """Read and validate a fault file; :class:`ConfigError` names the offending key."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("faults", f"cannot read {path}: {exc.strerror}", source) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("faults", f"not valid YAML: {exc}", source) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("faults", "expected a mapping of fault names", source)
    try:
        return FaultConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "faults"
        raise ConfigError(key, first["msg"], source) from exc


class PathFilter:
    """Exact paths and ``prefix*`` patterns; ``None`` matches everything."""

    __slots__ = ("_exact", "_prefixes")

    def __init__(self, patterns: Sequence[str]) -> None:
        self._exact = frozenset(p for p in patterns if not p.endswith("*"))
        self._prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))

    def __call__(self, path: str) -> bool:
        return path in self._exact or path.startswith(self._prefixes)


def _filter(patterns: Sequence[str] | None) -> PathFilter | None:
    return None if patterns is None else PathFilter(patterns)


class _Fault:
    """One fault's generator and filters."""

    __slots__ = ("events", "paths", "rng")

    def __init__(self, name: str, base_seed: int, spec: _Filtered, events: Sequence[str] | None) -> None:
        seed = spec.seed if spec.seed is not None else base_seed ^ zlib.crc32(name.encode())
        self.rng = random.Random(seed)  # nosec B311 # seeded fault injection, reproducible on purpose
        self.paths = _filter(spec.paths)
        self.events = None if events is None else frozenset(events)

    def applies(self, path: str, event: str | None = None) -> bool:
        if self.paths is not None and not self.paths(path):
            return False
        return self.events is None or event is None or event in self.events


class Faults:
    """The runtime side: cheap checks, one seeded generator per fault."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self.config = config or FaultConfig()
        cfg = self.config
        seed = cfg.seed
        self._latency = cfg.latency_ms
        self._latency_f = _Fault("latency_ms", seed, cfg.latency_ms, None) if cfg.latency_ms else None
        self._error = cfg.error_rate
        self._error_f = _Fault("error_rate", seed, cfg.error_rate, None) if cfg.error_rate else None
        self._unknown = cfg.unknown_error_rate
        unknown, drop, delay = cfg.unknown_error_rate, cfg.ws_drop_rate, cfg.ws_delay_ms
        self._unknown_f = _Fault("unknown_error_rate", seed, unknown, None) if unknown else None
        unreadable, ghost = cfg.unreadable_reply_rate, cfg.fill_after_cancel_rate
        self._unreadable = unreadable
        self._unreadable_f = _Fault("unreadable_reply_rate", seed, unreadable, None) if unreadable else None
        self._ghost = ghost
        self._ghost_f = _Fault("fill_after_cancel_rate", seed, ghost, None) if ghost else None
        self._drop = drop
        self._drop_f = _Fault("ws_drop_rate", seed, drop, drop.events) if drop else None
        self._delay = delay
        self._delay_f = _Fault("ws_delay_ms", seed, delay, delay.events) if delay else None
        self._skew = cfg.clock_skew_ms
        self._skew_paths = _filter(cfg.clock_skew_ms.paths) if cfg.clock_skew_ms else None
        self.http_enabled = bool(self._latency_f or self._error_f)
        self.foreign_weight_per_s = cfg.foreign_weight_per_s

    @classmethod
    def from_file(cls, path: Path | None) -> Faults:
        """Faults of ``path`` (validated), or none."""
        return cls(load_fault_config(path) if path is not None else None)

    def latency_s(self, path: str) -> float:
        """Seconds to hold a request on ``path`` before handling it (0.0: none)."""
        f, spec = self._latency_f, self._latency
        if f is None or spec is None or not f.applies(path):
            return 0.0
        return (spec.fixed + (f.rng.uniform(0.0, spec.jitter) if spec.jitter else 0.0)) / 1000.0

    def server_error(self, path: str) -> tuple[int, dict[str, Any]] | None:
        """``(status, body)`` of an injected 5xx for this request, or ``None``."""
        f, spec = self._error_f, self._error
        if f is None or spec is None or not f.applies(path) or f.rng.random() >= spec.rate:
            return None
        status = spec.statuses[0] if len(spec.statuses) == 1 else f.rng.choice(spec.statuses)
        msg = MSG_SERVICE_UNAVAILABLE if status == 503 else MSG_INTERNAL
        return status, {"code": -1001, "msg": msg}

    def unknown_error(self, path: str, is_order: bool) -> dict[str, Any] | None:
        """The 503 body replacing an executed order's reply, or ``None``."""
        f, spec = self._unknown_f, self._unknown
        if f is None or spec is None:
            return None
        if f.paths is None and not is_order:
            return None
        if not f.applies(path) or f.rng.random() >= spec.rate:
            return None
        return {"timestamp": wall_ms(), "path": path, "msg": MSG_UNKNOWN}

    def unreadable_reply(self, path: str, method: str) -> bool:
        """Whether to answer this executed placement with a truncated 200 body."""
        f, spec = self._unreadable_f, self._unreadable
        if f is None or spec is None:
            return False
        if method != "POST" or path not in PLACEMENT_PATHS or not f.applies(path):
            return False  # ``paths`` narrows the placements it hits, never widens them
        return f.rng.random() < spec.rate

    def fill_after_cancel(self, path: str, method: str) -> bool:
        """Whether this cancel loses its race with a fill (the reply still says ``CANCELED``)."""
        f, spec = self._ghost_f, self._ghost
        if f is None or spec is None:
            return False
        if method != "DELETE" or path != CANCEL_PATH or not f.applies(path):
            return False  # ``paths`` narrows the cancels it hits, never widens them
        return f.rng.random() < spec.rate

    def drop_event(self, path: str, event_type: str) -> bool:
        """Whether to drop this user-data event for one connection."""
        f, spec = self._drop_f, self._drop
        if f is None or spec is None or not f.applies(path, event_type):
            return False
        return f.rng.random() < spec.rate

    def event_delay_s(self, path: str, event_type: str) -> float:
        """Seconds to hold a user-data event before sending it (0.0: none)."""
        f, spec = self._delay_f, self._delay
        if f is None or spec is None or not f.applies(path, event_type):
            return 0.0
        return (spec.fixed + (f.rng.uniform(0.0, spec.jitter) if spec.jitter else 0.0)) / 1000.0

    def skew_ms(self, path: str) -> int:
        """Clock skew on ``path`` in ms (0: none)."""
        spec = self._skew
        if spec is None or (self._skew_paths is not None and not self._skew_paths(path)):
            return 0
        return spec.ms
