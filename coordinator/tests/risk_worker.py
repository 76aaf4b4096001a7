"""Subprocess for the restart test: trips the daily loss limit in a database, then exits.

``python -m coordinator.tests.risk_worker DB NOW_MS``: opens ``DB`` with ``init_db``, records the
day's equity and a 200 USD losing trade (the test config's limit is 150 USD), prints ``done``.
"""

from __future__ import annotations

import sys
from decimal import Decimal

from coordinator.risk import RiskStore
from coordinator.storage.db import init_db
from coordinator.tests.risk_support import SYMBOL, manager


def main(path: str, now_ms: int) -> None:
    conn = init_db(path)
    m = manager(store=RiskStore(conn))
    m.on_equity(Decimal(10_000), Decimal(0), now_ms)
    m.on_close(SYMBOL, Decimal(-200), now_ms + 1)
    conn.close()
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
