"""SIGKILL the order manager at random moments against a paper exchange in its own process.

After every kill the manager restarts and reconciles; then no order with our prefix on the
exchange may be missing from SQLite, none may be duplicated, and every open position must have its
stop on the exchange.  The exchange mixes in replies that may have executed (a 2xx with an
unreadable body, a fill after an acknowledged cancel, 503 "Unknown error").  10 trials here;
``bench/bench_orders_crash.py`` runs 100.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.tests.manager_crash_worker import run_trials
from coordinator.tests.test_exchange_support import candles  # noqa: F401 - fixture


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_and_leaves_no_position_unprotected(
    candles: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    counts = run_trials(10, candles, tmp_path, seed=7)
    print(counts.line(), dict(counts.reconciled))
    assert counts.trials == 10 and counts.kills == 10
    assert counts.orders_placed > 10
    assert counts.unreadable_replies >= 1  # the faults were met, not only configured
    assert (counts.lost, counts.duplicated, counts.unprotected) == (0, 0, 0), counts.problems
