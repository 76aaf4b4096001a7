"""Prequential scoring of an online model: replay candles in time order as the coordinator would.

The coordinator asks a model server about each closed candle, labels the candle ``horizon`` candles
later (``close[t + horizon] > close[t]``) and posts the labelled outcomes to ``/retrain`` in batches.
:func:`replay` does the same to a :class:`~model_server.predictors.base.Predictor` in one process:
each candle is answered first, its outcome is delivered ``delay`` candles later, and outcomes are
learned a batch at a time.  Every answer is then scored against its label (log-loss, in nats) beside
a constant predictor: the running base rate of the outcomes delivered so far (a decayed count), which
is what a model with no skill can always answer.  Used by the tests on real data and by
``bench/bench_river.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from xylen.probability import clip_probability

if TYPE_CHECKING:  # the predictors import this module
    from model_server.predictors.base import Predictor

F64 = npt.NDArray[np.float64]
LOSS_EPS = 1e-15  # log-loss of a probability of exactly 0 or 1 stays finite (and huge)


class BaseRate:
    """The constant predictor: a decayed count of ups among the outcomes seen so far.

    ``half_life`` outcomes halve the weight of the past; the count starts from a prior of
    ``prior_weight`` pseudo-outcomes at 0.5, so the first answers are 0.5 and one outcome never
    pushes the rate to 0 or 1.
    """

    def __init__(self, half_life: float = 5000.0, prior_weight: float = 20.0) -> None:
        self.decay = 0.5 ** (1.0 / half_life)
        self.ups = prior_weight / 2.0
        self.total = prior_weight

    @property
    def rate(self) -> float:
        return self.ups / self.total

    def update(self, y: int) -> None:
        self.ups = self.ups * self.decay + float(y)
        self.total = self.total * self.decay + 1.0


def log_loss(p: float, y: int) -> float:
    """Log-loss (nats) of the probability ``p`` of "up" when the outcome was ``y``."""
    q = clip_probability(p, LOSS_EPS)
    return -math.log(q if y else 1.0 - q)


@dataclass(frozen=True)
class Window:
    """One window of answers: the model's mean log-loss beside the constant's."""

    start: int
    size: int
    model: float
    constant: float
    half: float  # always answering 0.5
    extreme: int  # answers outside [0.05, 0.95]

    @property
    def excess(self) -> float:
        """How many nats per answer the model loses to the constant (negative: it wins)."""
        return self.model - self.constant


@dataclass(frozen=True)
class Replay:
    """Every answer of a replay with its label and the constant's answer, in time order."""

    probs: F64
    constants: F64
    labels: npt.NDArray[np.int8]

    def losses(self, probs: F64) -> F64:
        q = np.clip(probs, LOSS_EPS, 1.0 - LOSS_EPS)
        return np.where(self.labels == 1, -np.log(q), -np.log1p(-q))

    def windows(self, size: int = 5000, skip: int = 0) -> list[Window]:
        """Consecutive full windows of ``size`` answers, after the first ``skip`` answers."""
        model, constant = self.losses(self.probs), self.losses(self.constants)
        half = self.losses(np.full(len(self.probs), 0.5))
        out: list[Window] = []
        for start in range(skip, len(self.probs) - size + 1, size):
            part = slice(start, start + size)
            p = self.probs[part]
            out.append(
                Window(
                    start=start,
                    size=size,
                    model=float(model[part].mean()),
                    constant=float(constant[part].mean()),
                    half=float(half[part].mean()),
                    extreme=int(((p < 0.05) | (p > 0.95)).sum()),
                )
            )
        return out

    @property
    def extreme_share(self) -> float:
        """The share of answers outside [0.05, 0.95]."""
        if not len(self.probs):
            return 0.0
        return float(((self.probs < 0.05) | (self.probs > 0.95)).mean())


def replay(
    predictor: Predictor,
    rows: Sequence[Mapping[str, float]],
    labels: Sequence[int] | npt.NDArray[np.integer],
    delay: int = 12,
    batch: int = 32,
    constant: BaseRate | None = None,
) -> Replay:
    """Answer each row in order, learn its label ``delay`` rows later in batches of ``batch``.

    ``labels[t]`` is the outcome of ``rows[t]``; it is delivered after the answer for row
    ``t + delay`` (the coordinator knows it only once that candle has closed), and the predictor
    learns the delivered outcomes once ``batch`` of them are waiting, as ``/retrain`` does.
    """
    if len(rows) != len(labels):
        raise ValueError(f"{len(rows)} rows but {len(labels)} labels")
    base = constant or BaseRate()
    n = len(rows)
    probs = np.empty(n, dtype=np.float64)
    constants = np.empty(n, dtype=np.float64)
    waiting: list[int] = []
    for t in range(n):
        probs[t] = predictor.predict_one(rows[t])
        constants[t] = base.rate
        done = t - delay
        if done >= 0:
            waiting.append(done)
        if len(waiting) >= batch:
            for k in waiting:
                predictor.learn_one(rows[k], int(labels[k]))
                base.update(int(labels[k]))
            waiting.clear()
    return Replay(probs, constants, np.asarray(labels, dtype=np.int8))


class PrequentialScore:
    """Decayed mean log-loss of answers given before their outcome was learned (predict, then learn).

    Two answers are scored on every outcome: the model's and the constant's, with the same decay
    (``half_life`` outcomes), so their difference says whether the model beats the base rate lately.
    """

    def __init__(self, half_life: float = 5000.0) -> None:
        self.decay = 0.5 ** (1.0 / half_life)
        self.weight = 0.0
        self.model_sum = 0.0
        self.constant_sum = 0.0
        self.count = 0

    def update(self, p_model: float, p_constant: float, y: int) -> None:
        d = self.decay
        self.weight = self.weight * d + 1.0
        self.model_sum = self.model_sum * d + log_loss(p_model, y)
        self.constant_sum = self.constant_sum * d + log_loss(p_constant, y)
        self.count += 1

    @property
    def model(self) -> float | None:
        return self.model_sum / self.weight if self.count else None

    @property
    def constant(self) -> float | None:
        return self.constant_sum / self.weight if self.count else None


class PlattCalibrator:
    """Online Platt scaling on the model's own prequential record, shrunk toward the base rate.

    The record holds the last ``size`` pairs (raw log-odds given before the outcome was learned,
    outcome).  A refit standardises the raw log-odds over the record (mean ``m``, spread ``s``),
    clips them to ``[-clip, clip]`` and fits ``p = sigmoid(a + b * u)`` by Newton steps with a
    Gaussian prior: ``b`` toward 0 and ``a`` toward the log-odds of the base rate, each worth
    ``prior_outcomes`` outcomes.  So until the record shows skill the answer stays the base rate,
    a drifting raw scale cannot produce extreme answers (``|logit| <= |a| + clip * |b|``), and
    ``b`` grows only as far as the evidence carries it.
    """

    def __init__(self, size: int = 5000, prior_outcomes: float = 4000.0, clip: float = 3.0) -> None:
        self.size = size
        self.prior = 0.25 * prior_outcomes  # Fisher information of one outcome at p = 0.5, unit spread
        self.clip = clip
        self.z = np.zeros(size, dtype=np.float64)
        self.y = np.zeros(size, dtype=np.float64)
        self.filled = 0
        self.next = 0
        self.a = 0.0
        self.b = 0.0
        self.m = 0.0
        self.s = 1.0

    def add(self, z: float, y: int) -> None:
        self.z[self.next] = z
        self.y[self.next] = float(y)
        self.next = (self.next + 1) % self.size
        self.filled = min(self.filled + 1, self.size)

    def refit(self, base_logit: float, iterations: int = 6) -> None:
        n = self.filled
        if n < 2:
            return
        z, y = self.z[:n], self.y[:n]
        m = float(z.mean())
        s = float(z.std())
        if not math.isfinite(s) or s < 1e-9:
            self.m, self.s, self.a, self.b = m, 1.0, base_logit, 0.0
            return
        u = np.clip((z - m) / s, -self.clip, self.clip)
        a, b = self.a, self.b
        for _ in range(iterations):
            p = 1.0 / (1.0 + np.exp(-(a + b * u)))
            w = p * (1.0 - p)
            r = p - y
            ga = float(r.sum()) + self.prior * (a - base_logit)
            gb = float((r * u).sum()) + self.prior * b
            haa = float(w.sum()) + self.prior
            hab = float((w * u).sum())
            hbb = float((w * u * u).sum()) + self.prior
            det = haa * hbb - hab * hab
            a -= (hbb * ga - hab * gb) / det
            b -= (haa * gb - hab * ga) / det
        if not (math.isfinite(a) and math.isfinite(b)):  # never expected (the fit is strictly convex)
            a, b = base_logit, 0.0
        self.a, self.b, self.m, self.s = a, b, m, s

    def calibrated_logit(self, z: float) -> float:
        """Calibrated log-odds for the raw log-odds ``z``."""
        u = max(-self.clip, min(self.clip, (z - self.m) / self.s))
        return self.a + self.b * u


def labelled_rows(candles: object, horizon: int = 12) -> tuple[list[dict[str, float]], npt.NDArray[np.int8]]:
    """Feature rows of ``candles`` (a candle DataFrame, oldest first) with the coordinator's label.

    The label of candle ``t`` is ``close[t + horizon] > close[t]``; rows whose features are not
    all defined yet (the warm-up of the longest indicator) and the last ``horizon`` rows (no label
    yet) are dropped.  Features come from the one feature engine, as float32 like the wire's.
    """
    import pandas as pd

    from xylen.features import FEATURE_NAMES, compute_features

    if not isinstance(candles, pd.DataFrame):
        raise TypeError("candles must be a DataFrame of candles")
    features = compute_features(candles)[list(FEATURE_NAMES)]
    close = candles["close"].to_numpy(dtype=np.float64)
    labels = np.zeros(len(close), dtype=np.int8)
    labels[:-horizon] = close[horizon:] > close[:-horizon]
    keep = features.notna().all(axis=1).to_numpy()
    keep[-horizon:] = False
    rows = features[keep].astype(np.float32).astype(np.float64).to_dict("records")
    return [{str(k): float(v) for k, v in r.items()} for r in rows], labels[keep]
