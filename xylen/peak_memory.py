"""This process's peak resident memory, measured so that it is this process's own.

``getrusage(RUSAGE_SELF).ru_maxrss`` on Linux also keeps the peak of the memory the process was
started from: a child started by a large parent (``fork``/``vfork`` then ``exec``) reports at
least the parent's resident size at that moment.  Linux's ``VmHWM`` (``/proc/self/status``) is the
peak of the program's own address space, so it is used where it exists; elsewhere (macOS) the
rusage figure is the best there is.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def peak_rss_kib() -> int:
    """Peak resident memory of this process in KiB."""
    if _STATUS.exists():
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else int(peak)  # bytes on macOS, KiB on Linux


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB."""
    return peak_rss_kib() / 1024
