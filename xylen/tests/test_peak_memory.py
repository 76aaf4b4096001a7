"""The peak-memory figure of the benchmarks is the measured process's own.

A child started by a large parent must not report the parent's size: ``ru_maxrss`` does on Linux
(it keeps the peak of the memory the child was started from), ``VmHWM`` does not.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xylen.peak_memory import peak_rss_mb

PARENT_MB = 300
CHILD = "from xylen.peak_memory import peak_rss_mb; print(peak_rss_mb())"
RUSAGE = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"


def _child(code: str) -> float:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root, timeout=60
    )
    return float(out.stdout.strip())


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmHWM is Linux's")
def test_a_child_of_a_large_parent_reports_its_own_peak() -> None:
    ballast = bytearray(PARENT_MB * 2**20)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page: resident, not just reserved
    assert peak_rss_mb() > PARENT_MB
    own = _child(CHILD)
    assert 0 < own < PARENT_MB / 3, own
    # what the benchmarks read before: the child inherits the parent's peak
    assert _child(RUSAGE) > PARENT_MB
    del ballast
