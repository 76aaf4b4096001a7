"""Symbol specifications and the order filters Binance USDⓈ-M applies (its trading rules).

BTCUSDT and ETHUSDT use today's production values (BTC tick 0.10, step 0.001, min notional
100; ETH tick 0.01, step 0.001, min notional 20).  Any other symbol gets values derived from
its price magnitude: tick = 10^(floor(log10(price)) - 5) (so five significant digits, like the
majors), step = 10^floor(log10(100 / price)) clamped to [0.001, 1000], min notional 5 USDT.

Checks raise :class:`ApiError` with the real codes:

* more decimals than ``pricePrecision`` / ``quantityPrecision`` -> -1111;
* a price within the precision but off the tick grid -> -4014 (what Binance answers for
  e.g. 30000.05 on BTCUSDT; -1111 is kept for too many decimals);
* qty <= 0 -> -4003, qty above ``LOT_SIZE``/``MARKET_LOT_SIZE`` maxQty -> -4005;
* price outside ``[minPrice, maxPrice]`` -> -4013 / -4002;
* ``PERCENT_PRICE``: a BUY above mark x multiplierUp -> -4016, a SELL below mark x
  multiplierDown -> -4024;
* ``MIN_NOTIONAL`` -> -4164 (reduce-only orders are exempt; MARKET orders use the mark price).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from paper_exchange.engine.errors import (
    MSG_NOTIONAL,
    MSG_PRECISION,
    MSG_PRICE_CAP,
    MSG_PRICE_FLOOR,
    MSG_PRICE_MAX,
    MSG_PRICE_MIN,
    MSG_QTY_MAX,
    MSG_QTY_ZERO,
    MSG_TICK,
    ApiError,
)

ZERO = Decimal(0)


@dataclass(frozen=True)
class SymbolSpec:
    """Trading rules of one perpetual contract (the fields of an exchangeInfo symbol)."""

    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_max_qty: Decimal
    min_price: Decimal
    max_price: Decimal
    min_notional: Decimal
    multiplier_up: Decimal
    multiplier_down: Decimal
    price_precision: int
    quantity_precision: int
    onboard_date: int = 1569398400000
    max_num_orders: int = 200
    max_num_algo_orders: int = 200

    def round_price(self, value: float | Decimal) -> Decimal:
        """``value`` rounded half-even onto the tick grid (the one place prices are rounded)."""
        dec = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
        return (dec / self.tick_size).to_integral_value() * self.tick_size

    def fmt_price(self, value: Decimal) -> str:
        """A price as Binance prints it: ``pricePrecision`` decimals."""
        return f"{value:.{self.price_precision}f}"

    def fmt_qty(self, value: Decimal) -> str:
        """A quantity as Binance prints it: ``quantityPrecision`` decimals."""
        return f"{value:.{self.quantity_precision}f}"

    # -- filters --------------------------------------------------------------------------------
    def check_price(self, price: Decimal) -> None:
        """PRICE_FILTER: precision, bounds and tick grid."""
        if decimals(price) > self.price_precision:
            raise ApiError(-1111, MSG_PRECISION)
        if price < self.min_price:
            raise ApiError(-4013, MSG_PRICE_MIN)
        if price > self.max_price:
            raise ApiError(-4002, MSG_PRICE_MAX)
        if (price - self.min_price) % self.tick_size != 0:
            raise ApiError(-4014, MSG_TICK)

    def check_qty(self, qty: Decimal, market: bool) -> None:
        """LOT_SIZE (MARKET_LOT_SIZE for market orders): sign, precision, step grid, maxQty."""
        if qty <= 0:
            raise ApiError(-4003, MSG_QTY_ZERO)
        if (qty - self.min_qty) % self.step_size != 0 or qty < self.min_qty:
            raise ApiError(-1111, MSG_PRECISION)
        if qty > (self.market_max_qty if market else self.max_qty):
            raise ApiError(-4005, MSG_QTY_MAX)

    def check_percent_price(self, side: str, price: Decimal, mark: Decimal) -> None:
        """PERCENT_PRICE against the mark price."""
        if side == "BUY" and price > mark * self.multiplier_up:
            raise ApiError(-4016, MSG_PRICE_CAP)
        if side == "SELL" and price < mark * self.multiplier_down:
            raise ApiError(-4024, MSG_PRICE_FLOOR)

    def check_notional(self, price: Decimal, qty: Decimal) -> None:
        """MIN_NOTIONAL (callers skip it for reduce-only orders)."""
        if price * qty < self.min_notional:
            raise ApiError(-4164, MSG_NOTIONAL.format(_plain(self.min_notional)))


def decimals(value: Decimal) -> int:
    """Significant decimal places of ``value`` (``"30000.10"`` -> 1, ``"3E+4"`` -> 0)."""
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text


def _dec_pow10(exp: int) -> Decimal:
    return Decimal(1).scaleb(exp)


KNOWN: dict[str, SymbolSpec] = {
    "BTCUSDT": SymbolSpec(
        symbol="BTCUSDT",
        base_asset="BTC",
        quote_asset="USDT",
        tick_size=Decimal("0.10"),
        step_size=Decimal("0.001"),
        min_qty=Decimal("0.001"),
        max_qty=Decimal("1000"),
        market_max_qty=Decimal("120"),
        min_price=Decimal("261.10"),
        max_price=Decimal("809484"),
        min_notional=Decimal("100"),
        multiplier_up=Decimal("1.0500"),
        multiplier_down=Decimal("0.9500"),
        price_precision=2,
        quantity_precision=3,
        onboard_date=1569398400000,
    ),
    "ETHUSDT": SymbolSpec(
        symbol="ETHUSDT",
        base_asset="ETH",
        quote_asset="USDT",
        tick_size=Decimal("0.01"),
        step_size=Decimal("0.001"),
        min_qty=Decimal("0.001"),
        max_qty=Decimal("10000"),
        market_max_qty=Decimal("2000"),
        min_price=Decimal("39.86"),
        max_price=Decimal("306177"),
        min_notional=Decimal("20"),
        multiplier_up=Decimal("1.0500"),
        multiplier_down=Decimal("0.9500"),
        price_precision=2,
        quantity_precision=3,
        onboard_date=1569398400000,
    ),
}


def spec_for(symbol: str, reference_price: float) -> SymbolSpec:
    """The spec of ``symbol``: the known table, else values derived from ``reference_price``."""
    if symbol in KNOWN:
        return KNOWN[symbol]
    price = reference_price if reference_price > 0 else 1.0
    tick_exp = math.floor(math.log10(price)) - 5
    step_exp = min(3, max(-3, math.floor(math.log10(100.0 / price))))
    tick = _dec_pow10(tick_exp)
    step = _dec_pow10(step_exp)
    base = symbol[:-4] if symbol.endswith("USDT") else symbol
    return SymbolSpec(
        symbol=symbol,
        base_asset=base,
        quote_asset="USDT",
        tick_size=tick,
        step_size=step,
        min_qty=step,
        max_qty=step * Decimal(10**6),
        market_max_qty=step * Decimal(10**5),
        min_price=tick,
        max_price=Decimal(repr(price * 100)).quantize(tick) if tick_exp < 0 else Decimal(int(price * 100)),
        min_notional=Decimal(5),
        multiplier_up=Decimal("1.0500"),
        multiplier_down=Decimal("0.9500"),
        price_precision=max(0, -tick_exp),
        quantity_precision=max(0, -step_exp),
    )


def parse_decimal(text: str) -> Decimal | None:
    """A plain decimal string as ``Decimal`` (None for anything else: exponents, nan, inf)."""
    if not text or len(text) > 40:
        return None
    body = text[1:] if text[0] in "+-" else text
    if not body or body.count(".") > 1 or not body.replace(".", "").isdigit():
        return None
    return Decimal(text)
