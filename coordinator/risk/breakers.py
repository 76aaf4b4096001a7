"""Circuit breakers: four detectors, one exponential cooldown rule -- synchronous and pure of I/O.

A tripped breaker blocks entries (never closing orders) until its cooldown ends.  Cooldown after a
trip is ``base * 2**k``, where ``k`` counts the earlier trips of the same breaker since its last
clean period: ``k`` returns to 0 once the breaker has gone ``clean_period`` without a trip, counted
from the end of its last cooldown.  The exponent is capped at :data:`MAX_EXPONENT` so a runaway
breaker cannot overflow a timestamp (the pause is then about 2**20 times base; an operator acts
long before).  A condition met while the breaker is already blocking does not trip it again (one
incident is one trip); its counter starts afresh.

The detectors:

* ``consecutive_losses``: ``consecutive_losses`` losing trades (net of fees) in a row.
* ``drawdown``: equity ``max_drawdown_pct`` % below the reference peak.  The reference peak is the
  highest equity seen since the last drawdown trip (after a trip it restarts at the current
  equity, so a drawdown that merely persists does not re-trip forever; a further fall does).
* ``error_burst``: ``error_burst`` exchange errors within ``error_window_ms``.
* ``quorum_loss``: ``quorum_misses`` heartbeats in a row without the ensemble's quorum of votes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum

from xylen.config.schema import RiskConfig

MAX_EXPONENT = 20


def readable_ms(ms: int) -> str:
    """A pause as an operator reads it: its two largest units (``15m``, ``2h 30m``, ``170d 16h``,
    ``45s``); below a second, milliseconds."""
    if ms < 1000:
        return f"{ms}ms"
    parts: list[str] = []
    rest = ms // 1000
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count or parts:
            parts.append(f"{count}{unit}")
    kept = parts[:2]
    while len(kept) > 1 and kept[-1].startswith("0"):
        kept.pop()
    return " ".join(kept)


class BreakerKind(str, Enum):
    """The four breakers (values are the names stored in SQLite and shown by the CLI)."""

    CONSECUTIVE_LOSSES = "consecutive_losses"
    DRAWDOWN = "drawdown"
    ERROR_BURST = "error_burst"
    QUORUM_LOSS = "quorum_loss"


def cooldown_ms(base_ms: int, level: int) -> int:
    """``base_ms * 2**level`` (``level`` capped at :data:`MAX_EXPONENT`)."""
    return base_ms << min(max(level, 0), MAX_EXPONENT)


@dataclass(frozen=True, slots=True)
class BreakerParams:
    """Thresholds and timings, from :class:`~xylen.config.schema.RiskConfig`."""

    consecutive_losses: int = 3
    max_drawdown_pct: Decimal = Decimal(10)
    error_burst: int = 5
    error_window_ms: int = 60_000
    quorum_misses: int = 3
    base_cooldown_ms: int = 900_000
    clean_period_ms: int = 86_400_000

    @classmethod
    def from_config(cls, risk: RiskConfig) -> BreakerParams:
        """The ``breaker_*`` keys of the risk section, times in ms."""
        return cls(
            consecutive_losses=risk.breaker_consecutive_losses,
            max_drawdown_pct=Decimal(str(risk.breaker_max_drawdown_pct)),
            error_burst=risk.breaker_error_burst,
            error_window_ms=round(risk.breaker_error_window_seconds * 1000),
            quorum_misses=risk.breaker_quorum_misses,
            base_cooldown_ms=round(risk.breaker_base_cooldown_seconds * 1000),
            clean_period_ms=round(risk.breaker_clean_period_seconds * 1000),
        )


@dataclass(slots=True)
class BreakerState:
    """One breaker: ``level`` is k, the trips since its last clean period."""

    kind: BreakerKind
    level: int = 0
    tripped_until_ms: int = 0
    last_trip_ms: int | None = None
    total_trips: int = 0

    def blocking(self, now_ms: int) -> bool:
        """True while the cooldown of the last trip runs."""
        return now_ms < self.tripped_until_ms

    def decay(self, now_ms: int, clean_period_ms: int) -> None:
        """Return ``level`` to 0 after a clean period (counted from the end of the last cooldown)."""
        if self.level and now_ms - self.tripped_until_ms >= clean_period_ms:
            self.level = 0

    def trip(self, now_ms: int, params: BreakerParams) -> int | None:
        """Trip now; returns the cooldown in ms, or None when already blocking (no second trip)."""
        if self.blocking(now_ms):
            return None
        self.decay(now_ms, params.clean_period_ms)
        pause = cooldown_ms(params.base_cooldown_ms, self.level)
        self.tripped_until_ms = now_ms + pause
        self.last_trip_ms = now_ms
        self.level += 1
        self.total_trips += 1
        return pause

    def clear(self) -> None:
        """Operator reset: no cooldown, k back to 0 (``total_trips`` is history and stays)."""
        self.level = 0
        self.tripped_until_ms = 0


def _fresh_states() -> dict[BreakerKind, BreakerState]:
    return {kind: BreakerState(kind) for kind in BreakerKind}


@dataclass(slots=True)
class Trip:
    """A breaker that has just tripped, for logs and the event table."""

    kind: BreakerKind
    at_ms: int
    cooldown_ms: int
    detail: str


@dataclass(slots=True)
class Breakers:
    """The four breakers with their detectors' counters.

    Everything but the error timestamps is persisted by :mod:`coordinator.risk.state` (a restart
    forgets a burst in progress, not a trip).
    """

    states: dict[BreakerKind, BreakerState] = field(default_factory=_fresh_states)
    consecutive_losses: int = 0
    quorum_misses: int = 0
    drawdown_reference: Decimal = Decimal(0)
    error_times: deque[int] = field(default_factory=deque)

    def blocking(self, now_ms: int) -> list[BreakerKind]:
        """The breakers whose cooldown runs at ``now_ms``."""
        return [kind for kind, state in self.states.items() if now_ms < state.tripped_until_ms]

    def _trip(self, kind: BreakerKind, now_ms: int, params: BreakerParams, detail: str) -> Trip | None:
        pause = self.states[kind].trip(now_ms, params)
        return None if pause is None else Trip(kind, now_ms, pause, detail)

    def record_trade(self, net_pnl: Decimal, now_ms: int, params: BreakerParams) -> Trip | None:
        """A closed trade: a loss extends the losing streak, anything else ends it."""
        if net_pnl >= 0:
            self.consecutive_losses = 0
            return None
        self.consecutive_losses += 1
        if self.consecutive_losses < params.consecutive_losses:
            return None
        streak, self.consecutive_losses = self.consecutive_losses, 0
        return self._trip(BreakerKind.CONSECUTIVE_LOSSES, now_ms, params, f"{streak} losing trades in a row")

    def record_equity(self, equity: Decimal, now_ms: int, params: BreakerParams) -> Trip | None:
        """New equity: raise the reference peak, or trip on a drawdown from it."""
        if equity > self.drawdown_reference:
            self.drawdown_reference = equity
            return None
        peak = self.drawdown_reference
        if peak <= 0 or (peak - equity) * 100 < params.max_drawdown_pct * peak:
            return None
        self.drawdown_reference = equity
        drawdown = (peak - equity) * 100 / peak
        return self._trip(
            BreakerKind.DRAWDOWN, now_ms, params, f"equity {equity} is {drawdown:.2f}% below peak {peak}"
        )

    def record_error(self, now_ms: int, params: BreakerParams) -> Trip | None:
        """One exchange error; a burst of them within the window trips."""
        times = self.error_times
        times.append(now_ms)
        while times and times[0] <= now_ms - params.error_window_ms:
            times.popleft()
        if len(times) < params.error_burst:
            return None
        count = len(times)
        times.clear()
        return self._trip(
            BreakerKind.ERROR_BURST, now_ms, params, f"{count} exchange errors in {params.error_window_ms} ms"
        )

    def record_quorum(self, met: bool, now_ms: int, params: BreakerParams) -> Trip | None:
        """One heartbeat: with or without the ensemble's quorum."""
        if met:
            self.quorum_misses = 0
            return None
        self.quorum_misses += 1
        if self.quorum_misses < params.quorum_misses:
            return None
        misses, self.quorum_misses = self.quorum_misses, 0
        return self._trip(BreakerKind.QUORUM_LOSS, now_ms, params, f"{misses} beats in a row without quorum")

    def clear(self, equity: Decimal) -> None:
        """Operator reset: every breaker cleared, counters at 0, drawdown measured from ``equity``."""
        for state in self.states.values():
            state.clear()
        self.consecutive_losses = 0
        self.quorum_misses = 0
        self.drawdown_reference = equity
        self.error_times.clear()
