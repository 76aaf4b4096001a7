"""Wall-clock time as Xylen writes it everywhere: integer milliseconds since the Unix epoch, UTC."""

from __future__ import annotations

import time


def wall_ms() -> int:
    """The machine's clock now, in whole ms (``time_ns`` avoids the float rounding of ``time()``)."""
    return time.time_ns() // 1_000_000
