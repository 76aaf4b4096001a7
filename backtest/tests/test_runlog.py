"""The backtest's log file: records of the coordinator, the venue, the backtest and the training of its
models go to the file, stamped with the run's name and market time, counted by level, and kept off
the terminal; the loggers are restored when it closes."""

from __future__ import annotations

import io
import logging
from pathlib import Path

from backtest.runlog import RunLog

MARCH_5 = 1_709_596_800_000  # 2024-03-05T00:00:00Z


def test_records_go_to_the_file_with_market_time_and_not_to_the_terminal(tmp_path: Path) -> None:
    terminal = io.StringIO()
    root_handler = logging.StreamHandler(terminal)
    logging.getLogger().addHandler(root_handler)
    venue = logging.getLogger("paper_exchange.service")
    risk = logging.getLogger("coordinator.risk.manager")
    before = (logging.getLogger("coordinator").level, logging.getLogger("coordinator").propagate)
    now = [MARCH_5]
    try:
        with RunLog(tmp_path / "backtest.log", "INFO") as log:
            with log.run("ensemble"):
                logging.getLogger("model_server.training.train").info("trained m-0")
                venue.info("replay starts")
                with log.run("ensemble", lambda: now[0]):
                    risk.warning("breaker tripped")
                    now[0] += 300_000
                    risk.error("stop would trigger at once")
                    logging.getLogger("coordinator.heartbeat").debug("below the level")
            logging.getLogger("xylen.other").warning("not a backtest logger")
        risk.warning("after the log closed")
    finally:
        logging.getLogger().removeHandler(root_handler)
    lines = (tmp_path / "backtest.log").read_text().splitlines()
    assert lines == [
        "-                    ensemble INFO    model_server.training.train: trained m-0",
        "-                    ensemble INFO    paper_exchange.service: replay starts",
        "2024-03-05T00:00:00Z ensemble WARNING coordinator.risk.manager: breaker tripped",
        "2024-03-05T00:05:00Z ensemble ERROR   coordinator.risk.manager: stop would trigger at once",
    ]
    assert (log.warnings, log.errors) == (1, 1)
    assert log.summary() == f"log: {tmp_path / 'backtest.log'} (1 warnings, 1 errors)"
    shown = terminal.getvalue()
    assert "breaker tripped" not in shown and "replay starts" not in shown and "trained m-0" not in shown
    assert "not a backtest logger" in shown and "after the log closed" in shown  # restored
    coordinator = logging.getLogger("coordinator")
    assert (coordinator.level, coordinator.propagate) == before
    assert not coordinator.handlers


def test_a_library_logger_with_a_terminal_handler_of_its_own_is_taken_off_and_restored(
    tmp_path: Path,
) -> None:
    """Optuna puts its own terminal handler on its logger: while the log is open that handler gets
    nothing, and afterwards it is back as it was."""
    terminal = io.StringIO()
    lib = logging.getLogger("xylen-test-library")
    own = logging.StreamHandler(terminal)
    lib.addHandler(own)
    lib.setLevel(logging.WARNING)
    try:
        with RunLog(tmp_path / "optimize.log", "INFO", ("xylen-test-library",)) as log:
            lib.info("trial 0 finished")
        lib.warning("after the log closed")
        assert lib.handlers == [own] and lib.level == logging.WARNING and lib.propagate
    finally:
        lib.removeHandler(own)
    assert (tmp_path / "optimize.log").read_text().splitlines() == [
        "-                    -        INFO    xylen-test-library: trial 0 finished"
    ]
    assert terminal.getvalue() == "after the log closed\n"
    assert (log.warnings, log.errors) == (0, 0)
