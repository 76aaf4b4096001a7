"""Walk-forward folds: ordered, non-overlapping, and purged/embargoed (property test)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_server.training.walk_forward import expected_calibration_error, make_folds, score


@settings(max_examples=300, deadline=None)
@given(
    n_bars=st.integers(50, 200_000),
    n_folds=st.integers(1, 10),
    horizon=st.integers(1, 48),
    embargo=st.integers(0, 48),
    cap=st.one_of(st.none(), st.integers(10, 50_000)),
)
def test_folds_never_leak(n_bars: int, n_folds: int, horizon: int, embargo: int, cap: int | None) -> None:
    try:
        folds = make_folds(n_bars, n_folds, horizon, embargo, cap)
    except ValueError:
        assert n_bars // (n_folds + 1) <= horizon + embargo or n_bars < n_folds + 1
        return
    previous_end = 0
    for fold in folds:
        assert 0 <= fold.train_start < fold.train_end
        # Purge + embargo: the last training label window (t .. t + h) ends before the test block.
        assert fold.train_end - 1 + horizon < fold.test_start
        assert fold.test_start - fold.train_end >= horizon + embargo
        # Test blocks are ordered and disjoint, and cover the tail of the span.
        assert fold.test_start >= previous_end
        assert fold.test_start < fold.test_end <= n_bars
        previous_end = fold.test_end
        if cap is not None:
            assert fold.train_end - fold.train_start <= cap
    assert folds[-1].test_end == n_bars


def test_fold_layout_example() -> None:
    folds = make_folds(600, 5, purge_bars=12, embargo_bars=6)
    assert [(f.train_end, f.test_start, f.test_end) for f in folds] == [
        (82, 100, 200),
        (182, 200, 300),
        (282, 300, 400),
        (382, 400, 500),
        (482, 500, 600),
    ]


def test_metrics_on_known_values() -> None:
    y = np.array([0, 0, 1, 1], dtype=float)
    p = np.array([0.1, 0.6, 0.4, 0.9])
    m = score("x", y, p)
    assert m.auc == pytest.approx(0.75)
    assert m.brier == pytest.approx(np.mean((p - y) ** 2))
    assert m.confident_n == 4 and m.confident_hit_rate == pytest.approx(0.5)
    assert expected_calibration_error([1, 0], [0.5, 0.5]) == pytest.approx(0.0)
    assert expected_calibration_error([1, 1], [0.0, 0.0]) == pytest.approx(1.0)
