"""Transport settings of the paper exchange: listen address, API keys, limits, timing, faults.

A frozen dataclass: built once by the command line (or a test) and read on the hot path as
plain attributes.  Defaults are Binance's numbers (signing, user stream, rate limits); tests shrink the
limits and the listen-key lifetime.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from xylen.config.secrets import DEFAULT_PAPER_API_KEY, DEFAULT_PAPER_API_SECRET

logger = logging.getLogger(__name__)


def _default_keys() -> Mapping[str, str]:
    return MappingProxyType({DEFAULT_PAPER_API_KEY: DEFAULT_PAPER_API_SECRET})


@dataclass(frozen=True)
class TransportSettings:
    """Everything the HTTP/WebSocket transport needs; units are in the names."""

    host: str = "127.0.0.1"
    port: int = 9000
    # API key -> secret.  The key is also the account id handed to the service.
    api_keys: Mapping[str, str] = field(default_factory=_default_keys)

    # Signed requests.  recvWindow above the maximum is refused with -1131.
    recv_window_default_ms: int = 5000
    recv_window_max_ms: int = 60_000
    timestamp_ahead_tolerance_ms: int = 1000

    # Rate limits: fixed windows aligned to the minute / 10 seconds.
    weight_limit_1m: int = 2400
    # The REQUEST_WEIGHT window (Binance: the minute); tests shrink it so minutes take seconds.
    weight_window_ms: int = 60_000
    orders_limit_10s: int = 300
    orders_limit_1m: int = 1200
    # 429 replies an IP may receive in one window before the next over-limit request bans it.
    ban_after_429s: int = 2
    ban_initial_s: int = 120
    ban_max_s: int = 3 * 24 * 3600

    # Replay clock: service.advance() every tick.
    tick_ms: int = 100

    # User-data stream.
    listen_key_ttl_s: float = 3600.0
    listen_key_sweep_s: float = 1.0
    ws_heartbeat_s: float = 180.0
    ws_queue_size: int = 1024
    ws_send_timeout_s: float = 10.0

    # Fault injection: a YAML file (see ``faults``); None = no faults.
    faults_file: Path | None = None

    # Graceful shutdown: how long background tasks get to finish.
    shutdown_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.api_keys:
            raise ValueError("api_keys: at least one API key is needed")
        if self.weight_window_ms < 1000:
            raise ValueError("weight_window_ms: at least 1000")
        for name in ("recv_window_max_ms", "weight_limit_1m", "orders_limit_10s", "orders_limit_1m"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive")
        if self.tick_ms <= 0 or self.ws_queue_size <= 0 or self.listen_key_ttl_s <= 0:
            raise ValueError("tick_ms, ws_queue_size and listen_key_ttl_s must be positive")
        if self.ban_after_429s < 0 or self.ban_initial_s <= 0 or self.ban_max_s < self.ban_initial_s:
            raise ValueError("ban_after_429s >= 0 and 0 < ban_initial_s <= ban_max_s")
