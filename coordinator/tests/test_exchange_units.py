"""Unit tests of the exchange layer's pure parts: signing, filters, rate limiter, errors, retry, schemas."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from coordinator.exchange import constants as c
from coordinator.exchange.auth import Signer, encode_params, sign
from coordinator.exchange.errors import (
    ClockSkewError,
    FatalError,
    NotFoundError,
    RateLimitError,
    RejectedError,
    RetryableError,
    UnknownOutcomeError,
)
from coordinator.exchange.filters import SymbolRules
from coordinator.exchange.rate_limit import RateLimiter, TokenBucket
from coordinator.exchange.retry import RetryPolicy, is_retryable, with_retries
from coordinator.exchange.schemas import (
    AccountUpdate,
    OrderTradeUpdate,
    OtherEvent,
    RateLimit,
    SymbolInfo,
    parse_event,
)
from coordinator.exchange.transport import translate
from xylen.config.schema import ExchangeConfig, ExchangeMode

VECTOR_SECRET = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
VECTOR_PAYLOAD = (
    "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC"
    "&recvWindow=5000&timestamp=1591702613943"
)
VECTOR_SIGNATURE = "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"

BTC = SymbolInfo.model_validate(
    {
        "symbol": "BTCUSDT",
        "status": "TRADING",
        "pricePrecision": 2,
        "quantityPrecision": 3,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.10", "maxPrice": "1000000", "tickSize": "0.10"},
            {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
            {"filterType": "MARKET_LOT_SIZE", "minQty": "0.001", "maxQty": "120", "stepSize": "0.001"},
            {"filterType": "MIN_NOTIONAL", "notional": "100"},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500"},
        ],
    }
)
RULES = SymbolRules.from_symbol_info(BTC)


# -- signing ---------------------------------------------------------------------------------------
def test_sign_matches_the_reference_vector() -> None:
    assert sign(VECTOR_SECRET.encode(), VECTOR_PAYLOAD) == VECTOR_SIGNATURE


def test_signer_builds_the_reference_payload_with_signature_last() -> None:
    signer = Signer(SecretStr("my-api-key-123"), SecretStr(VECTOR_SECRET))
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "9000"}
    params["timeInForce"] = "GTC"
    signed = signer.signed_payload(params, 1591702613943, 5000)
    assert signed == f"{VECTOR_PAYLOAD}&signature={VECTOR_SIGNATURE}"
    assert "my-api-key-123" not in repr(signer) and VECTOR_SECRET not in repr(signer)


def test_encoding_keeps_order_and_escapes_reserved_characters() -> None:
    assert encode_params({"b": "1", "a": "x:y/z"}) == "b=1&a=x%3Ay%2Fz"
    assert encode_params({}) == ""


# -- filters ---------------------------------------------------------------------------------------
prices = st.decimals(min_value="0.1", max_value="999999", places=6, allow_nan=False, allow_infinity=False)
quantities = st.decimals(min_value="0.001", max_value="999", places=7, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(price=prices, mode=st.sampled_from(["nearest", "down", "up"]))
def test_rounded_prices_are_on_the_tick_grid(price: Decimal, mode: str) -> None:
    rounded = RULES.round_price(price, mode)  # type: ignore[arg-type]
    assert (rounded - RULES.min_price) % RULES.tick_size == 0
    assert abs(rounded - price) <= RULES.tick_size
    if mode == "down":
        assert rounded <= price
    if mode == "up":
        assert rounded >= price
    if mode == "nearest":
        assert abs(rounded - price) <= RULES.tick_size / 2


@settings(max_examples=300, deadline=None)
@given(quantity=quantities, market=st.booleans())
def test_rounded_quantities_are_on_the_step_grid_and_never_larger(quantity: Decimal, market: bool) -> None:
    rounded = RULES.round_quantity(quantity, market=market)
    assert rounded <= quantity
    assert quantity - rounded < RULES.step_size
    assert rounded % RULES.step_size == 0
    assert str(rounded).count(".") == 1 and len(str(rounded).split(".")[1]) == 3


@settings(max_examples=300, deadline=None)
@given(price=st.decimals(min_value="1000", max_value="90000", places=1), quantity=quantities)
def test_min_notional_is_checked_locally(price: Decimal, quantity: Decimal) -> None:
    qty = RULES.round_quantity(quantity)
    if qty * price >= RULES.min_notional:
        RULES.check_notional(price, qty)
    else:
        with pytest.raises(RejectedError) as err:
            RULES.check_notional(price, qty)
        assert err.value.code == -4164 and err.value.local
        RULES.check_notional(price, qty, reduce_only=True)  # reduce-only is exempt


def test_prepare_order_rounds_and_refuses() -> None:
    qty, price = RULES.prepare_order("BUY", "LIMIT", Decimal("0.0109"), Decimal("42000.06"))
    assert (str(qty), str(price)) == ("0.010", "42000.10")
    with pytest.raises(RejectedError) as err:
        RULES.prepare_order("BUY", "LIMIT", Decimal("0.0009"), Decimal("42000"))
    assert err.value.code == -4004
    with pytest.raises(RejectedError) as err:
        RULES.prepare_order("BUY", "MARKET", Decimal("121"), None)
    assert err.value.code == -4005
    with pytest.raises(RejectedError) as err:
        RULES.prepare_order(
            "BUY", "LIMIT", Decimal("0.01"), Decimal("50000"), reference_price=Decimal("40000")
        )
    assert err.value.code == -4016
    with pytest.raises(RejectedError) as err:
        RULES.prepare_order("SELL", "MARKET", Decimal("0.001"), None, reference_price=Decimal("40000"))
    assert err.value.code == -4164


# -- rate limiter ----------------------------------------------------------------------------------
class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_token_bucket_arithmetic() -> None:
    bucket = TokenBucket(60, 60.0, now=0.0)  # 1 token per second
    assert bucket.delay_for(60, 0.0) == 0.0
    bucket.take(50, 0.0)
    assert bucket.delay_for(20, 0.0) == pytest.approx(10.0)
    assert bucket.delay_for(20, 10.0) == 0.0
    bucket.refill(1000.0)
    assert bucket.tokens == 60  # never above capacity
    bucket.observe_used(45, 1000.0)
    assert bucket.tokens == 15
    bucket.observe_used(5, 1000.0)  # the server counted less: keep our lower estimate
    assert bucket.tokens == 15
    bucket.drain(1000.0)
    assert bucket.tokens == 0 and bucket.delay_for(1, 1000.0) == pytest.approx(1.0)


def test_limiter_is_seeded_from_exchange_info() -> None:
    limits = [
        RateLimit(rateLimitType="REQUEST_WEIGHT", interval="MINUTE", intervalNum=1, limit=600),
        RateLimit(rateLimitType="ORDERS", interval="SECOND", intervalNum=10, limit=50),
        RateLimit(rateLimitType="ORDERS", interval="MINUTE", intervalNum=1, limit=100),
    ]
    limiter = RateLimiter.from_rate_limits(limits)
    assert (limiter.weight.capacity, limiter.orders_10s.capacity, limiter.orders_1m.capacity) == (
        600,
        50,
        100,
    )


def test_limiter_waits_for_weight_and_orders_and_obeys_headers() -> None:
    clock = FakeTime()
    limiter = RateLimiter(60, 10, 100, clock=clock, sleep=clock.sleep)

    async def scenario() -> None:
        for _ in range(10):
            await limiter.acquire(5, orders=1)
        assert clock.sleeps == []
        await limiter.acquire(5, orders=1)  # weight 50+5 fits, but the 11th order in 10 s must wait 1 s
        assert clock.sleeps == [pytest.approx(1.0)]
        limiter.observe({c.USED_WEIGHT_HEADER: "60", c.ORDER_COUNT_10S_HEADER: "3"})
        await limiter.acquire(2)
        assert clock.sleeps[-1] == pytest.approx(2.0)  # the server said the minute is spent

    asyncio.run(scenario())


def test_a_429_pauses_every_request_until_retry_after() -> None:
    clock = FakeTime()
    limiter = RateLimiter(2400, 300, 1200, clock=clock, sleep=clock.sleep)

    async def scenario() -> None:
        limiter.pause(7.0)
        assert limiter.paused_for() == pytest.approx(7.0)
        start = clock.now
        await asyncio.gather(limiter.acquire(1), limiter.acquire(1, orders=1))
        assert clock.now - start >= 7.0 and limiter.pauses == 1
        assert limiter.paused_for() == 0.0

    asyncio.run(scenario())


# -- error translation -----------------------------------------------------------------------------
def _body(code: int | None, msg: str) -> bytes:
    return (f'{{"code":{code},"msg":"{msg}"}}' if code is not None else f'{{"msg":"{msg}"}}').encode()


@pytest.mark.parametrize(
    ("endpoint", "status", "code", "msg", "expected"),
    [
        (c.NEW_ORDER, 400, -2019, "Margin is insufficient.", RejectedError),
        (c.GET_ORDER, 400, -2013, "Order does not exist.", NotFoundError),
        (c.CANCEL_ORDER, 400, -2011, "Unknown order sent.", NotFoundError),
        (c.NEW_ORDER, 400, -1021, "Timestamp for this request is outside of the recvWindow.", ClockSkewError),
        (c.BALANCE, 401, -2015, "Invalid API-key, IP, or permissions for action.", FatalError),
        (c.BALANCE, 400, -1022, "Signature for this request is not valid.", FatalError),
        (
            c.NEW_ORDER,
            503,
            None,
            "Unknown error, please check your request or try again later.",
            UnknownOutcomeError,
        ),
        (
            c.GET_ORDER,
            503,
            None,
            "Unknown error, please check your request or try again later.",
            RetryableError,
        ),
        (c.NEW_ORDER, 503, -1001, "Service Unavailable.", RetryableError),
        (
            c.NEW_ORDER,
            500,
            -1000,
            "An unknown error occured while processing the request.",
            UnknownOutcomeError,
        ),
        (c.GET_ORDER, 429, -1003, "Too many requests", RateLimitError),
        (c.NEW_ORDER, 418, -1003, "Way too many requests; IP banned", RateLimitError),
    ],
)
def test_translation_table(
    endpoint: c.Endpoint, status: int, code: int | None, msg: str, expected: type[Exception]
) -> None:
    error = translate(endpoint, status, _body(code, msg), "3")
    assert type(error) is expected
    assert error.code == code and error.status == status and error.msg == msg
    if isinstance(error, RateLimitError):
        assert error.retry_after_s == 3.0 and error.banned == (status == 418)


# -- retry policy ----------------------------------------------------------------------------------
def test_what_may_be_retried() -> None:
    assert is_retryable(RetryableError("x"), c.GET_ORDER)
    assert is_retryable(RetryableError("x"), c.CANCEL_ORDER)
    assert not is_retryable(RetryableError("5xx"), c.NEW_ORDER)  # never blindly
    assert is_retryable(RetryableError("refused", sent=False), c.NEW_ORDER)
    assert is_retryable(RateLimitError("429", retry_after_s=1), c.NEW_ORDER)
    assert not is_retryable(UnknownOutcomeError("x"), c.GET_ORDER)
    assert not is_retryable(RejectedError("x", code=-2019), c.GET_ORDER)
    assert not is_retryable(ClockSkewError("x", code=-1021), c.GET_ORDER)


def test_with_retries_backs_off_then_succeeds_and_resyncs_once() -> None:
    calls: list[int] = []
    resyncs: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RetryableError("boom")
        return "ok"

    async def skewed() -> str:
        calls.append(1)
        raise ClockSkewError("skew", code=-1021)

    async def resync() -> None:
        resyncs.append(1)

    async def scenario() -> None:
        policy = RetryPolicy(attempts=4, base_delay_s=0.001, max_delay_s=0.002)
        assert await with_retries(flaky, c.GET_ORDER, policy, resync) == "ok"
        assert len(calls) == 3
        calls.clear()
        with pytest.raises(ClockSkewError):
            await with_retries(skewed, c.GET_ORDER, policy, resync)
        assert len(calls) == 2 and len(resyncs) == 1  # once, not forever
        calls.clear()
        with pytest.raises(RetryableError):
            await with_retries(flaky, c.NEW_ORDER, policy, resync)
        assert len(calls) == 1

    asyncio.run(scenario())


# -- schemas and constants -------------------------------------------------------------------------
def test_events_parse_to_decimals() -> None:
    event = parse_event(
        {
            "e": "ORDER_TRADE_UPDATE",
            "E": 1568879465651,
            "T": 1568879465650,
            "o": {
                "s": "BTCUSDT",
                "c": "TEST",
                "S": "SELL",
                "o": "LIMIT",
                "q": "0.001",
                "p": "7000",
                "x": "TRADE",
            }
            | {
                "X": "FILLED",
                "i": 8886774,
                "l": "0.001",
                "z": "0.001",
                "L": "7000",
                "n": "0.0028",
                "N": "USDT",
            },
        }
    )
    assert isinstance(event, OrderTradeUpdate) and event.o.X == "FILLED"
    last_fill_price = event.o.L
    assert last_fill_price == Decimal("7000")
    account = parse_event(
        {
            "e": "ACCOUNT_UPDATE",
            "E": 1,
            "a": {
                "m": "ORDER",
                "B": [{"a": "USDT", "wb": "122624.12345678"}],
                "P": [{"s": "BTCUSDT", "pa": "0.001"}],
            },
        }
    )
    assert isinstance(account, AccountUpdate) and account.a.B[0].wb == Decimal("122624.12345678")
    assert isinstance(parse_event({"e": "TRADE_LITE", "E": 5}), OtherEvent)


def test_urls_per_mode() -> None:
    paper = ExchangeConfig(paper_url="http://127.0.0.1:9123")
    assert c.rest_url(paper) == "http://127.0.0.1:9123" and c.ws_url(paper) == "ws://127.0.0.1:9123"
    testnet = ExchangeConfig(mode=ExchangeMode.TESTNET)
    assert c.rest_url(testnet) == c.TESTNET_REST_URL and c.ws_url(testnet) == c.TESTNET_WS_URL
    live = ExchangeConfig(mode=ExchangeMode.LIVE, confirm_live=True)
    assert c.rest_url(live) == c.LIVE_REST_URL and c.ws_url(live) == c.LIVE_WS_URL
