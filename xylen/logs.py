"""Logging set-up: readable text in a terminal, JSON lines in services."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (ms UTC), level, logger, msg, and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": int(record.created * 1000),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)sZ %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
        self.converter = time.gmtime  # timestamps in UTC, marked with Z


def setup_logging(level: str = "INFO", fmt: str = "auto", file: Path | None = None) -> None:
    """Configure the root logger; a later call replaces the handlers of an earlier one.

    ``fmt`` chooses the terminal's format (``auto``: text on a terminal, JSON lines otherwise);
    ``file``, when given, also receives every record as JSON lines (appended; its folder is made).
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers[0].setFormatter(JsonFormatter() if use_json else TextFormatter())
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        to_file = logging.FileHandler(file, encoding="utf-8")
        to_file.setFormatter(JsonFormatter())
        handlers.append(to_file)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
