"""Probabilities and log-odds: one clipping rule and one ``logit`` for the whole system.

A probability is clipped to ``[eps, 1 - eps]`` before its log-odds are taken, so 0 and 1 stay
finite; NaN (a model that failed silently) becomes 0.5, no opinion, never a NaN that spreads into
a pooled vote.  The model servers' ``raw_score`` uses the default :data:`LOGIT_EPS`; the ensemble
passes its own, wider floor (a probability it will act on is never more confident than that).
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

LOGIT_EPS: Final = 1e-7


def clip_probability(p: float, eps: float = LOGIT_EPS) -> float:
    """``p`` clipped to ``[eps, 1 - eps]``; NaN becomes 0.5."""
    if math.isnan(p):
        return 0.5
    return eps if p < eps else (1.0 - eps if p > 1.0 - eps else p)


def logit(p: float, eps: float = LOGIT_EPS) -> float:
    """Log-odds of ``p`` after :func:`clip_probability`."""
    q = clip_probability(p, eps)
    return math.log(q / (1.0 - q))


def logit_array(p: npt.ArrayLike, eps: float = LOGIT_EPS) -> npt.NDArray[np.float64]:
    """:func:`logit` of every element (float64), with the same clipping and NaN rule."""
    q = np.clip(np.nan_to_num(np.asarray(p, dtype=np.float64), nan=0.5), eps, 1.0 - eps)
    out: npt.NDArray[np.float64] = np.log(q) - np.log1p(-q)
    return out


def sigmoid(z: float) -> float:
    """The inverse of :func:`logit`, without overflow for large ``|z|``."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)
