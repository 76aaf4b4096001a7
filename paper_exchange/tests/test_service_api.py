"""Reply and event shapes against Binance's documented fields and the recorded Binance payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from paper_exchange.tests import DAY, KEY, T0, make_service
from xylen.paths import shared_data_dir

FIX = shared_data_dir() / "rest_json" / "nautilus_fixtures"


def fixture(path: str) -> Any:
    return json.loads((FIX / path).read_text())


def test_exchange_info(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    info = svc.exchange_info({})
    assert [r["limit"] for r in info["rateLimits"]] == [2400, 1200, 300]
    btc = info["symbols"][0]
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.10"
    assert filters["LOT_SIZE"]["stepSize"] == "0.001" and filters["LOT_SIZE"]["maxQty"] == "1000"
    assert filters["MARKET_LOT_SIZE"]["maxQty"] == "120"
    assert filters["MIN_NOTIONAL"]["notional"] == "100"
    assert filters["PERCENT_PRICE"]["multiplierUp"] == "1.0500"
    assert (btc["pricePrecision"], btc["quantityPrecision"]) == (2, 3)
    assert "TRAILING_STOP_MARKET" in btc["orderTypes"] and "GTX" in btc["timeInForce"]


def test_order_replies_ack_result_query(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    ack = svc.new_order(KEY, {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"})
    assert ack["status"] == "NEW" and ack["executedQty"] == "0.000"
    result = svc.new_order(
        KEY,
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "MARKET",
            "quantity": "0.01",
            "newOrderRespType": "RESULT",
        },
    )
    expected = set(fixture("futures_rust_http/order_response.json")) - {"time"} | {"cumQty"}
    assert set(result) == expected
    assert result["status"] == "FILLED" and result["executedQty"] == "0.010"
    query = svc.query_order(KEY, {"symbol": "BTCUSDT", "orderId": str(result["orderId"])})
    assert set(query) == set(fixture("futures_rust_http/order_response.json"))
    assert query["status"] == "FILLED"
    trades = svc.user_trades(KEY, {"symbol": "BTCUSDT"})
    assert set(trades[0]) == set(fixture("futures_http/http_futures_account_trades.json")[0]) | {
        "marginAsset"
    }


def test_account_and_position_endpoints(tmp_path: Path) -> None:
    svc = make_service(tmp_path, symbols=("BTCUSDT", "ETHUSDT"))
    svc.new_order(KEY, {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.01"})
    v2 = svc.account_v2(KEY, {})
    assert set(fixture("futures_rust_http/account_info_v2.json")) <= set(v2)
    assert {p["symbol"] for p in v2["positions"]} == {"BTCUSDT", "ETHUSDT"}
    v3 = svc.account_v3(KEY, {})
    assert [p["symbol"] for p in v3["positions"]] == ["BTCUSDT"]
    assert "canTrade" not in v3
    risk2 = svc.position_risk_v2(KEY, {})
    assert len(risk2) == 2 and {r["marginType"] for r in risk2} == {"cross"}
    assert set(fixture("futures_rust_http/position_risk.json")[0]) <= set(risk2[0])
    risk3 = svc.position_risk_v3(KEY, {})
    assert len(risk3) == 1 and risk3[0]["positionAmt"] == "-0.010" and isinstance(risk3[0]["adl"], int)
    assert "marginType" not in risk3[0] and "leverage" not in risk3[0]
    balance = svc.balance(KEY, {})
    assert set(balance[0]) == set(fixture("futures_rust_http/balance.json")[0])
    assert svc.set_leverage(KEY, {"symbol": "BTCUSDT", "leverage": "10"})["leverage"] == 10
    assert svc.get_dual_side(KEY, {}) == {"dualSidePosition": False}


def test_public_market_data(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    now = svc.now_ms()
    assert svc.time({}) == {"serverTime": now} == {"serverTime": T0 + DAY}
    rows = svc.klines({"symbol": "BTCUSDT", "interval": "15m", "limit": "3"})
    assert len(rows) == 3 and len(rows[0]) == 12 and rows[-1][0] <= now
    ticker = svc.ticker_24hr({"symbol": "BTCUSDT"})
    assert set(ticker) == set(fixture("futures_http/http_futures_market_ticker_24hr.json"))
    premium = svc.premium_index({"symbol": "BTCUSDT"})
    assert set(premium) == set(fixture("futures_http/http_futures_market_premium_index.json"))
    assert premium["nextFundingTime"] == now + 8 * 3_600_000


def test_user_data_events_have_the_binance_keys(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    events: list[tuple[str, dict[str, Any]]] = []
    svc.subscribe(lambda account, event: events.append((account, event)))
    price = float(svc.ticker_price({"symbol": "BTCUSDT"})["price"])  # type: ignore[call-overload]
    svc.new_order(KEY, {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"})
    svc.new_algo_order(
        KEY,
        {
            "algoType": "CONDITIONAL",
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "STOP_MARKET",
            "closePosition": "true",
            "triggerPrice": f"{price - 20:.1f}",
        },
    )
    svc.step_to(svc.now_ms() + DAY // 2)
    kinds = [e["e"] for _, e in events]
    assert {"ORDER_TRADE_UPDATE", "TRADE_LITE", "ACCOUNT_UPDATE", "ALGO_UPDATE"} <= set(kinds)
    assert all(account == KEY for account, _ in events)
    reference = set(fixture("futures_rust_user_stream/order_update_trade.json")["o"]) - {"AP", "cr"} | {
        "pm",
        "gtd",
        "er",
    }
    trade = next(e for _, e in events if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["x"] == "TRADE")
    assert set(trade["o"]) == reference
    algo_keys = set(fixture("futures_rust_user_stream/algo_update_new.json")["o"]) - {"rm"}
    statuses = [e["o"]["X"] for _, e in events if e["e"] == "ALGO_UPDATE"]
    assert statuses == ["NEW", "TRIGGERED", "FINISHED"]
    assert all(algo_keys <= set(e["o"]) for _, e in events if e["e"] == "ALGO_UPDATE")
    account = next(e for _, e in events if e["e"] == "ACCOUNT_UPDATE")
    assert set(account["a"]["P"][0]) == set(
        fixture("futures_rust_user_stream/account_update.json")["a"]["P"][0]
    )
    assert svc.open_algo_orders(KEY, {}) == []


def test_config_from_home_uses_the_candle_store(tmp_path: Path) -> None:
    from paper_exchange.service import PaperExchangeService, ServiceConfig
    from paper_exchange.tests import candles
    from xylen.data import CandleStore
    from xylen.paths import Home

    home = Home(tmp_path / "home")
    CandleStore(home.candles).write("um", "BTCUSDT", "5m", candles("BTCUSDT", T0, 40))
    config = ServiceConfig.from_home(home)
    assert config.symbols == ("BTCUSDT",) and config.db_path == home.root / "paper_exchange.db"
    svc = PaperExchangeService(config)
    end = T0 + 40 * DAY
    assert svc.now_ms() == end - 30 * DAY  # 30 days of history before the clock
    rows = svc.klines({"symbol": "BTCUSDT", "interval": "1h", "limit": "1000"})
    assert len(rows) == 241 and rows[-1][0] == svc.now_ms()  # 240 closed hours + the one just opened
    svc.close()
