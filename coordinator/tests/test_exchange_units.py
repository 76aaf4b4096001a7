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
from coordinator.exchange.rate_limit import RateLimiter, WindowCounter
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
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


MINUTE_START = 1_704_153_600.0  # an exchange minute boundary (2024-01-02 00:00 UTC), in s


def test_window_counter_arithmetic() -> None:
    counter = WindowCounter(60, 60_000, margin_ms=1_000)
    t0 = 1_704_153_600_000 + 10_000  # 10 s into an exchange minute
    assert counter.delay_for(60, t0) == 0.0
    counter.take(50, t0)
    assert counter.delay_for(10, t0) == 0.0
    assert counter.delay_for(11, t0) == pytest.approx(51.0)  # to the boundary plus the margin
    counter.observe_used(55, t0)
    assert counter.used == 55
    counter.observe_used(5, t0)  # the server counted less: keep our higher count
    assert counter.used == 55
    counter.drain(t0)
    assert counter.used == 60 and counter.delay_for(1, t0) == pytest.approx(51.0)
    counter.roll(t0 - 30_000)  # our clock moved back across a boundary: stay in the later window
    assert counter.used == 60


def test_limiter_is_seeded_from_exchange_info() -> None:
    limits = [
        RateLimit(rateLimitType="REQUEST_WEIGHT", interval="MINUTE", intervalNum=1, limit=600),
        RateLimit(rateLimitType="ORDERS", interval="SECOND", intervalNum=10, limit=50),
        RateLimit(rateLimitType="ORDERS", interval="MINUTE", intervalNum=1, limit=100),
    ]
    clock = FakeTime(MINUTE_START + 5)
    limiter = RateLimiter.from_rate_limits(limits, clock=clock, sleep=clock.sleep)
    assert (limiter.weight.limit, limiter.orders_10s.limit, limiter.orders_1m.limit) == (600, 50, 100)
    asyncio.run(limiter.acquire(7, orders=1))
    limiter.reseed([])  # Binance's defaults; what the windows counted stays
    assert (limiter.weight.limit, limiter.orders_10s.limit, limiter.orders_1m.limit) == (2400, 300, 1200)
    assert (limiter.weight.used, limiter.orders_10s.used, limiter.orders_1m.used) == (7, 1, 1)


def test_header_near_the_limit_waits_for_the_next_window_not_a_refill() -> None:
    clock = FakeTime(MINUTE_START + 30)  # 30 s left in the exchange's minute
    limiter = RateLimiter(2400, 300, 1200, clock=clock, sleep=clock.sleep)

    async def scenario() -> None:
        limiter.observe({c.USED_WEIGHT_HEADER: "2390"})
        assert limiter.used_weight == 2390
        await limiter.acquire(10)  # 2400: still fits
        assert clock.sleeps == []
        await limiter.acquire(20)
        # A bucket refilling 40/s would have sent it after 0.25 s, into the exchange's full window.
        assert clock.sleeps == [pytest.approx(31.0)]  # 30 s to the boundary + the 1 s margin
        assert limiter.weight.used == 20  # counted in the new window

    asyncio.run(scenario())


def test_weight_window_restarts_exactly_at_the_boundary_plus_margin() -> None:
    clock = FakeTime(MINUTE_START + 10)
    limiter = RateLimiter(100, 300, 1200, clock=clock, sleep=clock.sleep)
    boundary = MINUTE_START + 60

    async def scenario() -> None:
        await limiter.acquire(100)
        clock.now = boundary  # the exchange's new minute, but our estimate may be 1 s early
        assert limiter.delay_for(1) == pytest.approx(1.0)
        clock.now = boundary + 0.999
        assert limiter.delay_for(1) == pytest.approx(0.001)
        clock.now = boundary + 1.0
        assert limiter.delay_for(100) == 0.0
        await limiter.acquire(100)
        assert clock.sleeps == [] and limiter.weight.used == 100

    asyncio.run(scenario())


def test_requests_near_the_boundary_count_in_both_windows() -> None:
    clock = FakeTime(MINUTE_START + 58.9)  # more than the margin before the exchange's boundary
    limiter = RateLimiter(100, 300, 1200, clock=clock, sleep=clock.sleep)

    async def scenario() -> None:
        await limiter.acquire(30)  # surely in this minute on the exchange too
        clock.now = MINUTE_START + 59.5  # within the margin: the exchange may already count the next
        await limiter.acquire(20)
        assert limiter.weight.used == 50
        clock.now = MINUTE_START + 61.0
        assert limiter.delay_for(80) == 0.0 and limiter.weight.used == 20  # carried over
        assert limiter.delay_for(81) == pytest.approx(60.0)

    asyncio.run(scenario())


def test_orders_windows_of_10_s_and_1_minute() -> None:
    clock = FakeTime(MINUTE_START + 2)
    limiter = RateLimiter(2400, 3, 5, clock=clock, sleep=clock.sleep)

    async def scenario() -> None:
        for _ in range(3):
            await limiter.acquire(1, orders=1)
        assert clock.sleeps == []
        await limiter.acquire(1, orders=1)  # the 4th order in this 10 s window
        assert clock.sleeps == [pytest.approx(9.0)]  # to :10 plus the margin, exactly
        assert (limiter.orders_10s.used, limiter.orders_1m.used) == (1, 4)
        await limiter.acquire(1, orders=1)
        await limiter.acquire(1)  # no order: the order windows do not matter
        assert len(clock.sleeps) == 1
        await limiter.acquire(1, orders=1)  # the 6th order in this minute waits for the next
        assert clock.sleeps[-1] == pytest.approx(50.0)  # from :11 to 1:01
        assert (limiter.orders_10s.used, limiter.orders_1m.used) == (1, 1)
        limiter.observe({c.ORDER_COUNT_10S_HEADER: "3", c.ORDER_COUNT_1M_HEADER: "2"})
        assert (limiter.orders_10s.used, limiter.orders_1m.used) == (3, 2)
        await limiter.acquire(1, orders=1)  # the server counted 3 in these 10 s
        assert clock.sleeps[-1] == pytest.approx(10.0)

    asyncio.run(scenario())


def test_a_weight_above_the_limit_goes_alone_in_a_fresh_window() -> None:
    clock = FakeTime(MINUTE_START + 20)
    limiter = RateLimiter(100, 300, 1200, clock=clock, sleep=clock.sleep)

    async def scenario() -> None:
        await limiter.acquire(1)
        await limiter.acquire(150)  # never fits next to anything: it waits for an empty window
        assert clock.sleeps == [pytest.approx(41.0)] and limiter.weight.used == 150
        await limiter.acquire(1)  # and nothing else goes in that window
        assert clock.sleeps[-1] == pytest.approx(60.0)

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
