"""Every rejection the service produces, with Binance's code and message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from paper_exchange.engine.errors import ApiError
from paper_exchange.service import PaperExchangeService
from paper_exchange.tests import KEY, make_service


@pytest.fixture()
def svc(tmp_path: Path) -> PaperExchangeService:
    return make_service(tmp_path)


def order(**extra: str) -> dict[str, str]:
    base = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01"}
    base["price"] = "40000.0"
    base.update(extra)
    return {k: v for k, v in base.items() if v != "-"}


def expect(code: int, msg: str, call: Any, *args: Any) -> None:
    with pytest.raises(ApiError) as err:
        call(*args)
    assert (err.value.code, err.value.msg) == (code, msg)
    assert err.value.http_status == 400


PRECISION = "Precision is over the maximum defined for this asset."


@pytest.mark.parametrize(
    ("params", "code", "msg"),
    [
        (order(price="40000.123"), -1111, PRECISION),
        (order(quantity="0.0105"), -1111, PRECISION),
        (order(price="40000.05"), -4014, "Price not increased by tick size."),
        (order(quantity="0"), -4003, "Quantity less than zero."),
        (
            order(quantity="0.002"),
            -4164,
            "Order's notional must be no smaller than 100 (unless you choose reduce only).",
        ),
        (
            order(type="MARKET", price="-", quantity="0.001"),
            -4164,
            "Order's notional must be no smaller than 100 (unless you choose reduce only).",
        ),
        (order(type="MARKET", price="-", quantity="121"), -4005, "Quantity greater than max quantity."),
        (order(side="-"), -1102, "Mandatory parameter 'side' was not sent, was empty/null, or malformed."),
        (
            order(quantity="-"),
            -1102,
            "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.",
        ),
        (
            order(timeInForce="-"),
            -1102,
            "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.",
        ),
        (
            order(quantity="1e-2"),
            -1100,
            "Illegal characters found in parameter 'quantity'; "
            "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
        ),
        (order(type="LIMIT_MAKER"), -1116, "Invalid orderType."),
        (order(side="LONG"), -1117, "Invalid side."),
        (order(timeInForce="DAY"), -1115, "Invalid timeInForce."),
        (order(symbol="DOGEUSDT"), -1121, "Invalid symbol."),
        (
            order(type="STOP_MARKET"),
            -4120,
            "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead.",
        ),
        (
            order(type="TRAILING_STOP_MARKET"),
            -4120,
            "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead.",
        ),
        (order(quantity="1"), -2019, "Margin is insufficient."),
        (order(side="SELL", price="45000.0", reduceOnly="true"), -2022, "ReduceOnly Order is rejected."),
        (
            order(price="45000.0", timeInForce="GTX"),
            -5022,
            "Due to the order could not be executed as maker, the Post Only order will be rejected.",
        ),
        (
            order(timeInForce="FOK"),
            -5021,
            "Due to the order could not be filled immediately, the FOK order has been rejected.",
        ),
        (order(price="99999.0"), -4016, "Price is higher than mark price multiplier cap."),
        (order(newClientOrderId="bad id!"), -4015, "Client order id is not valid."),
        (order(positionSide="LONG"), -4061, "Order's position side does not match user's setting."),
    ],
)
def test_new_order_errors(svc: PaperExchangeService, params: dict[str, str], code: int, msg: str) -> None:
    svc.set_leverage(KEY, {"symbol": "BTCUSDT", "leverage": "1"})
    expect(code, msg, svc.new_order, KEY, params)
    assert svc.open_orders(KEY, {}) == []  # nothing recorded


def test_duplicate_client_order_id_of_an_open_order(svc: PaperExchangeService) -> None:
    svc.new_order(KEY, order(newClientOrderId="dup-1"))
    expect(-4116, "ClientOrderId is duplicated.", svc.new_order, KEY, order(newClientOrderId="dup-1"))
    svc.cancel_order(KEY, {"symbol": "BTCUSDT", "origClientOrderId": "dup-1"})
    svc.new_order(KEY, order(newClientOrderId="dup-1"))  # reusable once the first is closed


def test_unknown_orders(svc: PaperExchangeService) -> None:
    expect(-2011, "Unknown order sent.", svc.cancel_order, KEY, {"symbol": "BTCUSDT", "orderId": "999"})
    expect(-2013, "Order does not exist.", svc.query_order, KEY, {"symbol": "BTCUSDT", "orderId": "999"})
    placed = svc.new_order(KEY, order())
    expect(
        -2013,
        "Order does not exist.",
        svc.query_order,
        "other-key",
        {"symbol": "BTCUSDT", "orderId": str(placed["orderId"])},
    )
    svc.cancel_order(KEY, {"symbol": "BTCUSDT", "orderId": str(placed["orderId"])})
    expect(
        -2011,
        "Unknown order sent.",
        svc.cancel_order,
        KEY,
        {"symbol": "BTCUSDT", "orderId": str(placed["orderId"])},
    )
    expect(-2011, "Unknown order sent.", svc.cancel_algo_order, KEY, {"algoId": "5"})
    expect(-2013, "Order does not exist.", svc.query_algo_order, KEY, {"algoId": "5"})


def test_algo_order_errors(svc: PaperExchangeService) -> None:
    price = float(svc.ticker_price({"symbol": "BTCUSDT"})["price"])  # type: ignore[call-overload]
    algo = {
        "algoType": "CONDITIONAL",
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "STOP_MARKET",
        "quantity": "0.01",
    }
    above = f"{price + 100:.1f}"
    expect(
        -2021, "Order would immediately trigger.", svc.new_algo_order, KEY, {**algo, "triggerPrice": above}
    )
    expect(
        -1102,
        "Mandatory parameter 'triggerPrice' was not sent, was empty/null, or malformed.",
        svc.new_algo_order,
        KEY,
        algo,
    )
    close = {**algo, "closePosition": "true", "triggerPrice": f"{price - 100:.1f}"}
    expect(-1106, "Parameter 'quantity' sent when not required.", svc.new_algo_order, KEY, close)
    expect(
        -1116,
        "Invalid orderType.",
        svc.new_algo_order,
        KEY,
        {**algo, "type": "MARKET", "triggerPrice": above},
    )


def test_margin_type_and_position_side_errors(svc: PaperExchangeService) -> None:
    expect(
        -4046,
        "No need to change margin type.",
        svc.set_margin_type,
        KEY,
        {"symbol": "BTCUSDT", "marginType": "CROSSED"},
    )
    expect(-4059, "No need to change position side.", svc.set_dual_side, KEY, {"dualSidePosition": "false"})
    svc.new_order(KEY, order())
    expect(
        -4047,
        "Margin type cannot be changed if there exists open orders.",
        svc.set_margin_type,
        KEY,
        {"symbol": "BTCUSDT", "marginType": "ISOLATED"},
    )
    expect(
        -4067,
        "Position side cannot be changed if there exists open orders.",
        svc.set_dual_side,
        KEY,
        {"dualSidePosition": "true"},
    )
    svc.cancel_all_open_orders(KEY, {"symbol": "BTCUSDT"})
    svc.new_order(KEY, order(type="MARKET", price="-", timeInForce="-"))
    expect(
        -4048,
        "Margin type cannot be changed if there exists position.",
        svc.set_margin_type,
        KEY,
        {"symbol": "BTCUSDT", "marginType": "ISOLATED"},
    )
    expect(
        -4068,
        "Position side cannot be changed if there exists position.",
        svc.set_dual_side,
        KEY,
        {"dualSidePosition": "true"},
    )
    expect(
        -4028, "Leverage 126 is not valid", svc.set_leverage, KEY, {"symbol": "BTCUSDT", "leverage": "126"}
    )


def test_reduce_only_is_exempt_from_min_notional(svc: PaperExchangeService) -> None:
    svc.new_order(KEY, order(type="MARKET", price="-", timeInForce="-", quantity="0.01"))
    reply = svc.new_order(
        KEY,
        order(
            type="MARKET",
            side="SELL",
            price="-",
            timeInForce="-",
            quantity="0.001",
            reduceOnly="true",
            newOrderRespType="RESULT",
        ),
    )
    assert reply["status"] == "FILLED" and reply["executedQty"] == "0.001"
