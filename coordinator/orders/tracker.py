"""In-memory index of the orders the manager watches, keyed by ``clientOrderId``.

Three sets, decided by the order's state:

- ``active``: not final; the monitor polls these and routes stream events to them;
- ``recently closed``: final (except ``NOT_FOUND``), kept for ``closed_ttl_ms`` so late fills and
  duplicate reports still find their order;
- ``lost``: ``NOT_FOUND`` (declared lost), kept until :meth:`OrderTracker.forget` because a lost
  order that shows up after all must still be recognised.

The tracker is pure bookkeeping: it never talks to the venue or SQLite and takes the time as an
argument.  The store is the truth; after a restart the tracker is rebuilt from
:meth:`OrderStore.live_orders`.  It also decides when an ``UNKNOWN`` order has had enough
not-found replies to be declared lost (:meth:`OrderTracker.should_declare_lost`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from coordinator.orders.models import Order
from coordinator.orders.states import OrderState

DEFAULT_CLOSED_TTL_MS: Final = 10 * 60_000
DEFAULT_LOST_AFTER: Final = 3


class OrderTracker:
    """Active, recently closed (TTL) and lost orders; synchronous, not thread-safe."""

    def __init__(self, *, closed_ttl_ms: int = DEFAULT_CLOSED_TTL_MS, lost_after: int = DEFAULT_LOST_AFTER):
        if closed_ttl_ms < 0 or lost_after < 1:
            raise ValueError("closed_ttl_ms must be >= 0 and lost_after >= 1")
        self.closed_ttl_ms = closed_ttl_ms
        self.lost_after = lost_after
        self._active: dict[str, Order] = {}
        self._closed: dict[str, tuple[Order, int]] = {}  # order, expiry ms
        self._lost: dict[str, Order] = {}
        self._by_exchange_id: dict[tuple[str, str], str] = {}  # (symbol, orderId or algoId) -> client id

    @property
    def active(self) -> Mapping[str, Order]:
        return dict(self._active)

    @property
    def lost(self) -> Mapping[str, Order]:
        return dict(self._lost)

    def recently_closed(self, now_ms: int) -> Mapping[str, Order]:
        """Closed orders whose TTL has not run out at ``now_ms``."""
        return {cid: order for cid, (order, expiry) in self._closed.items() if expiry > now_ms}

    def update(self, order: Order, now_ms: int) -> None:
        """Track ``order`` (new or changed) in the set its state calls for."""
        cid = order.client_order_id
        self._active.pop(cid, None)
        self._lost.pop(cid, None)
        previous = self._closed.pop(cid, None)
        if order.state is OrderState.NOT_FOUND:
            self._lost[cid] = order
        elif order.is_final:
            # a late report keeps the original expiry: the TTL counts from when it closed
            expiry = previous[1] if previous is not None else now_ms + self.closed_ttl_ms
            self._closed[cid] = (order, expiry)
        else:
            self._active[cid] = order
        for exchange_id in (order.exchange_order_id, order.algo_id):
            if exchange_id is not None:
                self._by_exchange_id[(order.symbol, exchange_id)] = cid

    def load(self, orders: Iterable[Order], now_ms: int) -> None:
        """Track every order in ``orders`` (at start: the store's live orders)."""
        for order in orders:
            self.update(order, now_ms)

    def get(self, client_order_id: str, now_ms: int) -> Order | None:
        """The tracked order with this id (expired closed orders are not returned)."""
        order = self._active.get(client_order_id) or self._lost.get(client_order_id)
        if order is not None:
            return order
        closed = self._closed.get(client_order_id)
        if closed is not None and closed[1] > now_ms:
            return closed[0]
        return None

    def client_id_for(self, symbol: str, exchange_id: str) -> str | None:
        """The client id of the tracked order with this ``orderId`` or ``algoId`` on ``symbol``."""
        return self._by_exchange_id.get((symbol, exchange_id))

    def should_declare_lost(self, order: Order) -> bool:
        """Whether an ``UNKNOWN`` order has had ``lost_after`` consecutive not-found replies."""
        return order.state is OrderState.UNKNOWN and order.not_found_count >= self.lost_after

    def expire(self, now_ms: int) -> list[str]:
        """Drop closed orders whose TTL ran out; return their client ids."""
        gone = [cid for cid, (_order, expiry) in self._closed.items() if expiry <= now_ms]
        for cid in gone:
            self._forget_ids(self._closed.pop(cid)[0])
        return gone

    def forget(self, client_order_id: str) -> None:
        """Stop tracking an order (a lost order the manager has dealt with)."""
        order = self._active.pop(client_order_id, None) or self._lost.pop(client_order_id, None)
        closed = self._closed.pop(client_order_id, None)
        if order is None and closed is not None:
            order = closed[0]
        if order is not None:
            self._forget_ids(order)

    def _forget_ids(self, order: Order) -> None:
        for exchange_id in (order.exchange_order_id, order.algo_id):
            if exchange_id is not None:
                self._by_exchange_id.pop((order.symbol, exchange_id), None)
