"""Venue replies and user-stream messages -> the order events of :mod:`coordinator.orders.events`.

Pure functions, no I/O: the manager, the monitor and reconciliation all translate through here,
so a REST reply and the stream's report of the same fact become the same event.

- ``Order`` (POST/GET/DELETE ``/order``) -> ``OrderUpdate(status, executedQty, avgPrice, orderId)``;
- ``AlgoOrder`` (``/algoOrder``) -> ``OrderUpdate(algoStatus, algo_id, exchange_order_id=actualOrderId)``;
- ``ORDER_TRADE_UPDATE`` -> a :class:`Fill` for ``x=TRADE`` (deduplicated by trade id in the store),
  followed by the status report ``OrderUpdate(X, z, ap)``;
- ``ALGO_UPDATE`` -> ``OrderUpdate(X, algo_id=aid, exchange_order_id=ai once triggered)``;
- ``userTrades`` items -> :class:`Fill`.

Status reports carry OUR receipt time (``now_ms``), not the venue's, so "triggered long ago" is
measured on our clock (a replayed venue runs on replay time); fills keep the venue's trade time.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from coordinator.exchange.schemas import AlgoOrder, AlgoUpdateData, OrderUpdateData, UserTrade
from coordinator.exchange.schemas import Order as WireOrder
from coordinator.orders.events import Event, Fill, OrderUpdate, Source, VenueStatus

logger = logging.getLogger(__name__)


def venue_status(raw: str) -> VenueStatus | None:
    """Binance's status string as a :class:`VenueStatus` (``None`` for one we do not know)."""
    try:
        return VenueStatus(raw)
    except ValueError:
        logger.warning("unknown venue status %r", raw)
        return None


def _exchange_id(raw: str | int | None) -> str | None:
    """An order id as text; Binance's "not set" values ("", 0, "0") become ``None``."""
    if raw is None or raw in ("", "0", 0):
        return None
    return str(raw)


def _positive(value: Decimal | None) -> Decimal | None:
    return value if value is not None and value > 0 else None


def update_from_order(
    reply: WireOrder, now_ms: int, source: Source = "rest", client_order_id: str | None = None
) -> OrderUpdate | None:
    """The status report in an order reply (``client_order_id`` overrides the reply's own)."""
    status = venue_status(reply.status)
    if status is None:
        return None
    return OrderUpdate(
        client_order_id=client_order_id or reply.clientOrderId,
        status=status,
        time_ms=now_ms,
        source=source,
        exchange_order_id=str(reply.orderId),
        executed_qty=reply.executedQty,
        avg_price=_positive(reply.avgPrice),
    )


def update_from_algo(reply: AlgoOrder, now_ms: int, source: Source = "rest") -> OrderUpdate | None:
    """The status report in an algo-order reply (``actualQty`` is the triggered order's execution)."""
    status = venue_status(reply.algoStatus)
    if status is None:
        return None
    return OrderUpdate(
        client_order_id=reply.clientAlgoId,
        status=status,
        time_ms=now_ms,
        source=source,
        exchange_order_id=_exchange_id(reply.actualOrderId),
        algo_id=str(reply.algoId),
        executed_qty=reply.actualQty if reply.actualQty is not None else Decimal(0),
        avg_price=_positive(reply.actualPrice),
    )


def events_from_order_trade(data: OrderUpdateData, now_ms: int, client_order_id: str) -> list[Event]:
    """``ORDER_TRADE_UPDATE.o`` -> ``[Fill]`` (when ``x=TRADE``) + the status report."""
    events: list[Event] = []
    if data.x == "TRADE" and data.l > 0 and data.L > 0:
        events.append(
            Fill(
                client_order_id=client_order_id,
                trade_id=data.t,
                qty=data.l,
                price=data.L,
                time_ms=data.T,
                source="stream",
                commission=abs(data.n),
                commission_asset=data.N or "",
                realized_pnl=data.rp,
                maker=data.m,
                exchange_order_id=str(data.i),
            )
        )
    status = venue_status(data.X)
    if status is not None:
        events.append(
            OrderUpdate(
                client_order_id=client_order_id,
                status=status,
                time_ms=now_ms,
                source="stream",
                exchange_order_id=str(data.i),
                executed_qty=data.z,
                avg_price=_positive(data.ap),
            )
        )
    return events


def update_from_algo_event(data: AlgoUpdateData, now_ms: int) -> OrderUpdate | None:
    """``ALGO_UPDATE.o`` -> the algo order's status report (``rm`` kept as the reason)."""
    status = venue_status(data.X)
    if status is None:
        return None
    return OrderUpdate(
        client_order_id=data.caid,
        status=status,
        time_ms=now_ms,
        source="stream",
        exchange_order_id=_exchange_id(data.ai),
        algo_id=str(data.aid),
        executed_qty=data.aq if data.aq is not None else Decimal(0),
        avg_price=_positive(data.ap),
        reason=data.rm or "",
    )


def fill_from_trade(trade: UserTrade, client_order_id: str) -> Fill:
    """One ``userTrades`` item as a fill of ``client_order_id``."""
    return Fill(
        client_order_id=client_order_id,
        trade_id=trade.id,
        qty=trade.qty,
        price=trade.price,
        time_ms=trade.time,
        source="rest",
        commission=abs(trade.commission),
        commission_asset=trade.commissionAsset,
        realized_pnl=trade.realizedPnl,
        maker=trade.maker,
        exchange_order_id=str(trade.orderId),
    )
