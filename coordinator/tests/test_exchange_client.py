"""Every client method round-trips against the REAL paper exchange; errors arrive as our types."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import pytest

from coordinator.exchange import FatalError, NotFoundError, RejectedError
from coordinator.exchange.constants import NEW_ORDER
from coordinator.exchange.schemas import AlgoOrder, Balance, Order, Position, UserTrade
from coordinator.tests.test_exchange_support import (
    SYMBOL,
    candles,  # noqa: F401 - fixture
    last_price,
    make_client,
    paper_exchange,
)


def test_every_method_round_trips(candles: Path, tmp_path: Path) -> None:  # noqa: F811
    async def scenario() -> None:
        async with paper_exchange(candles, tmp_path) as (url, _app):
            client = await make_client(url)
            try:
                assert abs(await client.server_time() - time.time() * 1000) < 5000
                info = await client.exchange_info()
                assert [s.symbol for s in info.symbols] == [SYMBOL]
                rules = client.symbol_rules(SYMBOL)
                assert (rules.tick_size, rules.step_size, rules.min_notional) == (
                    Decimal("0.10"),
                    Decimal("0.001"),
                    Decimal("100"),
                )
                assert client.transport.limiter.weight.limit == 2400  # seeded from rateLimits
                price = await last_price(client)

                assert (await client.set_leverage(SYMBOL, 5)).leverage == 5
                assert await client.set_margin_mode(SYMBOL, "isolated") is True
                assert await client.set_margin_mode(SYMBOL, "isolated") is False  # -4046 = success
                assert await client.set_margin_mode(SYMBOL, "cross") is True

                # a resting LIMIT: the price is rounded onto the tick by the filters
                rest = await client.new_order(
                    SYMBOL, "BUY", "LIMIT", Decimal("0.0109"), price * Decimal("0.98") + Decimal("0.0123"),
                    client_order_id="t-rest-1",
                )  # fmt: skip
                assert isinstance(rest, Order) and rest.status == "NEW" and rest.origQty == Decimal("0.010")
                assert rest.price % Decimal("0.1") == 0 and rest.clientOrderId == "t-rest-1"
                assert (await client.get_order(SYMBOL, client_order_id="t-rest-1")).orderId == rest.orderId
                assert (await client.get_order(SYMBOL, order_id=rest.orderId)).clientOrderId == "t-rest-1"
                assert [o.orderId for o in await client.get_open_orders(SYMBOL)] == [rest.orderId]
                assert [o.orderId for o in await client.get_open_orders()] == [rest.orderId]
                cancelled = await client.cancel_order(SYMBOL, client_order_id="t-rest-1")
                assert cancelled.status == "CANCELED" and await client.get_open_orders(SYMBOL) == []

                # a MARKET entry, the position, the balance
                entry = await client.new_order(
                    SYMBOL, "BUY", "MARKET", Decimal("0.010"), client_order_id="t-entry"
                )
                assert (
                    entry.status == "FILLED" and entry.executedQty == Decimal("0.010") and entry.avgPrice > 0
                )
                (position,) = await client.get_open_positions()
                assert isinstance(position, Position) and position.positionAmt == Decimal("0.010")
                assert position.entryPrice == entry.avgPrice
                (usdt,) = [b for b in await client.get_account_balance() if b.asset == "USDT"]
                assert isinstance(usdt, Balance) and usdt.balance < 10_000  # the fee was paid

                # the bracket on the algo endpoint
                stop = await client.new_algo_order(
                    SYMBOL, "SELL", "STOP_MARKET", price * Decimal("0.97"), client_algo_id="t-sl"
                )
                take = await client.new_algo_order(
                    SYMBOL, "SELL", "TAKE_PROFIT_MARKET", price * Decimal("1.03"), client_algo_id="t-tp"
                )
                assert isinstance(stop, AlgoOrder) and stop.algoStatus == "NEW" and stop.closePosition
                assert stop.triggerPrice is not None and stop.triggerPrice % Decimal("0.1") == 0
                opened = await client.get_open_algo_orders(SYMBOL)
                assert sorted(a.algoId for a in opened) == sorted([stop.algoId, take.algoId])
                assert len(await client.get_open_algo_orders()) == 2
                assert (await client.get_algo_order(client_algo_id="t-sl")).algoId == stop.algoId
                assert (await client.get_algo_order(algo_id=take.algoId)).clientAlgoId == "t-tp"
                gone = await client.cancel_algo_order(algo_id=take.algoId)
                assert (gone.algoId, gone.code) == (take.algoId, "200")

                # reduce-only exit, the trades, the last algo cancelled by client id
                exit_ = await client.new_order(
                    SYMBOL, "SELL", "MARKET", Decimal("0.010"), reduce_only=True, client_order_id="t-exit"
                )
                assert exit_.status == "FILLED" and exit_.reduceOnly
                assert await client.get_open_positions() == []
                trades = await client.get_user_trades(SYMBOL)
                assert all(isinstance(t, UserTrade) for t in trades)
                assert [t.orderId for t in trades] == [entry.orderId, exit_.orderId]
                assert [t.orderId for t in await client.get_user_trades(SYMBOL, order_id=exit_.orderId)] == [
                    exit_.orderId
                ]
                assert (await client.cancel_algo_order(client_algo_id="t-sl")).algoId == stop.algoId

                # listen keys
                key = await client.create_listen_key()
                assert key and await client.create_listen_key() == key
                await client.keepalive_listen_key(key)
                await client.close_listen_key(key)
                with pytest.raises(NotFoundError) as err:
                    await client.keepalive_listen_key(key)
                assert err.value.code == -1125
            finally:
                await client.close()

    asyncio.run(scenario())


def test_errors_arrive_as_our_types_with_codes(candles: Path, tmp_path: Path) -> None:  # noqa: F811
    async def scenario() -> None:
        async with paper_exchange(candles, tmp_path) as (url, _app):
            client = await make_client(url)
            try:
                price = await last_price(client)
                below = client.symbol_rules(SYMBOL).round_price(price * Decimal("0.99"))  # on the tick
                sent = client.transport.sent

                async def rejected(code: int, *, local: bool = False, **kwargs: object) -> RejectedError:
                    before = sent["POST /fapi/v1/order"]
                    with pytest.raises(RejectedError) as err:
                        await client.new_order(**kwargs)  # type: ignore[arg-type]
                    assert (err.value.code, err.value.local) == (code, local), err.value
                    assert sent["POST /fapi/v1/order"] == before + (0 if local else 1)
                    return err.value

                base = {"symbol": SYMBOL, "side": "BUY", "type": "LIMIT", "client_order_id": "t-err"}
                await rejected(-2019, **base, quantity=Decimal(10), price=below)
                # min notional: caught locally first, then the exchange's own -4164 when bypassed
                await rejected(-4164, local=True, **base, quantity=Decimal("0.002"), price=below)
                err = await rejected(
                    -4164, **base, quantity=Decimal("0.002"), price=below, check_filters=False
                )
                assert err.status == 400 and "notional" in err.msg
                await rejected(
                    -5022, **base, quantity=Decimal("0.010"), price=price * Decimal("1.01"), post_only=True
                )
                sell = {"symbol": SYMBOL, "side": "SELL", "type": "MARKET", "client_order_id": "t-ro"}
                await rejected(-2022, **sell, quantity=Decimal("0.010"), reduce_only=True)
                # precision: the filters would round it; sent raw, the exchange refuses it
                await rejected(-1111, **base, quantity=Decimal("0.0105"), price=below, check_filters=False)
                await rejected(-4120, local=True, **{**base, "type": "STOP_MARKET"}, quantity=Decimal("0.01"))
                await rejected(
                    -1100, local=True, **{**base, "client_order_id": "bad id!"}, quantity=Decimal("0.01")
                )
                with pytest.raises(RejectedError) as raw:
                    await client.raw_request(
                        NEW_ORDER,
                        {"symbol": SYMBOL, "side": "SELL", "type": "STOP_MARKET", "quantity": "0.010"},
                    )
                assert raw.value.code == -4120
                with pytest.raises(NotFoundError) as missing:
                    await client.get_order(SYMBOL, order_id=987654)
                assert missing.value.code == -2013
                with pytest.raises(NotFoundError) as missing:
                    await client.cancel_order(SYMBOL, client_order_id="never-sent")
                assert missing.value.code == -2011
                with pytest.raises(NotFoundError):
                    await client.cancel_algo_order(algo_id=987654)
                assert await client.get_open_orders(SYMBOL) == []
            finally:
                await client.close()

            bad_secret = await make_client(url, secret="wrong-secret")
            try:
                with pytest.raises(FatalError) as fatal:
                    await bad_secret.get_account_balance()
                assert fatal.value.code == -1022
            finally:
                await bad_secret.close()
            bad_key = await make_client(url, key="no-such-key")
            try:
                with pytest.raises(FatalError) as fatal:
                    await bad_key.get_open_positions()
                assert (fatal.value.code, fatal.value.status) == (-2015, 401)
                assert bad_key.transport.sent["GET /fapi/v3/positionRisk"] == 1  # never retried
            finally:
                await bad_key.close()

    asyncio.run(scenario())
