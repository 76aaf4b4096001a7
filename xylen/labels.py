"""The one label definition: which way the close moved over the horizon, and the no-trade band.

Training (``xylen train``) and the coordinator (the outcomes it sends to a model server's
``/retrain``, and those its ensemble learns from) label with these functions, so a model learns
online exactly the question it was trained on.

Definition, for the decision at the close of bar ``t`` (its features use bars ``<= t``):

* forward return ``r = close[t + h] / close[t] - 1`` over ``h = horizon_bars`` bars (entry at the
  close of bar ``t``, exit at the close ``h`` bars later);
* label ``1`` (up) when ``r > 0``, ``0`` (down) otherwise: :func:`direction`;
* the **no-trade band** ``band`` (a fraction; ``xylen train`` uses the taker round trip, 12 bps
  with the default fees and slippage): an outcome with ``|r| <= band`` is a move that does not pay
  the round trip.  It keeps its label, but it is *left out* of the rows a model learns from -
  training drops it, and the coordinator does not send it to that model's ``/retrain``
  (:func:`learnable`).  The metrics therefore describe "given a move worth trading, which way".

A model's definition is written into its ``metadata.json`` (``horizon_bars``, ``base_interval``,
``label_band``) and served by its ``/health``, where the coordinator reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from xylen.data.schema import interval_ms

F64 = npt.NDArray[np.float64]
UP: Final = 1
DOWN: Final = 0
DEFINITION: Final = (
    "label = 1 if close[t+h] > close[t] else 0; rows with |close[t+h]/close[t] - 1| <= band are not learned"
)


@dataclass(frozen=True)
class LabelSpec:
    """One model's label: horizon in bars of ``interval``, and the no-trade band (a fraction)."""

    horizon_bars: int
    interval: str = "5m"
    band: float = 0.0

    def __post_init__(self) -> None:
        if self.horizon_bars < 1:
            raise ValueError(f"horizon_bars must be >= 1, got {self.horizon_bars}")
        if not self.band >= 0:
            raise ValueError(f"band must be >= 0, got {self.band}")
        interval_ms(self.interval)

    @property
    def horizon_ms(self) -> int:
        """The horizon in milliseconds: the exit is the close ``horizon_ms`` after the decision."""
        return self.horizon_bars * interval_ms(self.interval)

    def to_dict(self) -> dict[str, Any]:
        return {
            "definition": DEFINITION,
            "horizon_bars": self.horizon_bars,
            "interval": self.interval,
            "band": self.band,
            "band_bps": round(self.band * 10_000, 4),
        }


def direction(entry: float, exit_price: float) -> int:
    """1 when the close after the horizon is above the entry close, else 0."""
    return UP if exit_price > entry else DOWN


def learnable(entry: float, exit_price: float, band: float) -> bool:
    """True when the move is outside the no-trade band (``|exit / entry - 1| > band``)."""
    if not entry > 0:
        return False
    return abs(exit_price / entry - 1.0) > band


def forward_return(
    close: npt.ArrayLike,
    horizon_bars: int,
    open_time: npt.ArrayLike | None = None,
    step_ms: int | None = None,
) -> F64:
    """``close[t + h] / close[t] - 1``; NaN where ``t + h`` is missing or the window has a gap.

    With ``open_time`` and ``step_ms`` given, a row is valid only when
    ``open_time[t + h] - open_time[t] == h * step_ms`` (no missing candle inside the horizon).
    """
    if horizon_bars < 1:
        raise ValueError(f"horizon_bars must be >= 1, got {horizon_bars}")
    c = np.asarray(close, dtype=np.float64)
    out = np.full(len(c), np.nan, dtype=np.float64)
    if len(c) <= horizon_bars:
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:-horizon_bars] = c[horizon_bars:] / c[:-horizon_bars] - 1.0
    if open_time is not None and step_ms is not None:
        ot = np.asarray(open_time, dtype=np.int64)
        gap = (ot[horizon_bars:] - ot[:-horizon_bars]) != horizon_bars * step_ms
        out[:-horizon_bars][gap] = np.nan
    out[~np.isfinite(out)] = np.nan
    return out


def direction_labels(returns: npt.ArrayLike, band: float) -> F64:
    """The labels of forward returns: :func:`direction`, NaN inside the band or where unknown.

    Elementwise the same as ``direction(entry, exit)`` where ``learnable(entry, exit, band)``.
    """
    if band < 0:
        raise ValueError(f"band must be >= 0, got {band}")
    r = np.asarray(returns, dtype=np.float64)
    out = np.full(len(r), np.nan, dtype=np.float64)
    keep = np.abs(r) > band  # False for NaN
    out[keep] = (r[keep] > 0.0).astype(np.float64)
    return out
