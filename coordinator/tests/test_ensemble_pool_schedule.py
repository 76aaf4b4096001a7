"""The pool's recalibration on a schedule and its quality figures as running sums.

``ensemble.pool_refit_every = N`` refits the pool's ``σ(a + b·z)`` at every N-th outcome instead of
every outcome.  On the real-data replay of :mod:`coordinator.tests.test_ensemble_lean` an ensemble
with N = 32 is run beside one with N = 1 (every outcome refitted, checked against the golden file
there): the refit happens exactly at the multiples of N and gives then exactly the N = 1 map; between
refits the tracked map stays close, and the probabilities answered differ only in the fourth
decimal.  The quality figures kept as running sums over the window equal those computed directly
from the window with numpy (as the ensemble computed them before), through many turns of the ring.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from coordinator.ensemble import Outcome
from coordinator.ensemble.calibration import EPS, expected_calibration_error
from coordinator.ensemble.pool import ECE_BINS, FloatArray, PoolCalibration, PoolQuality
from coordinator.tests.test_ensemble_lean import HORIZON, replay, replay_ensemble

EVERY = 32


def test_refit_every_n_outcomes_changes_answers_only_slightly_on_real_replay(btc_5m_path: Path) -> None:
    each = replay_ensemble("skill", pool_refit_every=1)
    sparse = replay_ensemble("skill", pool_refit_every=EVERY)
    pending: list[Outcome] = []
    gaps: list[float] = []
    map_gaps: list[float] = []
    flips = 0
    slopes: list[float] = []
    for votes, market, label in replay(btc_5m_path):
        while pending and pending[0].timestamp_ms <= market.timestamp_ms:
            outcome = pending.pop(0)
            each.observe(outcome)
            sparse.observe(outcome)
            n = sparse.pool_outcomes
            assert each.pool_calibration.fits == n and sparse.pool_calibration.fits == n // EVERY
            fitted = (each.pool_calibration.a, each.pool_calibration.b)
            slopes.append(fitted[1])
            tracked = (sparse.pool_calibration.a, sparse.pool_calibration.b)
            if n % EVERY == 0:  # refitted on the same window (the pooled z do not depend on the map)
                assert tracked == fitted, n
            else:
                map_gaps.append(max(abs(t - f) for t, f in zip(tracked, fitted, strict=True)))
            assert sparse.quality().n == each.quality().n == min(n, each.window)
        a, b = each.decide(votes, market), sparse.decide(votes, market)
        gaps.append(abs(a.probability - b.probability))
        flips += a.action is not b.action
        pending.append(Outcome.from_votes(votes, market, label, market.timestamp_ms + HORIZON * 300_000))
    assert each.pool_outcomes > 2_900 and max(slopes) - min(slopes) > 1.0  # the map moved a lot
    q1, q32 = each.quality(), sparse.quality()
    print(
        f"\nN=1 vs N={EVERY}: max |dp| {max(gaps):.2e}, median {float(np.median(gaps)):.2e},"
        f" max |d(a, b)| between refits {max(map_gaps):.2e}, actions differing {flips}/{len(gaps)},"
        f" log-loss {q1.log_loss:.6f} vs {q32.log_loss:.6f}"
    )
    assert max(gaps) < 1e-3 and float(np.mean(gaps)) > 0.0  # different, but only slightly
    assert abs(q1.log_loss - q32.log_loss) < 1e-4


def _direct(quality: PoolQuality) -> tuple[float, float, float, float, float]:
    """The figures as computed before the running sums: numpy over the window's columns."""
    _, p, base, y = quality.columns()

    def log_loss(q: FloatArray) -> float:
        q = np.clip(q, EPS, 1.0 - EPS)
        return float(-np.mean(y * np.log(q) + (1.0 - y) * np.log1p(-q)))

    return (
        log_loss(p),
        log_loss(base),
        float(np.mean((p - y) ** 2)),
        float(np.mean((base - y) ** 2)),
        expected_calibration_error(p, y, bins=ECE_BINS),
    )


def _direct_bins(quality: PoolQuality) -> list[tuple[float, float, int]]:
    _, p, _, y = quality.columns()
    index = np.minimum((p * ECE_BINS).astype(np.int64), ECE_BINS - 1)
    return [
        (float(p[index == k].mean()), float(y[index == k].mean()), int((index == k).sum()))
        for k in range(ECE_BINS)
        if (index == k).any()
    ]


def test_running_sums_equal_the_direct_figures_through_many_turns_of_the_window() -> None:
    rng = np.random.default_rng(7)
    quality = PoolQuality(window=97)
    calibration = PoolCalibration(prior_outcomes=1000.0, a=0.1, b=0.9)
    edges = [EPS, 1.0 - EPS, 0.5, 2.0 / ECE_BINS, 7.0 / ECE_BINS]  # the clipping bounds and bin edges
    worst = 0.0
    for i in range(20_000):
        prob = edges[i % len(edges)] if i % 9 == 0 else float(rng.uniform(EPS, 1.0 - EPS))
        base = float(rng.choice([0.0, 1.0, rng.uniform(0.2, 0.8)]))  # 0 and 1 are clipped in the log-loss
        label = int(rng.random() < prob)
        quality.push(math.log(prob / (1.0 - prob)), prob, base, label)
        if i % 37 and i < 19_900:
            continue
        snap = quality.snapshot(calibration)
        got = (snap.log_loss, snap.constant_log_loss, snap.brier, snap.constant_brier, snap.ece)
        want = _direct(quality)
        worst = max(worst, *(abs(g - w) for g, w in zip(got, want, strict=True)))
        assert snap.n == len(quality) == min(i + 1, 97)
        assert (snap.calibration_a, snap.calibration_b) == (0.1, 0.9)
        bins, direct_bins = quality.reliability(), _direct_bins(quality)
        assert [b[2] for b in bins] == [b[2] for b in direct_bins]
        for (p, y, _), (dp, dy, _) in zip(bins, direct_bins, strict=True):
            assert abs(p - dp) < 1e-12 and abs(y - dy) < 1e-12
    print(f"\nlargest difference from the direct figures: {worst:.1e}")
    assert worst < 1e-12


def test_empty_window_reports_nan_and_the_map_in_use() -> None:
    snap = PoolQuality(window=10).snapshot(PoolCalibration(prior_outcomes=10.0))
    assert snap.n == 0 and math.isnan(snap.log_loss) and math.isnan(snap.ece)
    assert (snap.calibration_a, snap.calibration_b) == (0.0, 1.0)
    assert PoolQuality(window=10).reliability() == []
