"""Property test: random order/cancel/advance sequences keep the books consistent."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paper_exchange.engine import ApiError, Engine, EngineConfig
from paper_exchange.engine.models import OrderStatus
from paper_exchange.feed import ReplayFeed
from paper_exchange.tests import DAY, T0, make_feed

KEY = "prop"
_FEED: list[ReplayFeed] = []


def feed() -> ReplayFeed:
    if not _FEED:
        _FEED.append(make_feed(("BTCUSDT",), T0, 3))
    return _FEED[0]


op = st.one_of(
    st.tuples(st.just("market"), st.sampled_from(["BUY", "SELL"]), st.integers(1, 400), st.booleans()),
    st.tuples(
        st.just("limit"),
        st.sampled_from(["BUY", "SELL"]),
        st.integers(-300, 300),
        st.integers(3, 2000),
        st.sampled_from(["GTC", "IOC", "FOK", "GTX"]),
    ),
    st.tuples(st.just("cancel"), st.integers(0, 50)),
    st.tuples(st.just("advance"), st.integers(1, 3 * 3_600_000)),
    st.tuples(st.just("leverage"), st.integers(1, 125)),
)


def check(eng: Engine) -> None:
    acct = eng.accounts.get(KEY)
    if acct is None:
        return
    assert eng.equity_check(KEY) == 0
    trades = eng.trades.get(KEY, [])
    assert sum((t.realized_pnl for t in trades), Decimal(0)) == acct.realized_pnl
    assert sum((t.commission for t in trades), Decimal(0)) == acct.fees
    net = sum((t.qty if t.side == "BUY" else -t.qty for t in trades), Decimal(0))
    pos = eng.positions.get(KEY, {}).get(("BTCUSDT", "BOTH"))
    assert (pos.amount if pos else 0) == net
    for order in eng.orders.values():
        assert 0 <= order.executed_qty <= order.orig_qty
        assert order.is_open == (order.order_id in eng.open_orders)
        if order.status is OrderStatus.FILLED:
            assert order.executed_qty == order.orig_qty or order.reduce_only


def assert_funded(eng: Engine, before: Decimal, qty: Decimal) -> None:
    """An accepted order never leaves the account unfunded.

    Once price moves have made the available balance negative, an order that only reduces
    must still be accepted; it may then cost at most its fee and slippage (bounded here by
    20 bps of its notional), far less than the initial margin (>= 80 bps at 125x) that an
    order opening exposure without funding would take.
    """
    after = eng.account_view(KEY).available
    allowance = qty * eng.mark("BTCUSDT") * Decimal("0.002")
    assert after >= 0 or after >= before - allowance, (before, after)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=1, max_size=25))
def test_random_sequences_keep_invariants(ops: list[tuple[object, ...]]) -> None:
    eng = Engine(feed(), EngineConfig(balance=Decimal(5_000)), T0 + DAY)
    for step in ops:
        kind = step[0]
        before = eng.account_view(KEY).available if KEY in eng.accounts else Decimal(5_000)
        try:
            if kind == "market":
                _, side, qty, reduce = step
                eng.place_order(
                    KEY,
                    "BTCUSDT",
                    str(side),
                    "MARKET",
                    Decimal(int(qty)) / 1000,
                    None,
                    "GTC",
                    reduce_only=bool(reduce),
                )
                assert_funded(eng, before, Decimal(int(qty)) / 1000)
            elif kind == "limit":
                _, side, offset, qty, tif = step
                price = eng.mark("BTCUSDT") + Decimal(int(offset))
                eng.place_order(KEY, "BTCUSDT", str(side), "LIMIT", Decimal(int(qty)) / 1000, price, str(tif))
                assert_funded(eng, before, Decimal(int(qty)) / 1000)
            elif kind == "cancel":
                open_ids = list(eng.open_orders)
                if open_ids:
                    eng.cancel_order(KEY, "BTCUSDT", open_ids[int(step[1]) % len(open_ids)], None)
            elif kind == "advance":
                eng.advance(min(eng.now + int(step[1]), eng.feed.end_ms()))
            elif kind == "leverage":
                eng.set_leverage(KEY, "BTCUSDT", int(step[1]))
        except ApiError:
            pass
        eng.finish()
        check(eng)
