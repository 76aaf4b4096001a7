"""Probability calibration applied by every backend: a plain-JSON map from raw to served ``prob_up``.

``xylen train`` fits the map on walk-forward out-of-fold predictions
(:mod:`model_server.training.calibrate`) and writes it as ``calibration.json`` beside the model
files.  Every backend (LightGBM, ONNX, River) loads it through :class:`Predictor` and applies the
same map to its raw probability, so two backends of one model serve the same calibrated
``prob_up`` while the wire's ``raw_score`` stays the log-odds of the uncalibrated probability.

Methods (``p`` the raw probability clipped to ``[LOGIT_EPS, 1 - LOGIT_EPS]``, ``z = logit(p)``):

* ``identity``: ``p``;
* ``constant``: the training base rate, whatever the model says (a model that cannot beat the
  constant on later data serves the constant);
* ``platt``: ``sigmoid(a * z + b)`` (Platt scaling on the log-odds; ``a < 1`` undoes
  over-confidence);
* ``beta``: ``sigmoid(a * ln p - b * ln(1 - p) + c)`` (beta calibration, Kull et al. 2017);
* ``isotonic``: piecewise-linear interpolation through increasing ``(x, y)`` knots, flat beyond
  the ends.

Then a shrink toward the base rate: ``q = (1 - shrink) * q + shrink * base_rate``.  No pickles:
the file holds method, coefficients, knots and the base rate, readable by any language.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args

import numpy as np
import numpy.typing as npt

from xylen.fileio import atomic_write_bytes
from xylen.probability import LOGIT_EPS, clip_probability, logit, sigmoid

CALIBRATION_FILE: Final = "calibration.json"
FORMAT_VERSION: Final = 1
Method = Literal["identity", "constant", "platt", "beta", "isotonic"]
METHODS: Final[tuple[str, ...]] = get_args(Method)
F64 = npt.NDArray[np.float64]


class CalibrationError(ValueError):
    """A ``calibration.json`` that cannot be used (bad method, coefficients or knots)."""


def _clip(p: npt.ArrayLike) -> F64:
    arr = np.asarray(p, dtype=np.float64)
    arr = np.where(np.isnan(arr), 0.5, arr)
    return np.clip(arr, LOGIT_EPS, 1.0 - LOGIT_EPS)


def _sigmoid(z: F64) -> F64:
    out: F64 = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


@dataclass(frozen=True)
class Calibrator:
    """One fitted map from raw to calibrated probability (see the module docstring)."""

    method: Method = "identity"
    base_rate: float = 0.5
    shrink: float = 0.0
    coef: tuple[float, ...] = ()
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    info: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise CalibrationError(
                f"unknown calibration method {self.method!r} (one of {', '.join(METHODS)})"
            )
        if not (0.0 < self.base_rate < 1.0):
            raise CalibrationError(f"base_rate must be in (0, 1), got {self.base_rate}")
        if not (0.0 <= self.shrink <= 1.0):
            raise CalibrationError(f"shrink must be in [0, 1], got {self.shrink}")
        need = {"platt": 2, "beta": 3}.get(self.method, 0)
        if len(self.coef) != need or not all(math.isfinite(c) for c in self.coef):
            raise CalibrationError(
                f"{self.method}: expected {need} finite coefficients, got {list(self.coef)}"
            )
        if self.method == "isotonic":
            xs, ys = np.asarray(self.x, dtype=np.float64), np.asarray(self.y, dtype=np.float64)
            if len(xs) < 1 or len(xs) != len(ys):
                raise CalibrationError("isotonic: x and y must be non-empty and of equal length")
            if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
                raise CalibrationError("isotonic: knots must be finite")
            if np.any(np.diff(xs) <= 0) or np.any(np.diff(ys) < 0):
                raise CalibrationError("isotonic: x must increase strictly and y must not decrease")
            if ys.min() < 0.0 or ys.max() > 1.0:
                raise CalibrationError("isotonic: y must lie in [0, 1]")

    @property
    def is_identity(self) -> bool:
        return self.method == "identity" and self.shrink == 0.0

    def apply(self, p: npt.ArrayLike) -> F64:
        """Calibrated probabilities of raw probabilities ``p`` (any shape, float64 out)."""
        pp = _clip(p)
        if self.method == "identity":
            q = pp
        elif self.method == "constant":
            q = np.full_like(pp, self.base_rate)
        elif self.method == "platt":
            a, b = self.coef
            q = _sigmoid(a * np.log(pp / (1.0 - pp)) + b)
        elif self.method == "beta":
            a, b, c = self.coef
            q = _sigmoid(a * np.log(pp) - b * np.log1p(-pp) + c)
        else:
            q = np.interp(pp, np.asarray(self.x), np.asarray(self.y))
        if self.shrink:
            q = (1.0 - self.shrink) * q + self.shrink * self.base_rate
        return np.asarray(q, dtype=np.float64)

    def apply_one(self, p: float) -> float:
        """:meth:`apply` for one float without numpy (the per-request path)."""
        pp = clip_probability(float(p))
        if self.method == "identity":
            q = pp
        elif self.method == "constant":
            q = self.base_rate
        elif self.method == "platt":
            q = sigmoid(self.coef[0] * logit(pp) + self.coef[1])
        elif self.method == "beta":
            a, b, c = self.coef
            q = sigmoid(a * math.log(pp) - b * math.log1p(-pp) + c)
        else:
            q = _interp_one(pp, self.x, self.y)
        if self.shrink:
            q = (1.0 - self.shrink) * q + self.shrink * self.base_rate
        return q

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "base_rate": self.base_rate,
            "shrink": self.shrink,
            "coef": list(self.coef),
            "x": list(self.x),
            "y": list(self.y),
            "info": dict(self.info),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibrator:
        try:
            version = int(data.get("format_version", FORMAT_VERSION))
            if version != FORMAT_VERSION:
                raise CalibrationError(f"format_version {version} is not {FORMAT_VERSION}")
            return cls(
                method=data["method"],
                base_rate=float(data["base_rate"]),
                shrink=float(data.get("shrink", 0.0)),
                coef=tuple(float(c) for c in data.get("coef", ())),
                x=tuple(float(v) for v in data.get("x", ())),
                y=tuple(float(v) for v in data.get("y", ())),
                info=dict(data.get("info", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CalibrationError):
                raise
            raise CalibrationError(f"malformed calibration: {exc!r}") from exc

    def save(self, model_dir: Path) -> Path:
        """Write ``calibration.json`` into ``model_dir`` atomically (a reader never sees half a file)."""
        path = Path(model_dir) / CALIBRATION_FILE
        atomic_write_bytes(path, self.to_json_bytes())
        return path

    def to_json_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True).encode()


IDENTITY: Final = Calibrator()


def load_calibrator(model_dir: Path | None) -> Calibrator:
    """``model_dir/calibration.json``, or the identity when there is no such file (older models).

    A file that exists but cannot be parsed raises :class:`CalibrationError`: serving uncalibrated
    probabilities from a model that was meant to be calibrated would be silently wrong.
    """
    if model_dir is None:
        return IDENTITY
    path = Path(model_dir) / CALIBRATION_FILE
    if not path.is_file():
        return IDENTITY
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(data, dict):
        raise CalibrationError(f"{path}: not a JSON object")
    try:
        return Calibrator.from_dict(data)
    except CalibrationError as exc:
        raise CalibrationError(f"{path}: {exc}") from exc


def _interp_one(p: float, xs: Sequence[float], ys: Sequence[float]) -> float:
    """``np.interp`` for one point (flat beyond the ends)."""
    if p <= xs[0]:
        return ys[0]
    if p >= xs[-1]:
        return ys[-1]
    i = bisect.bisect_right(xs, p)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    if x1 == x0:
        return y1
    return y0 + (y1 - y0) * (p - x0) / (x1 - x0)
