"""The injected clock: live, paper and backtests run the same code on different time.

Every clock answers :meth:`Clock.now_ms` (int ms UTC, the coordinator's notion of "now") and sleeps
in clock seconds with :meth:`Clock.sleep` / :meth:`Clock.sleep_until`:

* :class:`WallClock`: real time.
* :class:`AcceleratedClock`: ``speed`` x real time from an anchor (the paper exchange's replay time at
  start, so both agree), e.g. ``speed=300`` turns a 5-minute beat into one wall second.
* :class:`InstantClock`: a virtual time that only moves when someone sleeps or calls
  :meth:`InstantClock.advance`; a sleep returns at once (after yielding to the loop), so a loop of
  beats runs as fast as the loop runs (tests, backtests).

:meth:`Clock.wall_seconds` converts a clock duration into real seconds (``inf`` for the instant
clock, whose beats take no real time at all): network timeouts are always real seconds.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Protocol

from xylen.config.schema import HeartbeatConfig
from xylen.timeutil import wall_ms


class Clock(Protocol):
    """What the coordinator asks of time."""

    def now_ms(self) -> int:
        """The current time in int ms UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of clock time pass."""
        ...

    async def sleep_until(self, ts_ms: int) -> None:
        """Return once the clock reads ``ts_ms`` or later."""
        ...

    def wall_seconds(self, seconds: float) -> float:
        """The real duration of ``seconds`` of clock time."""
        ...


class WallClock:
    """Real time."""

    def now_ms(self) -> int:
        return wall_ms()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, ts_ms: int) -> None:
        await self.sleep((ts_ms - self.now_ms()) / 1000.0)

    def wall_seconds(self, seconds: float) -> float:
        return seconds


class AcceleratedClock:
    """``speed`` x real time since it was made, starting at ``start_ms`` (default: now)."""

    def __init__(self, speed: float, start_ms: int | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.speed = speed
        self._anchor_ms = wall_ms() if start_ms is None else start_ms
        self._anchor_mono = time.monotonic()

    def now_ms(self) -> int:
        return self._anchor_ms + int((time.monotonic() - self._anchor_mono) * 1000.0 * self.speed)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    async def sleep_until(self, ts_ms: int) -> None:
        # a loop, because the event loop may wake us a hair early in clock terms
        while (remaining := ts_ms - self.now_ms()) > 0:
            await asyncio.sleep(remaining / 1000.0 / self.speed)

    def wall_seconds(self, seconds: float) -> float:
        return seconds / self.speed


class InstantClock:
    """Virtual time: sleeping moves it forward at once (after one yield to the event loop)."""

    def __init__(self, start_ms: int = 0) -> None:
        self._now_ms = start_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, ms: int) -> None:
        """Move the time ``ms`` forward (never back)."""
        self._now_ms += max(0, ms)

    def set(self, ts_ms: int) -> None:
        """Move the time to ``ts_ms`` if that is later than now."""
        self._now_ms = max(self._now_ms, ts_ms)

    async def sleep(self, seconds: float) -> None:
        self.advance(round(max(0.0, seconds) * 1000.0))
        await asyncio.sleep(0)

    async def sleep_until(self, ts_ms: int) -> None:
        self.set(ts_ms)
        await asyncio.sleep(0)

    def wall_seconds(self, seconds: float) -> float:
        return math.inf


def make_clock(config: HeartbeatConfig, start_ms: int | None = None) -> Clock:
    """The clock ``heartbeat.clock`` names; accelerated and instant start at ``start_ms`` if given."""
    if config.clock == "wall":
        return WallClock()
    if config.clock == "accelerated":
        return AcceleratedClock(config.speed, start_ms)
    return InstantClock(wall_ms() if start_ms is None else start_ms)
