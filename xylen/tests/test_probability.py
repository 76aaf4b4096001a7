"""``xylen.probability``: the one clipping rule and log-odds used by model servers and the ensemble."""

from __future__ import annotations

import math

import pytest

from xylen.probability import LOGIT_EPS, clip_probability, logit, sigmoid


def test_clip_keeps_inner_values_and_bounds_the_ends() -> None:
    assert clip_probability(0.3) == 0.3
    assert clip_probability(0.0) == LOGIT_EPS
    assert clip_probability(1.0) == 1.0 - LOGIT_EPS
    assert clip_probability(0.995, eps=0.01) == 0.99
    assert clip_probability(-3.0, eps=0.01) == 0.01


def test_nan_is_no_opinion() -> None:
    assert clip_probability(math.nan) == 0.5
    assert logit(math.nan) == 0.0


def test_logit_is_finite_at_the_ends_and_inverts_sigmoid() -> None:
    assert math.isfinite(logit(0.0)) and math.isfinite(logit(1.0))
    assert logit(1.0) == pytest.approx(-logit(0.0))
    assert logit(1.0) == pytest.approx(math.log((1 - LOGIT_EPS) / LOGIT_EPS))
    for p in (0.02, 0.3, 0.5, 0.77, 0.98):
        assert sigmoid(logit(p)) == pytest.approx(p, rel=1e-12)
    assert logit(0.999, eps=0.01) == pytest.approx(math.log(0.99 / 0.01))


def test_sigmoid_does_not_overflow() -> None:
    assert sigmoid(1000.0) == 1.0
    assert sigmoid(-1000.0) == 0.0
