"""The run's per-candle rows (decisions and equity), kept as preallocated numpy columns.

A row per candle kept as Python tuples, floats, Decimals and per-row strings costs about a
kilobyte a candle, which a year's span (105,000 candles) turns into a hundred megabytes; as columns
of float64/int64 and references to interned strings (a decision's hold reasons, risk answer and
model versions repeat from candle to candle) it costs about 150 bytes.  The frames built at the end
(:meth:`Columns.decisions` and :meth:`Columns.equity`) carry the columns of :mod:`backtest.result`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal

import numpy as np
import pandas as pd

from backtest.result import DECISION_COLUMNS, EQUITY_COLUMNS, MODEL_PREFIX


class Columns:
    """``n`` rows of decisions and equity; row ``k`` is the span's ``k``-th candle."""

    def __init__(self, n: int, model_ids: Sequence[str]) -> None:
        self.model_ids = list(model_ids)
        self._model_index = {m: j for j, m in enumerate(self.model_ids)}
        self.n = 0  # rows written (the highest index + 1)
        self.ts = np.zeros(n, np.int64)
        self.action = np.full(n, "", dtype=object)
        self.probability = np.full(n, math.nan)
        self.confidence = np.full(n, math.nan)
        self.ev = np.full(n, math.nan)
        self.size = np.zeros(n)
        self.reasons = np.full(n, "", dtype=object)
        self.risk = np.full(n, "", dtype=object)
        self.versions = np.full(n, "", dtype=object)
        self.probs = np.full((n, len(self.model_ids)), math.nan)
        self.eq_ts = np.zeros(n, np.int64)
        self.equity_usd = np.zeros(n)
        self.qty = np.zeros(n)
        self.notional = np.zeros(n)
        self.fees = np.zeros(n)
        self.funding = np.zeros(n)
        self._strings: dict[str, str] = {}

    def _intern(self, s: str) -> str:
        return self._strings.setdefault(s, s)

    def decision(
        self,
        k: int,
        ts: int,
        action: str,
        probability: float = math.nan,
        confidence: float = math.nan,
        ev: float = math.nan,
        size: float = 0.0,
        reasons: str = "",
        risk: str = "",
        versions: str = "",
        probs: Mapping[str, float] | None = None,
    ) -> None:
        """Row ``k``'s decision."""
        self.ts[k] = ts
        self.action[k] = self._intern(action)
        self.probability[k] = probability
        self.confidence[k] = confidence
        self.ev[k] = ev
        self.size[k] = size
        self.reasons[k] = self._intern(reasons)
        self.risk[k] = self._intern(risk)
        self.versions[k] = self._intern(versions)
        for m, p in (probs or {}).items():
            j = self._model_index.get(m)
            if j is not None:
                self.probs[k, j] = p
        self.n = max(self.n, k + 1)

    def equity(
        self, k: int, ts: int, equity: Decimal, qty: float, notional: float, fees: Decimal, funding: Decimal
    ) -> None:
        """Row ``k``'s equity at the candle's close."""
        self.eq_ts[k] = ts
        self.equity_usd[k] = float(equity)
        self.qty[k] = qty
        self.notional[k] = notional
        self.fees[k] = float(fees)
        self.funding[k] = float(funding)

    def decisions(self, symbol: str, outcome: np.ndarray) -> pd.DataFrame:  # type: ignore[type-arg]
        """The decisions frame (``outcome``: the label of each row, NaN when unknown)."""
        n = self.n
        data = {
            "ts": self.ts[:n],
            "symbol": np.full(n, symbol, dtype=object),
            "action": self.action[:n],
            "probability": self.probability[:n],
            "confidence": self.confidence[:n],
            "expected_value_bps": self.ev[:n],
            "size_fraction": self.size[:n],
            "reasons": self.reasons[:n],
            "risk": self.risk[:n],
            "outcome": outcome[:n],
            "model_version": self.versions[:n],
        }
        for j, m in enumerate(self.model_ids):
            data[MODEL_PREFIX + m] = self.probs[:n, j]
        columns = list(DECISION_COLUMNS) + [MODEL_PREFIX + m for m in self.model_ids]
        return pd.DataFrame(data, columns=columns, copy=False)  # over the columns: no second copy

    def equity_frame(self) -> pd.DataFrame:
        """The equity frame."""
        n = self.n
        values = (self.eq_ts, self.equity_usd, self.qty, self.notional, self.fees, self.funding)
        return pd.DataFrame(dict(zip(EQUITY_COLUMNS, (v[:n] for v in values), strict=True)), copy=False)


def outcomes(close: np.ndarray, first: int, stop: int, horizon: int) -> np.ndarray:  # type: ignore[type-arg]
    """The label of each span row ``first..stop``: 1.0 when the close ``horizon`` rows later is
    higher, 0.0 when not, NaN when the span ends first."""
    i = np.arange(first, stop)
    j = i + horizon
    out = np.full(len(i), math.nan)
    ok = j < stop
    out[ok] = (close[j[ok]] > close[i[ok]]).astype(np.float64)
    return out
