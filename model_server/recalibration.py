"""Online recalibration of a batch model's served probabilities, from its outcomes.

A LightGBM or ONNX model ships calibrated on its training months (``calibration.json``), but
markets move on: on the newest, unseen months of the shipped data the share of up moves is
0.505-0.507 against 0.514-0.517 in training, and a calibration fitted on the past cannot know it.
The outcomes the coordinator sends to ``/retrain`` can.  :class:`OnlineRecalibration` keeps the
model's (calibrated) log-odds ``z`` for the rows whose outcome is known, weighted by a decay
(half-life ``half_life`` outcomes), and fits ``sigmoid(a + b z)`` on them (Platt scaling) with a
Gaussian prior toward the identity (``a = 0``, ``b = 1``) worth ``prior_outcomes`` outcomes, the
same prior the coordinator's ensemble puts on its own recalibration.  A few hundred outcomes move
the map little; it never moves on noise alone; ``|a| <= 1`` and ``0 <= b <= 2`` bound it.

Only outcomes of candles after the model's training span count (an in-sample row would show the
model better than it is).  :func:`prequential` replays the rule over a window with a label delay,
as the coordinator feeds it, which is how ``xylen train`` reports the served figures of its final
test window.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from xylen.probability import LOGIT_EPS, logit_array

if TYPE_CHECKING:
    from model_server.predictors.base import Predictor

F64 = npt.NDArray[np.float64]
PRIOR_OUTCOMES: Final = 1000.0
HALF_LIFE: Final = 5000.0
REFIT_EVERY: Final = 32
MAX_INTERCEPT: Final = 1.0
MAX_SLOPE: Final = 2.0
NEWTON_STEPS: Final = 6
MIN_SPREAD: Final = 1e-3  # floor of the log-odds variance that scales the slope's prior


class OnlineRecalibration:
    """A decayed record of (model log-odds, outcome) and the Platt map fitted on it."""

    def __init__(
        self,
        prior_outcomes: float = PRIOR_OUTCOMES,
        half_life: float = HALF_LIFE,
        refit_every: int = REFIT_EVERY,
    ) -> None:
        if prior_outcomes <= 0 or half_life <= 0 or refit_every < 1:
            raise ValueError("prior_outcomes and half_life must be > 0, refit_every >= 1")
        self.prior = 0.25 * prior_outcomes  # Fisher information of one outcome at p = 0.5
        self.decay = 0.5 ** (1.0 / half_life)
        self.size = math.ceil(8 * half_life)  # older rows weigh under 2**-8: left out
        self.refit_every = refit_every
        self._z = np.zeros(self.size, dtype=np.float64)
        self._y = np.zeros(self.size, dtype=np.float64)
        self._next = 0
        self._filled = 0
        self._since_fit = 0
        self.outcomes = 0
        self.coef = (0.0, 1.0)  # (a, b), swapped in whole: readers never see half a refit
        self._lock = threading.Lock()

    @property
    def intercept(self) -> float:
        return self.coef[0]

    @property
    def slope(self) -> float:
        return self.coef[1]

    def apply_one(self, p: float) -> float:
        """The served probability for the model's probability ``p``."""
        a, b = self.coef
        if a == 0.0 and b == 1.0:
            return p
        q = min(max(p, LOGIT_EPS), 1.0 - LOGIT_EPS)
        return 1.0 / (1.0 + math.exp(-(a + b * math.log(q / (1.0 - q)))))

    def apply(self, p: npt.ArrayLike) -> F64:
        """The served probabilities for the model's probabilities ``p``."""
        a, b = self.coef
        pp = np.asarray(p, dtype=np.float64)
        if a == 0.0 and b == 1.0:
            return pp.copy()
        out: F64 = 1.0 / (1.0 + np.exp(-(a + b * logit_array(pp))))
        return out

    def update(self, p: npt.ArrayLike, y: npt.ArrayLike) -> None:
        """Record outcomes ``y`` (0/1) of rows the model answered ``p`` for (oldest first); refit
        the map after every ``refit_every`` new outcomes."""
        z = logit_array(np.asarray(p, dtype=np.float64).ravel())
        labels = np.asarray(y, dtype=np.float64).ravel()
        if len(z) != len(labels):
            raise ValueError(f"{len(z)} probabilities for {len(labels)} outcomes")
        with self._lock:
            for start in range(0, len(z), self.refit_every):
                chunk = slice(start, start + self.refit_every)
                self._append(z[chunk], labels[chunk])
                if self._since_fit >= self.refit_every:
                    self._refit()

    def _append(self, z: F64, y: F64) -> None:
        for zi, yi in zip(z.tolist(), y.tolist(), strict=True):
            self._z[self._next] = zi
            self._y[self._next] = yi
            self._next = (self._next + 1) % self.size
        self._filled = min(self._filled + len(z), self.size)
        self._since_fit += len(z)
        self.outcomes += len(z)

    def _refit(self) -> None:
        n = self._filled
        order = (self._next - 1 - np.arange(n)) % self.size  # newest first
        z, y = self._z[order], self._y[order]
        w = self.decay ** np.arange(n, dtype=np.float64)
        pa = self.prior
        pb = self.prior * max(float(np.var(z)), MIN_SPREAD)  # the slope's prior in outcomes' units
        a, b = self.coef
        for _ in range(NEWTON_STEPS):
            p = 1.0 / (1.0 + np.exp(-(a + b * z)))
            r = w * (p - y)
            h = w * p * (1.0 - p)
            ga = float(r.sum()) + pa * a
            gb = float(np.dot(r, z)) + pb * (b - 1.0)
            haa = float(h.sum()) + pa
            hab = float(np.dot(h, z))
            hbb = float(np.dot(h, z * z)) + pb
            det = haa * hbb - hab * hab
            a -= (hbb * ga - hab * gb) / det
            b -= (haa * gb - hab * ga) / det
        if math.isfinite(a) and math.isfinite(b):  # always (the fit is strictly convex)
            self.coef = (min(max(a, -MAX_INTERCEPT), MAX_INTERCEPT), min(max(b, 0.0), MAX_SLOPE))
        self._since_fit = 0

    def health(self) -> dict[str, float | int]:
        """The map and its outcomes, for ``/health``."""
        return {
            "recalibration_intercept": self.intercept,
            "recalibration_slope": self.slope,
            "recalibration_outcomes": self.outcomes,
        }


def prequential(
    p: npt.ArrayLike, y: npt.ArrayLike, delay: int, recal: OnlineRecalibration | None = None
) -> F64:
    """What a server would have served for rows ``p`` (time order) whose outcomes ``y`` arrive
    ``delay`` rows later, in batches of ``refit_every``: each answer uses only earlier outcomes."""
    pp = np.asarray(p, dtype=np.float64)
    yy = np.asarray(y, dtype=np.float64)
    recal = recal or OnlineRecalibration()
    batch = recal.refit_every
    served = np.empty(len(pp), dtype=np.float64)
    known = 0  # outcomes handed to the recalibration so far
    for start in range(0, len(pp), batch):
        stop = min(start + batch, len(pp))
        served[start:stop] = recal.apply(pp[start:stop])
        arrived = max(0, stop - delay)  # outcomes known by the end of this batch
        if arrived > known:
            recal.update(pp[known:arrived], yy[known:arrived])
            known = arrived
    return served


class ServedRecalibration:
    """The serving batch model's :class:`OnlineRecalibration`, started afresh for each model version.

    A new version (a start, a hot swap, a rollback) starts from the outcomes kept in the feedback
    buffer for candles after its training span, so a restart loses nothing it had learned.
    Updated from a worker thread (``/retrain``); read by the event loop (``/predict``), which only
    ever sees a whole offset.
    """

    def __init__(self) -> None:
        self.version: str | None = None
        self.recal: OnlineRecalibration | None = None
        self._lock = threading.Lock()

    def current(self, version: str) -> OnlineRecalibration | None:
        """The recalibration of ``version`` (None until its first outcomes)."""
        recal = self.recal
        return recal if self.version == version else None

    def learn(
        self,
        predictor: Predictor,
        since_ms: int,
        rows: Sequence[tuple[int, Mapping[str, float], int]],
        stored: Callable[[], Iterable[tuple[int, Mapping[str, float], int]]],
    ) -> OnlineRecalibration:
        """Record outcome ``rows`` ``(timestamp, features, label)`` for ``predictor``'s version;
        a version seen for the first time starts from ``stored()`` (the feedback buffer, which
        already holds ``rows``).  Rows of candles at or before ``since_ms`` are left out."""
        with self._lock:
            fresh = self.version != predictor.version or self.recal is None
            source = stored() if fresh else rows
            kept = sorted((r for r in source if r[0] > since_ms), key=lambda r: r[0])
            recal = OnlineRecalibration() if fresh or self.recal is None else self.recal
            if kept:
                probs = predictor.predict_many([features for _, features, _ in kept])
                recal.update(probs, [label for _, _, label in kept])
            if fresh:
                self.version, self.recal = predictor.version, recal
            return recal
