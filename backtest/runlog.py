"""A backtest's log file: what the coordinator, the venue, the backtest and the training of its models
log during a run, each line stamped with the run's market time.

A backtest replays months in seconds, so the order path's routine messages (a maker entry abandoned
at its deadline, a stop that would trigger at once, a breaker tripped) come by the hundred: on the
terminal they would bury the progress bar, and stamped with the wall clock they would not say when
they happened in the market.  :class:`RunLog` sends them to a file instead, each line carrying the
run's name and the simulated time of the event, and counts the warnings and errors so the command
can say how many there were and where to read them.  While it is open, the records of the loggers
it takes (:data:`LOGGERS` by default) reach neither the root logger's handlers (the terminal) nor
any handler of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

LOGGERS = ("coordinator", "paper_exchange", "backtest", "model_server")
FORMAT = "%(market_time)s %(run)-8s %(levelname)-7s %(name)s: %(message)s"


class _Stamp(logging.Filter):
    """Adds the current run's name and its market time (UTC, to the second) to each record."""

    def __init__(self) -> None:
        super().__init__()
        self.run = "-"
        self.now_ms: Callable[[], int] | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        record.run = self.run
        if self.now_ms is None:  # setting the run up: no market time yet
            record.market_time = "-".ljust(20)
        else:
            moment = datetime.fromtimestamp(self.now_ms() / 1000, tz=timezone.utc)
            record.market_time = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        return True


class _Count(logging.Handler):
    """Counts the records at WARNING and above, by level."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.warnings = 0
        self.errors = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.errors += 1
        else:
            self.warnings += 1


class RunLog:
    """The log file of one ``xylen backtest`` or ``xylen optimize`` (module docstring); a context
    manager.

    ``level`` applies to the file (the loggers are set to it while the log is open, and restored
    after); ``loggers`` are the loggers taken off the terminal (default :data:`LOGGERS`).
    :meth:`run` names the run whose records follow and the clock that stamps them.
    """

    def __init__(self, path: Path, level: int | str = logging.INFO, loggers: Sequence[str] = LOGGERS) -> None:
        self.path = path
        self.level = level
        self.loggers = tuple(loggers)
        self._stamp = _Stamp()
        self._count = _Count()
        self._file: logging.FileHandler | None = None
        self._saved: list[tuple[logging.Logger, int, bool, list[logging.Handler]]] = []

    @property
    def warnings(self) -> int:
        return self._count.warnings

    @property
    def errors(self) -> int:
        return self._count.errors

    def summary(self) -> str:
        """``log: <path> (<n> warnings, <m> errors)``."""
        return f"log: {self.path} ({self.warnings} warnings, {self.errors} errors)"

    def __enter__(self) -> RunLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.path, mode="w", encoding="utf-8")
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(self._stamp)
        self._file = handler
        for name in self.loggers:
            lg = logging.getLogger(name)
            self._saved.append((lg, lg.level, lg.propagate, list(lg.handlers)))
            lg.setLevel(self.level)
            lg.propagate = False
            lg.handlers = [handler, self._count]  # a library's own terminal handler too (optuna's)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for lg, level, propagate, handlers in self._saved:
            lg.handlers = handlers
            lg.setLevel(level)
            lg.propagate = propagate
        self._saved.clear()
        if self._file is not None:
            self._file.close()
            self._file = None

    @contextmanager
    def run(self, name: str, now_ms: Callable[[], int] | None = None) -> Iterator[None]:
        """The records logged inside the block belong to run ``name``, at ``now_ms()`` (none given:
        the run is being set up)."""
        previous = (self._stamp.run, self._stamp.now_ms)
        self._stamp.run, self._stamp.now_ms = name, now_ms
        try:
            yield
        finally:
            self._stamp.run, self._stamp.now_ms = previous
