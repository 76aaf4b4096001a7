"""Errors grouped by how the command line reacts to them.

::

    XylenError                 exit 1: a runtime failure, message printed, nothing half-written
    ├── DataError              bad or inconsistent market data (checksum, parse, gaps refused)
    ├── DownloadError          a download that failed after its retries
    └── UsageError             exit 2: bad arguments or a bad config
        └── ConfigError        names the key path and the reason
"""

from __future__ import annotations


class XylenError(Exception):
    """A failure the command line reports in one line and exits 1 for."""

    exit_code = 1


class DataError(XylenError):
    """Market data that cannot be used as it is."""


class DownloadError(XylenError):
    """A download that failed after all its retries."""


class UsageError(XylenError):
    """Bad command-line usage; exit status 2."""

    exit_code = 2


class ConfigError(UsageError):
    """A config file that does not validate; the message names the key path."""

    def __init__(self, key: str, reason: str, source: str = "config") -> None:
        self.key = key
        self.reason = reason
        self.source = source
        super().__init__(f"{source}: {key}: {reason}")
