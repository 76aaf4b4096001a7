"""``GET /fapi/v1/income`` and ``GET /fapi/v1/ticker/bookTicker`` on real candles and funding rates."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from paper_exchange.engine.errors import ApiError
from paper_exchange.routes import OPTIONAL_ROUTES
from paper_exchange.service import PaperExchangeService, ServiceConfig
from paper_exchange.tests import DAY, KEY, T0, make_feed, make_service
from xylen.paths import shared_data_dir

FIX = shared_data_dir() / "rest_json" / "nautilus_fixtures"
H8 = 8 * 3_600_000
BTC = {"symbol": "BTCUSDT"}


def _buy(svc: PaperExchangeService, qty: str = "0.1") -> None:
    svc.new_order(KEY, {**BTC, "side": "BUY", "type": "MARKET", "quantity": qty})


def test_funding_commission_and_realised_pnl_are_income_entries(tmp_path: Path) -> None:
    start = T0 + DAY + 3_600_000  # 01:00, the next funding at 08:00
    svc = make_service(tmp_path, clock_at=start)
    _buy(svc)
    svc.step_to(T0 + DAY + H8 + 60_000)  # across 08:00
    svc.new_order(KEY, {**BTC, "side": "SELL", "type": "MARKET", "quantity": "0.1", "reduceOnly": "true"})

    every = svc.income(KEY, {})
    kinds = [e["incomeType"] for e in every]
    assert kinds == ["COMMISSION", "FUNDING_FEE", "COMMISSION", "REALIZED_PNL"]
    assert [e["time"] for e in every] == sorted(e["time"] for e in every)
    assert len({e["tranId"] for e in every}) == 4
    (funding,) = svc.income(KEY, {"incomeType": "FUNDING_FEE"})
    assert funding["time"] == T0 + DAY + H8 and funding["symbol"] == "BTCUSDT" and funding["tradeId"] == ""
    assert funding["asset"] == "USDT" and funding["info"] == "FUNDING_FEE"
    # what the wallet moved by at 08:00 (a long pays a positive rate): the account's funding total
    account = svc.engine.account(KEY)
    assert Decimal(funding["income"]) == account.funding != 0
    rate = svc.feed.funding_rate("BTCUSDT", T0 + DAY + H8)
    assert (Decimal(funding["income"]) < 0) == (rate > 0)
    commissions = svc.income(KEY, {"incomeType": "COMMISSION"})
    assert -sum(Decimal(c["income"]) for c in commissions) == account.fees
    assert all(c["tradeId"].isdigit() for c in commissions)
    (pnl,) = svc.income(KEY, {"incomeType": "REALIZED_PNL"})
    assert Decimal(pnl["income"]) == account.realized_pnl

    # time range (inclusive), limit, symbol
    assert svc.income(KEY, {"startTime": str(T0 + DAY + H8), "endTime": str(T0 + DAY + H8)}) == [funding]
    assert len(svc.income(KEY, {"limit": "2"})) == 2
    with pytest.raises(ApiError):
        svc.income(KEY, {"symbol": "NOPEUSDT"})
    assert svc.income("someone-else", {}) == []

    # the entries survive a restart of the exchange (they are in its SQLite file)
    svc.close()
    again = PaperExchangeService(
        ServiceConfig(db_path=tmp_path / "exchange.db", symbols=("BTCUSDT",), start_ms=start),
        feed=make_feed(("BTCUSDT",), T0, 3),
    )
    assert again.income(KEY, {}) == every
    _buy(again)
    assert again.income(KEY, {})[-1]["tranId"] == max(e["tranId"] for e in every) + 1


def test_book_ticker_quotes_what_the_engine_honours(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    book = svc.book_ticker(BTC)
    fixture = json.loads(next(FIX.rglob("http_futures_market_book_ticker.json")).read_text())
    assert set(book) == set(fixture)
    mark = Decimal(svc.ticker_price(BTC)["price"])
    bid, ask = Decimal(book["bidPrice"]), Decimal(book["askPrice"])
    assert bid < mark < ask and Decimal(book["bidQty"]) > 0 and book["time"] == svc.now_ms()
    # a market buy fills at the ask, a market sell at the bid
    buy = svc.new_order(
        KEY, {**BTC, "side": "BUY", "type": "MARKET", "quantity": "0.01", "newOrderRespType": "RESULT"}
    )
    assert Decimal(buy["avgPrice"]) == ask
    # post-only at the bid rests; post-only at the ask would take (-5022)
    rest = svc.new_order(
        KEY,
        {
            **BTC,
            "side": "BUY",
            "type": "LIMIT",
            "quantity": "0.01",
            "price": book["bidPrice"],
            "timeInForce": "GTX",
        },
    )
    assert rest["status"] == "NEW"
    with pytest.raises(ApiError) as refused:
        svc.new_order(
            KEY,
            {
                **BTC,
                "side": "BUY",
                "type": "LIMIT",
                "quantity": "0.01",
                "price": book["askPrice"],
                "timeInForce": "GTX",
            },
        )
    assert refused.value.code == -5022
    assert svc.book_ticker({}) == [book]


def test_zero_slippage_still_leaves_a_tick_between_bid_and_ask(tmp_path: Path) -> None:
    svc = make_service(tmp_path, slippage_bps=Decimal(0))
    book = svc.book_ticker(BTC)
    mark = Decimal(svc.ticker_price(BTC)["price"])
    assert Decimal(book["askPrice"]) - mark == mark - Decimal(book["bidPrice"]) == Decimal("0.1")


def test_routes_weigh_as_binance_documents() -> None:
    routes = {r.path: r for r in OPTIONAL_ROUTES}
    book = routes["/fapi/v1/ticker/bookTicker"]
    assert (book.weight_of(BTC), book.weight_of({})) == (2, 5) and not book.security.signed
    income = routes["/fapi/v1/income"]
    assert income.weight_of({}) == 30 and income.security.signed
