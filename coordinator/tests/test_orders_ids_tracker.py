"""Client order ids and the tracker of active, recently closed and lost orders."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.orders import (
    EventKind,
    OrderKind,
    OrderState,
    OrderTracker,
    OrderUpdate,
    VenueStatus,
    apply,
    client_order_id,
    is_ours,
    parse_client_order_id,
)
from coordinator.orders.ids import BINANCE_CLIENT_ID, intent_digest, new_intent_id
from coordinator.tests.orders_support import CID, Events, new_order, order_in


@given(st.text(min_size=1, max_size=80), st.sampled_from(list(OrderKind)), st.integers(1, 9_999_999_999))
def test_client_ids_are_deterministic_valid_and_parse_back(
    intent_id: str, kind: OrderKind, attempt: int
) -> None:
    cid = client_order_id(intent_id, kind, attempt)
    assert cid == client_order_id(intent_id, kind, attempt)
    assert BINANCE_CLIENT_ID.match(cid) and cid.startswith("xy-") and len(cid) <= 36
    assert is_ours(cid)
    assert parse_client_order_id(cid) == (intent_digest(intent_id), kind, attempt)


def test_client_ids_differ_by_leg_and_attempt_and_refuse_bad_input() -> None:
    ids = {client_order_id("i1", kind, attempt) for kind in OrderKind for attempt in (1, 2, 3)}
    assert len(ids) == len(OrderKind) * 3
    assert client_order_id("i1", OrderKind.ENTRY, 1) != client_order_id("i2", OrderKind.ENTRY, 1)
    assert not is_ours("x-Cb7ytekJ0123456789abcdef012345") and parse_client_order_id("web_abc") is None
    with pytest.raises(ValueError):
        client_order_id("i1", OrderKind.ENTRY, 0)
    assert new_intent_id(1_700_000_000_000) != new_intent_id(1_700_000_000_000)


def test_tracker_moves_orders_between_active_closed_and_lost() -> None:
    ev = Events()
    tracker = OrderTracker(closed_ttl_ms=1_000, lost_after=2)
    order = order_in(OrderState.NEW, ev)
    order = dataclasses.replace(order, exchange_order_id="99")
    tracker.update(order, now_ms=0)
    assert CID in tracker.active and tracker.client_id_for("BTCUSDT", "99") == CID
    filled = apply(order, ev.fill(Decimal(1))).order
    tracker.update(filled, now_ms=100)
    assert CID not in tracker.active and tracker.get(CID, now_ms=500) == filled
    late = apply(filled, OrderUpdate(CID, VenueStatus.FILLED, 9, "rest", executed_qty=Decimal(1))).order
    tracker.update(late, now_ms=900)  # a late report does not extend the TTL
    assert tracker.get(CID, now_ms=1_099) == late and tracker.get(CID, now_ms=1_100) is None
    assert tracker.expire(now_ms=1_100) == [CID] and tracker.client_id_for("BTCUSDT", "99") is None


def test_tracker_declares_lost_after_n_not_found_replies() -> None:
    ev = Events()
    tracker = OrderTracker(lost_after=2)
    order = apply(order_in(OrderState.SUBMITTED, ev), ev.local(EventKind.UNKNOWN_OUTCOME)).order
    tracker.load([order], now_ms=0)
    order = apply(order, ev.local(EventKind.QUERY_NOT_FOUND)).order
    assert not tracker.should_declare_lost(order)
    order = apply(order, ev.local(EventKind.QUERY_NOT_FOUND)).order
    assert tracker.should_declare_lost(order)
    lost = apply(order, ev.local(EventKind.LOST)).order
    tracker.update(lost, now_ms=10)
    assert CID in tracker.lost and tracker.get(CID, now_ms=10**12) == lost
    tracker.forget(CID)
    assert tracker.get(CID, now_ms=10) is None
    assert not tracker.should_declare_lost(new_order())
