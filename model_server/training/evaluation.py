"""How honest a model's probabilities are: AUC with a day-block bootstrap interval, log-loss and
Brier against the constant base rate, ECE and a reliability table (and its PNG plot).

* **AUC interval**: rows are grouped by UTC day; each of ``n_boot`` resamples draws as many days as
  there are, with replacement, and takes all rows of each drawn day (so serial correlation inside a
  day stays inside the resample).  The 2.5 % and 97.5 % quantiles of the resampled AUCs are the
  95 % interval.  Rows are sorted once; a resample only changes the row weights.
* **constant**: the base rate of the *training* rows (the one probability a model-free server
  could answer), scored on the same rows; ``*_vs_constant`` is the model's figure minus it
  (negative is better for log-loss and Brier).
* **ECE**: share-weighted mean ``|mean(p) - mean(y)|`` over 15 equal-width probability bins.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from model_server.training.walk_forward import ECE_BINS, expected_calibration_error
from xylen.probability import LOGIT_EPS

F64 = npt.NDArray[np.float64]
N_BOOT: Final = 1000
DAY_MS: Final = 86_400_000


def log_loss(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Mean binary log-loss in nats (probabilities clipped to ``[LOGIT_EPS, 1 - LOGIT_EPS]``)."""
    yy = np.asarray(y, dtype=np.float64)
    pp = np.clip(np.asarray(p, dtype=np.float64), LOGIT_EPS, 1.0 - LOGIT_EPS)
    return float(-np.mean(yy * np.log(pp) + (1.0 - yy) * np.log1p(-pp)))


def brier(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    yy, pp = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    return float(np.mean((pp - yy) ** 2))


def reliability(y: npt.ArrayLike, p: npt.ArrayLike, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Per non-empty equal-width bin: its bounds, row count, mean probability and up share."""
    yy, pp = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    which = np.clip((pp * bins).astype(np.int64), 0, bins - 1)
    out: list[dict[str, float]] = []
    for b in range(bins):
        sel = which == b
        n = int(sel.sum())
        if n:
            out.append(
                {
                    "lo": b / bins,
                    "hi": (b + 1) / bins,
                    "n": float(n),
                    "mean_p": float(pp[sel].mean()),
                    "up_share": float(yy[sel].mean()),
                }
            )
    return out


class _SortedAuc:
    """Weighted AUC (Mann-Whitney, ties counted half) of fixed rows under varying row weights."""

    def __init__(self, y: F64, p: F64) -> None:
        order = np.argsort(p, kind="mergesort")
        self.order = order
        ps = p[order]
        # tie groups: start index of each run of equal probabilities
        self.starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
        self.pos = y[order] > 0.5

    def __call__(self, w: F64 | None = None) -> float:
        ww = np.ones(len(self.order)) if w is None else w[self.order]
        wp = np.add.reduceat(np.where(self.pos, ww, 0.0), self.starts)
        wn = np.add.reduceat(np.where(self.pos, 0.0, ww), self.starts)
        tp, tn = float(wp.sum()), float(wn.sum())
        if tp <= 0 or tn <= 0:
            return float("nan")
        below = np.cumsum(wn) - wn  # negative weight strictly below each group
        return float(np.sum(wp * (below + 0.5 * wn)) / (tp * tn))


def auc(y: npt.ArrayLike, p: npt.ArrayLike) -> float:
    """Area under the ROC curve (NaN with one class)."""
    return _SortedAuc(np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64))()


def day_block_auc_interval(
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    open_time: npt.ArrayLike,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """``level`` bootstrap interval of the AUC resampling whole UTC days (see the module docstring)."""
    yy, pp = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    days = np.asarray(open_time, dtype=np.int64) // DAY_MS
    _, day_index = np.unique(days, return_inverse=True)
    n_days = int(day_index.max()) + 1 if len(day_index) else 0
    if n_days < 2:
        return float("nan"), float("nan")
    scorer = _SortedAuc(yy, pp)
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for i in range(n_boot):
        counts = np.bincount(rng.integers(0, n_days, n_days), minlength=n_days).astype(np.float64)
        values[i] = scorer(counts[day_index])
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    return float(np.quantile(values, tail)), float(np.quantile(values, 1.0 - tail))


@dataclass(frozen=True)
class ProbabilityReport:
    """The calibration figures of one set of predictions (see the module docstring)."""

    name: str
    n: int
    days: int
    start_ms: int
    end_ms: int
    up_share: float
    base_rate: float
    auc: float
    auc_lo: float
    auc_hi: float
    log_loss: float
    log_loss_constant: float
    brier: float
    brier_constant: float
    ece: float
    reliability: list[dict[str, float]]

    @property
    def log_loss_vs_constant(self) -> float:
        return self.log_loss - self.log_loss_constant

    @property
    def brier_vs_constant(self) -> float:
        return self.brier - self.brier_constant

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["log_loss_vs_constant"] = self.log_loss_vs_constant
        out["brier_vs_constant"] = self.brier_vs_constant
        return out

    def flat(self, prefix: str) -> dict[str, float]:
        """Finite scalar figures as ``{prefix}_{key}`` for ``metadata.json``'s ``metrics``."""
        out: dict[str, float] = {}
        for key, value in self.to_dict().items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and key != "name" and math.isfinite(float(value)):
                out[f"{prefix}_{key}"] = float(value)
        return out

    def format(self) -> str:
        return (
            f"{self.name:<22} n={self.n:>7,} days={self.days:>4}  AUC {self.auc:.4f} "
            f"[{self.auc_lo:.4f}, {self.auc_hi:.4f}]  log-loss {self.log_loss:.5f} vs constant "
            f"{self.log_loss_constant:.5f} ({self.log_loss_vs_constant:+.5f})  Brier {self.brier:.5f} vs "
            f"{self.brier_constant:.5f} ({self.brier_vs_constant:+.5f})  ECE {self.ece:.4f}"
        )


def evaluate(
    name: str,
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    open_time: npt.ArrayLike,
    base_rate: float,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> ProbabilityReport:
    """All figures of probabilities ``p`` for labels ``y`` against the constant ``base_rate``."""
    yy, pp = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    ot = np.asarray(open_time, dtype=np.int64)
    const = np.full(len(yy), base_rate)
    lo, hi = day_block_auc_interval(yy, pp, ot, n_boot, seed)
    return ProbabilityReport(
        name=name,
        n=len(yy),
        days=len(np.unique(ot // DAY_MS)),
        start_ms=int(ot.min()) if len(ot) else 0,
        end_ms=int(ot.max()) if len(ot) else 0,
        up_share=float(yy.mean()) if len(yy) else float("nan"),
        base_rate=float(base_rate),
        auc=auc(yy, pp),
        auc_lo=lo,
        auc_hi=hi,
        log_loss=log_loss(yy, pp),
        log_loss_constant=log_loss(yy, const),
        brier=brier(yy, pp),
        brier_constant=brier(yy, const),
        ece=expected_calibration_error(yy, pp),
        reliability=reliability(yy, pp),
    )


# --- reliability plot: a PNG written with numpy and zlib (no plotting library needed) ---

_DIGITS: Final = {  # 3x5 pixel glyphs
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001001001",
    "8": "111101111101111",
    "9": "111101111001111",
    ".": "000000000000010",
}
COLOURS: Final = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189))


def _png_bytes(image: npt.NDArray[np.uint8]) -> bytes:
    height, width, _ = image.shape
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def _text(image: npt.NDArray[np.uint8], text: str, x: int, y: int, scale: int = 2) -> None:
    for k, ch in enumerate(text):
        glyph = _DIGITS.get(ch)
        if glyph is None:
            continue
        for i, bit in enumerate(glyph):
            if bit == "1":
                r, c = divmod(i, 3)
                y0, x0 = y + r * scale, x + (k * 4 + c) * scale
                image[y0 : y0 + scale, x0 : x0 + scale] = 0


def _line(
    image: npt.NDArray[np.uint8], x0: float, y0: float, x1: float, y1: float, colour: Sequence[int]
) -> None:
    steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    xs = np.linspace(x0, x1, steps).round().astype(int)
    ys = np.linspace(y0, y1, steps).round().astype(int)
    h, w, _ = image.shape
    ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    image[ys[ok], xs[ok]] = colour


def reliability_png(
    curves: Sequence[Sequence[dict[str, float]]], size: int = 480, axis: tuple[float, float] | None = None
) -> bytes:
    """A reliability plot (mean probability across, up share up; grey diagonal = perfect) as PNG.

    One coloured curve per reliability table, in :data:`COLOURS` order (blue, red, green,
    purple); marker area grows with the bin's row count.  The axes span ``axis`` (default: the
    range of the bins holding at least 0.5 % of their curve's rows, padded, at least 0.3..0.7;
    points outside are drawn on the border), with tick labels every 0.05 or 0.1.
    """
    # The axes follow the bins holding at least 0.5 % of their curve's rows: a bin of a handful of
    # rows (up share 0 or 1) would otherwise squeeze the informative middle into a few pixels.
    points = [
        (r["mean_p"], r["up_share"])
        for curve in curves
        for r in curve
        if r["n"] >= 0.005 * sum(row["n"] for row in curve)
    ]
    if axis is None:
        lo = min([0.3, *(min(a, b) for a, b in points)])
        hi = max([0.7, *(max(a, b) for a, b in points)])
        axis = (max(0.0, math.floor(lo * 20) / 20), min(1.0, math.ceil(hi * 20) / 20))
    lo, hi = axis
    image = np.full((size, size, 3), 255, dtype=np.uint8)
    left, bottom, top, right = 56, size - 40, 16, size - 16

    def px(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (right - left)

    def py(v: float) -> float:
        return bottom - (v - lo) / (hi - lo) * (bottom - top)

    step = 0.05 if hi - lo <= 0.5 else 0.1
    tick = math.ceil(lo / step - 1e-9) * step
    while tick <= hi + 1e-9:
        label = f"{tick:.2f}"
        _line(image, px(tick), top, px(tick), bottom, (225, 225, 225))
        _line(image, left, py(tick), right, py(tick), (225, 225, 225))
        _text(image, label, int(px(tick)) - 14, bottom + 8)
        _text(image, label, 4, int(py(tick)) - 5)
        tick += step
    _line(image, left, bottom, right, bottom, (0, 0, 0))
    _line(image, left, top, left, bottom, (0, 0, 0))
    _line(image, px(lo), py(lo), px(hi), py(hi), (150, 150, 150))
    for k, curve in enumerate(curves):
        colour = COLOURS[k % len(COLOURS)]
        total = sum(r["n"] for r in curve) or 1.0
        prev: tuple[float, float] | None = None
        for r in curve:
            x, y = px(min(max(r["mean_p"], lo), hi)), py(min(max(r["up_share"], lo), hi))
            if prev is not None:
                _line(image, prev[0], prev[1], x, y, colour)
            radius = int(2 + 6 * math.sqrt(r["n"] / total))
            yi, xi = round(y), round(x)
            image[max(0, yi - radius) : yi + radius + 1, max(0, xi - radius) : xi + radius + 1] = colour
            prev = (x, y)
    return _png_bytes(image)


def write_reliability_png(path: Path, curves: Sequence[Sequence[dict[str, float]]]) -> Path:
    path.write_bytes(reliability_png(curves))
    return path
