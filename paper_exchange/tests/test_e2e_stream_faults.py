"""End to end: the user-data stream, the "unknown error" fault and a replayed bracket.

Against the REAL engine over real HTTP/WebSocket on 127.0.0.1 (``e2e_support``), with clients
no one here wrote:

- python-binance's own ``BinanceSocketManager.futures_user_socket`` (``FSTREAM_URL`` pointed at
  the server) receives ``ORDER_TRADE_UPDATE`` and ``ACCOUNT_UPDATE`` for a fill;
- a fault file with ``unknown_error_rate: 1.0`` on ``/fapi/v1/order``: both clients see an error
  (503, no code) but the order exists when queried by its client order id afterwards;
- a bracket (MARKET entry + STOP_MARKET and TAKE_PROFIT_MARKET closePosition) over real candles:
  stepping the replay clock fires exactly the leg the candles reach first (computed here from the
  candle file with the feed's path rule) and the position is closed.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from paper_exchange.faults import Faults
from paper_exchange.service import PaperExchangeService
from paper_exchange.tests.e2e_support import (
    BTC_FILE,
    CCXT_SYMBOL,
    START_MS,
    SYMBOL,
    binance_client,
    candle_root,
    ccxt_exchange,
    make_service,
    near,
    serve,
)

binance = pytest.importorskip("binance")
ccxt = pytest.importorskip("ccxt.async_support")
from binance.exceptions import BinanceAPIException  # noqa: E402

STEP_MS = 300_000
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def candles(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    return candle_root(tmp_path_factory, shared_data)


async def _recv(socket: Any, wanted: set[str], timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """Messages from ``socket`` until every event type in ``wanted`` was seen."""
    got: list[dict[str, Any]] = []
    missing = set(wanted)
    while missing:
        msg = await asyncio.wait_for(socket.recv(), timeout_s)
        assert isinstance(msg, dict) and msg.get("e") != "error", msg
        got.append(msg)
        missing.discard(msg["e"])
    return got


def test_python_binance_socket_manager_receives_fill_events(candles: Path, tmp_path: Path) -> None:
    from binance import BinanceSocketManager

    service = make_service(candles, tmp_path)

    async def scenario() -> None:
        async with serve(service) as url:
            client = await binance_client(url)
            try:
                manager = BinanceSocketManager(client)
                manager.FSTREAM_URL = url.replace("http://", "ws://") + "/"
                user_socket = manager.futures_user_socket()
                user_socket.TIMEOUT = 0.5  # its read timeout; closing waits for it (10 s by default)
                async with user_socket as socket:
                    order = await client.futures_create_order(
                        symbol=SYMBOL,
                        side="BUY",
                        type="MARKET",
                        quantity="0.010",
                        newClientOrderId="ws-entry",
                    )
                    events = await _recv(socket, {"ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE"})
                    trade = [e for e in events if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["x"] == "TRADE"]
                    while not trade:
                        events += await _recv(socket, {"ORDER_TRADE_UPDATE"})
                        trade = [
                            e for e in events if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["x"] == "TRADE"
                        ]
                    fill = trade[-1]["o"]
                    assert fill["i"] == order["orderId"] and fill["c"] == "ws-entry" and fill["s"] == SYMBOL
                    assert fill["X"] == "FILLED" and fill["z"] == "0.010" and fill["N"] == "USDT"
                    assert Decimal(fill["L"]) > 0 and Decimal(fill["n"]) > 0
                    account = next(e for e in events if e["e"] == "ACCOUNT_UPDATE")["a"]
                    assert account["m"] == "ORDER"
                    (usdt,) = [b for b in account["B"] if b["a"] == "USDT"]
                    assert Decimal(usdt["wb"]) < 10_000
                    (pos,) = account["P"]
                    assert (pos["s"], pos["pa"], pos["ps"]) == (SYMBOL, "0.010", "BOTH")
                    assert Decimal(pos["ep"]) == Decimal(fill["L"])
                    assert all(isinstance(e["E"], int) and isinstance(e["T"], int) for e in events)
            finally:
                await client.close_connection()

    asyncio.run(scenario())


def test_unknown_error_fault_the_order_exists_afterwards(candles: Path, tmp_path: Path) -> None:
    faults_file = tmp_path / "faults.yaml"
    faults_file.write_text("unknown_error_rate: {rate: 1.0, paths: [/fapi/v1/order]}\n", encoding="utf-8")
    faults = Faults.from_file(faults_file)
    service = make_service(candles, tmp_path)

    async def scenario() -> None:
        async with serve(service, faults=faults) as url:
            client = await binance_client(url)
            ex = ccxt_exchange(url)
            try:
                price = Decimal((await client.futures_symbol_ticker(symbol=SYMBOL))["price"])
                with pytest.raises(BinanceAPIException) as err:
                    await client.futures_create_order(
                        symbol=SYMBOL,
                        side="BUY",
                        type="LIMIT",
                        timeInForce="GTC",
                        quantity="0.010",
                        price=near(price, "0.98"),
                        newClientOrderId="pb-unknown-1",
                    )
                assert (err.value.status_code, err.value.code) == (503, None)
                assert "Unknown error" in err.value.message
                order = await client.futures_get_order(symbol=SYMBOL, origClientOrderId="pb-unknown-1")
                assert order["status"] == "NEW" and Decimal(order["price"]) == Decimal(near(price, "0.98"))

                with pytest.raises(ccxt.ExchangeNotAvailable):
                    await ex.create_order(
                        CCXT_SYMBOL, "market", "buy", 0.01, None, {"clientOrderId": "ccxt-unknown-1"}
                    )
                found = await ex.fetch_order(None, CCXT_SYMBOL, {"origClientOrderId": "ccxt-unknown-1"})
                assert found["clientOrderId"] == "ccxt-unknown-1" and found["status"] == "closed"
                assert found["filled"] == 0.01
                (pos,) = await client.futures_position_information(symbol=SYMBOL)
                assert pos["positionAmt"] == "0.010"  # the "failed" market order did fill
            finally:
                await ex.close()
                await client.close_connection()

    asyncio.run(scenario())


def _first_leg_reached(frame: pd.DataFrame, start: int, stop: Decimal, take: Decimal) -> tuple[str, int]:
    """Which level the feed's path (open -> low -> high -> close, or open -> high -> low -> close
    for a falling candle) reaches first from ``start``: "stop" (price <= stop) or "take" (>= take),
    and the open time of the candle where it does.
    """
    rows = frame[frame["open_time"] >= start].head(2_000)
    for row in rows.itertuples():
        o, h, lo, c = (Decimal(str(v)) for v in (row.open, row.high, row.low, row.close))
        path = (o, lo, h, c) if c >= o else (o, h, lo, c)
        for point in path:
            if point <= stop:
                return "stop", int(row.open_time)
            if point >= take:
                return "take", int(row.open_time)
    raise AssertionError("neither level is reached in the window")


def _algo(service: PaperExchangeService, client_algo_id: str) -> dict[str, Any]:
    return service.query_algo_order("test-key", {"clientAlgoId": client_algo_id})


# 2024-01-02: the take-profit is reached first; 2024-01-05: the stop (checked from the candles below).
@pytest.mark.parametrize(("start", "first"), [(START_MS, "take"), (START_MS + 3 * DAY_MS, "stop")])
def test_replayed_bracket_fires_one_leg_and_closes_the_position(
    candles: Path, tmp_path: Path, shared_data: Path, start: int, first: str
) -> None:
    from xylen.data.importers import read_freqtrade_feather

    frame = read_freqtrade_feather(shared_data / BTC_FILE)
    service = make_service(candles, tmp_path, start_ms=start)

    async def scenario() -> None:
        async with serve(service) as url:
            client = await binance_client(url)
            try:
                entry = await client.futures_create_order(
                    symbol=SYMBOL, side="BUY", type="MARKET", quantity="0.010", newOrderRespType="RESULT"
                )
                assert entry["status"] == "FILLED"
                fill = Decimal(entry["avgPrice"])
                stop_px, take_px = near(fill, "0.99"), near(fill, "1.01")
                for kind, level, cid in (
                    ("STOP_MARKET", stop_px, "br-sl"),
                    ("TAKE_PROFIT_MARKET", take_px, "br-tp"),
                ):
                    leg = await client.futures_create_algo_order(
                        symbol=SYMBOL,
                        side="SELL",
                        type=kind,
                        triggerPrice=level,
                        closePosition="true",
                        workingType="MARK_PRICE",
                        clientAlgoId=cid,
                    )
                    assert leg["algoStatus"] == "NEW"
                expected, candle = _first_leg_reached(frame, start, Decimal(stop_px), Decimal(take_px))
                assert expected == first
                fired, other = ("br-sl", "br-tp") if expected == "stop" else ("br-tp", "br-sl")

                now = start
                while True:  # step the replay clock through the real candles, 5 minutes at a time
                    now += STEP_MS
                    assert now < start + 7 * DAY_MS, "no leg fired within a week"
                    service.step_to(now)
                    (pos,) = await client.futures_position_information(symbol=SYMBOL) or [
                        {"positionAmt": "0"}
                    ]
                    if Decimal(pos["positionAmt"]) == 0:
                        break

                done = await client.futures_get_algo_order(clientAlgoId=fired)
                assert done["algoStatus"] == "FINISHED", done
                assert (
                    candle <= done["triggerTime"] < candle + STEP_MS <= now
                )  # in the candle that reached it
                assert now > start + STEP_MS  # it took several steps of the clock
                actual_id = int(done["actualOrderId"])  # a string in algo replies
                actual = await client.futures_get_order(symbol=SYMBOL, orderId=actual_id)
                assert (
                    actual["status"] == "FILLED" and actual["side"] == "SELL" and actual["type"] == "MARKET"
                )
                assert actual["executedQty"] == "0.010" and actual["closePosition"] is True
                waiting = await client.futures_get_algo_order(clientAlgoId=other)
                assert waiting["algoStatus"] == "NEW"  # closePosition legs stay until they trigger
                trades = await client.futures_account_trades(symbol=SYMBOL)
                assert [t["orderId"] for t in trades] == [entry["orderId"], actual_id]
                pnl = Decimal(trades[-1]["realizedPnl"])
                assert (pnl < 0) if expected == "stop" else (pnl > 0)
                assert _algo(service, fired)["algoStatus"] == "FINISHED"
                assert json.dumps(done)  # JSON-clean
            finally:
                await client.close_connection()

    asyncio.run(scenario())
