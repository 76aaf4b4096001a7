"""Funding at 00:00/08:00/16:00 UTC with the real rates, and liquidation (isolated and cross)."""

from __future__ import annotations

from decimal import Decimal

from paper_exchange.engine import Engine, EngineConfig
from paper_exchange.engine.models import OrderStatus
from paper_exchange.tests import DAY, T0, T2023, candles, dec, funding, make_feed

KEY = "acct"
HOUR = 3_600_000


def test_funding_is_charged_exactly_at_the_settlement_times_with_the_real_rate() -> None:
    eng = Engine(make_feed(("BTCUSDT",), T2023, 2), EngineConfig(), T2023 + 2 * HOUR)
    eng.place_order(KEY, "BTCUSDT", "BUY", "MARKET", dec("0.1"), None, "GTC")
    eng.finish()
    events: list[dict[str, object]] = []
    eng.subscribe(lambda account, event: events.append(event))
    rates = funding("BTCUSDT").set_index("open_time")["open"]
    for settle, raw_time in ((T2023 + 8 * HOUR, T2023 + 8 * HOUR + 8), (T2023 + 16 * HOUR, None)):
        before = eng.accounts[KEY].wallet
        eng.advance(settle - 1)
        assert eng.accounts[KEY].wallet == before  # nothing before the boundary
        eng.advance(settle)
        rate = Decimal(
            repr(float(rates[raw_time if raw_time is not None and raw_time in rates.index else settle]))
        )
        mark = eng.mark("BTCUSDT")
        assert mark == dec(candles("BTCUSDT", T2023, 2).set_index("open_time").loc[settle, "open"])
        expected = (-dec("0.1") * mark * rate).quantize(Decimal("1e-8"))
        assert eng.accounts[KEY].wallet - before == expected
        update = events[-1]
        assert update["e"] == "ACCOUNT_UPDATE"
        assert update["a"]["m"] == "FUNDING_FEE"  # type: ignore[index]
        assert update["a"]["B"][0]["bc"] == f"{expected:.8f}"  # type: ignore[index]
    assert eng.accounts[KEY].funding < 0  # a long pays while the rate is positive
    assert eng.equity_check(KEY) == 0


def _adverse_side(start: int, days: float) -> tuple[str, float]:
    """The side that loses most on the window, and that loss as a fraction."""
    frame = candles("BTCUSDT", start, days)
    entry = float(frame.iloc[0].open)
    down = (entry - frame["low"].min()) / entry
    up = (frame["high"].max() - entry) / entry
    return ("BUY", down) if down >= up else ("SELL", up)


def test_isolated_position_is_liquidated_at_its_liquidation_price() -> None:
    start = T0 + DAY
    side, move = _adverse_side(start, 1)
    assert move > 0.01
    eng = Engine(make_feed(("BTCUSDT",), T0, 3), EngineConfig(), start)
    eng.set_leverage(KEY, "BTCUSDT", 125)
    eng.set_margin_type(KEY, "BTCUSDT", "ISOLATED")
    events: list[dict[str, object]] = []
    eng.subscribe(lambda account, event: events.append(event))
    eng.place_order(KEY, "BTCUSDT", side, "MARKET", dec("0.1"), None, "GTC")
    pos = eng.positions[KEY][("BTCUSDT", "BOTH")]
    margin = pos.isolated_wallet
    level = eng.liquidation_level(pos)
    wallet_before = eng.accounts[KEY].wallet
    eng.advance(start + DAY)
    assert pos.amount == 0
    liq = [o for o in eng.orders.values() if o.type == "LIQUIDATION"]
    assert len(liq) == 1 and liq[0].status is OrderStatus.FILLED
    assert liq[0].client_order_id.startswith("autoclose-")
    fill = eng.trades[KEY][-1]
    assert abs(fill.price - level) <= dec("0.2")  # at the liquidation price (to the tick)
    assert wallet_before - eng.accounts[KEY].wallet <= margin + fill.commission
    calc = [e for e in events if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["o"] == "LIQUIDATION"]  # type: ignore[index]
    assert calc and calc[0]["o"]["x"] == "CALCULATED"  # type: ignore[index]
    assert eng.equity_check(KEY) == 0


def test_cross_position_is_liquidated_when_the_account_margin_runs_out() -> None:
    start = T0 + DAY
    side, move = _adverse_side(start, 1)
    eng = Engine(make_feed(("BTCUSDT",), T0, 3), EngineConfig(balance=Decimal(40)), start)
    eng.set_leverage(KEY, "BTCUSDT", 125)
    eng.place_order(KEY, "BTCUSDT", side, "MARKET", dec("0.05"), None, "GTC")
    pos = eng.positions[KEY][("BTCUSDT", "BOTH")]
    notional = float(pos.entry_price * abs(pos.amount))
    assert move * notional > 40  # the loss on this window exceeds the whole balance
    eng.advance(start + DAY)
    assert pos.amount == 0
    assert any(o.type == "LIQUIDATION" for o in eng.orders.values())
    assert eng.accounts[KEY].wallet >= 0
    assert eng.equity_check(KEY) == 0


def test_safe_position_is_not_liquidated() -> None:
    start = T0 + DAY
    eng = Engine(make_feed(("BTCUSDT",), T0, 3), EngineConfig(), start)
    eng.set_leverage(KEY, "BTCUSDT", 2)
    eng.place_order(KEY, "BTCUSDT", "BUY", "MARKET", dec("0.01"), None, "GTC")
    eng.advance(start + DAY)
    assert eng.positions[KEY][("BTCUSDT", "BOTH")].amount == dec("0.01")
