"""Cost of ``OrderStore.record()`` per event with ``synchronous=FULL`` vs ``NORMAL``.

``python bench/bench_order_store.py [--orders N] [--dir DIR]``: for each setting, a fresh file in
``DIR`` (default: a temporary folder; put it on the disk the coordinator will use) and ``N``
orders with a realistic life of 5 events each (SEND, NEW, two fills, FILLED), each recorded by
one ``record()`` (one transaction: load the order, append the event, insert a fill, update the
order).  Prints mean and percentiles in microseconds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from coordinator.orders import (
    Event,
    EventKind,
    Fill,
    LocalEvent,
    OrderKind,
    OrderStore,
    OrderType,
    OrderUpdate,
    Side,
    VenueStatus,
)
from coordinator.storage.db import Synchronous


def measure(directory: Path, synchronous: Synchronous, orders: int) -> list[float]:
    """Seconds (as microseconds) of each ``record()`` over ``orders`` orders of 5 events each."""
    path = directory / f"bench-{synchronous.lower()}.db"
    store = OrderStore.open(path, synchronous=synchronous)
    timings = []
    trade_id = 0
    for n in range(orders):
        intent = store.create_intent("BTCUSDT", Side.BUY, Decimal("0.010"))
        cid = store.create_order(
            intent.intent_id, OrderKind.ENTRY, side=Side.BUY, type=OrderType.LIMIT, qty=Decimal("0.010")
        ).client_order_id
        events: list[Event] = [
            LocalEvent(cid, EventKind.SEND, n),
            OrderUpdate(cid, VenueStatus.NEW, n, "rest", str(n), executed_qty=Decimal(0)),
        ]
        for qty in ("0.004", "0.006"):
            trade_id += 1
            events.append(
                Fill(cid, trade_id, Decimal(qty), Decimal("30000.1"), n, "stream", Decimal("0.01"), "USDT")
            )
        events.append(
            OrderUpdate(cid, VenueStatus.FILLED, n, "stream", str(n), executed_qty=Decimal("0.010"))
        )
        for event in events:
            start = time.perf_counter()
            store.record(event, raw={"e": "ORDER_TRADE_UPDATE", "n": n})
            timings.append((time.perf_counter() - start) * 1e6)
    store.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=400)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for synchronous in ("FULL", "NORMAL"):
            t = sorted(measure(Path(tmp), synchronous, args.orders))
            p50, p99 = t[len(t) // 2], t[int(len(t) * 0.99)]
            print(
                f"synchronous={synchronous:<6} record(): mean {statistics.fmean(t):8.1f} us"
                f"  p50 {p50:8.1f} us  p99 {p99:8.1f} us  ({len(t)} events)"
            )


if __name__ == "__main__":
    main()
