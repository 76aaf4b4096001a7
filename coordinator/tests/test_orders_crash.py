"""SIGKILL a process recording order events at random moments; the file must stay consistent."""

from __future__ import annotations

import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coordinator.orders import OrderStore

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_a_consistent_store(tmp_path: Path) -> None:
    rng = random.Random(20240601)
    path = tmp_path / "crash.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    counts = []
    for trial in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "coordinator.tests.orders_crash_worker", str(path), str(trial)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
            time.sleep(rng.uniform(0.3, 1.2))
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL

        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        conn.close()
        store = OrderStore.open(path)
        orders = store.all_orders()
        for order in orders:
            assert store.replay(order.client_order_id) == order, order.client_order_id
            assert order.qty is None or order.executed_qty <= order.qty
        events = store.connection.execute("SELECT count(*) FROM order_events").fetchone()[0]
        store.close()
        counts.append((len(orders), events))
        print(f"trial {trial}: {len(orders)} orders, {events} events after SIGKILL")
    assert all(later[1] > earlier[1] for earlier, later in itertools.pairwise(counts)), counts
