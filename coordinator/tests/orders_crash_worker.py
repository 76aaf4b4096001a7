"""Subprocess for the SIGKILL test: records order events in a loop until it is killed.

``python -m coordinator.tests.orders_crash_worker DB SEED``: opens the store (``synchronous=FULL``),
prints ``ready``, then forever creates an intent and an entry order and records a random mix of
legal and illegal events for it.
"""

from __future__ import annotations

import contextlib
import random
import sys
from decimal import Decimal

from coordinator.orders import (
    EventKind,
    Fill,
    IllegalTransition,
    LocalEvent,
    OrderKind,
    OrderStore,
    OrderType,
    OrderUpdate,
    Side,
    VenueStatus,
)


def main(path: str, seed: int) -> None:
    rng = random.Random(seed)
    store = OrderStore.open(path, synchronous="FULL")
    print("ready", flush=True)
    trade_id = 0
    while True:
        intent = store.create_intent("BTCUSDT", Side.BUY, Decimal("1"))
        cid = store.create_order(
            intent.intent_id, OrderKind.ENTRY, side=Side.BUY, type=OrderType.MARKET, qty=Decimal("1")
        ).client_order_id
        store.record(LocalEvent(cid, EventKind.SEND, 1))
        for step in range(rng.randint(1, 12)):
            roll = rng.random()
            event: LocalEvent | OrderUpdate | Fill
            if roll < 0.5:
                trade_id += 1 if rng.random() < 0.8 else 0  # some duplicates
                event = Fill(
                    cid, trade_id, Decimal(rng.choice(["0.1", "0.2", "0.3"])), Decimal(100), step, "stream"
                )
            elif roll < 0.85:
                status = rng.choice(list(VenueStatus))
                cum = Decimal(rng.choice(["0", "0.3", "0.6", "1"]))
                event = OrderUpdate(cid, status, step, "stream", executed_qty=cum)
            else:
                event = LocalEvent(
                    cid, rng.choice([EventKind.UNKNOWN_OUTCOME, EventKind.QUERY_NOT_FOUND]), step
                )
            with contextlib.suppress(IllegalTransition):
                store.record(event, raw={"step": step, "pad": "x" * rng.randint(0, 200)})


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
