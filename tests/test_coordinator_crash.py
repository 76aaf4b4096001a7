"""The coordinator process killed while it trades: the short version of ``bench/bench_coordinator_crash.py``.

Real processes on 127.0.0.1 (the paper exchange, a LightGBM model server, ``xylen run``), started and
checked by ``tests/crash_support.py``: each trial kills the coordinator, compares the paper
exchange's own database with the coordinator's journal before any repair (nothing lost, no phantom,
no duplicate), restarts it and checks again after its reconciliation and one monitor round, when no
position may be left without a stop.  One test per scenario, a few trials each:

- ``kill``: SIGKILL at a random moment or the moment a new entry is written (2 trials);
- ``restore``: ``xylen db backup`` while running, trade on; ``xylen db restore`` must be refused
  while the coordinator runs; SIGTERM, restore, restart: the positions opened after the backup
  are still protected (1 trial);
- ``sigterm``: SIGTERM while a stop is in flight (the exchange delays ``/fapi/v1/algoOrder``):
  exit 0 only with every position protected (1 trial).

The scenario with another client's weight on the IP runs in the benchmark (it needs minutes of
pressure to mean something).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from crash_support import Figures, prepare_model, run_scenario

from coordinator.tests.test_exchange_support import candles  # noqa: F401 - fixture

SPEED = 600.0
TRIALS = {"kill": 2, "restore": 1, "sigterm": 1}


@pytest.fixture(scope="module")
def model(btc_5m_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_model(btc_5m_path, tmp_path_factory.mktemp("crash-model"))


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(TRIALS))
def test_coordinator_killed_while_trading_loses_nothing_and_leaves_no_position_unprotected(
    scenario: str,
    candles: Path,  # noqa: F811 - fixture
    model: Path,
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    figures: Figures = run_scenario(
        scenario, TRIALS[scenario], tmp_path, candles, model, SPEED, seed=7, log=lines.append
    )
    print(*lines, sep="\n")
    report = "\n".join([figures.line(), *figures.problems[:20]])
    assert figures.failures == 0, report
    assert figures.trials == TRIALS[scenario], report
    assert figures.trades > 0, report  # it traded: the checks had something to check
    if scenario == "sigterm":
        assert figures.stops_in_flight == TRIALS[scenario], report
