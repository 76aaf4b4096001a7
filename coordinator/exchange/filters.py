"""THE one place where prices and quantities meet the exchange's grid.

:class:`SymbolRules` holds a symbol's filters as ``Decimal`` (from exchangeInfo).  Quantities are
rounded DOWN to ``stepSize`` (never more than asked), prices to the nearest ``tickSize`` unless a
rounding is given, both on the grid anchored at ``minQty`` / ``minPrice`` as Binance checks it.
:meth:`SymbolRules.check_order` refuses, locally and without a request, what the exchange would
refuse: out-of-range price or quantity, notional below ``MIN_NOTIONAL`` (reduce-only exempt), a
limit price outside ``PERCENT_PRICE`` of a reference price.  Refusals are
:class:`~coordinator.exchange.errors.RejectedError` with ``local=True`` and Binance's code.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Literal

from coordinator.exchange.errors import RejectedError
from coordinator.exchange.schemas import SymbolInfo

logger = logging.getLogger(__name__)

PriceRounding = Literal["nearest", "down", "up"]
_PRICE_MODES = {"nearest": ROUND_HALF_UP, "down": ROUND_FLOOR, "up": ROUND_CEILING}

CODE_QTY_TOO_SMALL = -4004
CODE_QTY_TOO_LARGE = -4005
CODE_PRICE_TOO_LOW = -4013
CODE_PRICE_TOO_HIGH = -4014  # Binance: "Price greater than max price."
CODE_PRICE_ABOVE_PERCENT = -4016
CODE_PRICE_BELOW_PERCENT = -4024
CODE_NOTIONAL_TOO_SMALL = -4164


def _dec(raw: object, default: str = "0") -> Decimal:
    return Decimal(str(raw)) if raw not in (None, "") else Decimal(default)


def to_grid(value: Decimal, base: Decimal, step: Decimal, rounding: str) -> Decimal:
    """``base + k * step`` for the integer ``k`` that ``rounding`` picks, with ``step``'s exponent."""
    if step <= 0:
        return value
    steps = ((value - base) / step).to_integral_value(rounding=rounding)
    return (base + steps * step).quantize(step)


def fmt(value: Decimal) -> str:
    """A decimal as Binance wants it: fixed point, no exponent."""
    return format(value, "f")


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """A symbol's trading filters, as Decimals."""

    symbol: str
    tick_size: Decimal
    min_price: Decimal
    max_price: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_step_size: Decimal
    market_min_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal
    multiplier_up: Decimal | None = None
    multiplier_down: Decimal | None = None

    @classmethod
    def from_symbol_info(cls, info: SymbolInfo) -> SymbolRules:
        """Rules from one ``exchangeInfo.symbols`` entry (missing filters impose nothing)."""
        price = info.filter("PRICE_FILTER") or {}
        lot = info.filter("LOT_SIZE") or {}
        market = info.filter("MARKET_LOT_SIZE") or lot
        notional = info.filter("MIN_NOTIONAL") or {}
        percent = info.filter("PERCENT_PRICE")
        return cls(
            symbol=info.symbol,
            tick_size=_dec(price.get("tickSize")),
            min_price=_dec(price.get("minPrice")),
            max_price=_dec(price.get("maxPrice")),
            step_size=_dec(lot.get("stepSize")),
            min_qty=_dec(lot.get("minQty")),
            max_qty=_dec(lot.get("maxQty")),
            market_step_size=_dec(market.get("stepSize"), str(lot.get("stepSize", "0"))),
            market_min_qty=_dec(market.get("minQty")),
            market_max_qty=_dec(market.get("maxQty")),
            min_notional=_dec(notional.get("notional", notional.get("minNotional"))),
            multiplier_up=_dec(percent["multiplierUp"]) if percent else None,
            multiplier_down=_dec(percent["multiplierDown"]) if percent else None,
        )

    # -- rounding --------------------------------------------------------------------------------
    def round_price(self, price: Decimal, rounding: PriceRounding = "nearest") -> Decimal:
        """``price`` on the tick grid (nearest by default; ``down``/``up`` for the safe side)."""
        return to_grid(price, self.min_price, self.tick_size, _PRICE_MODES[rounding])

    def round_quantity(self, quantity: Decimal, market: bool = False) -> Decimal:
        """``quantity`` rounded DOWN to the step grid (MARKET_LOT_SIZE for market orders)."""
        step, base = (
            (self.market_step_size, self.market_min_qty) if market else (self.step_size, self.min_qty)
        )
        if quantity < base:  # below the grid's start: round down from zero
            base = Decimal(0)
        return to_grid(quantity, base, step, ROUND_DOWN)

    def round_trigger(self, price: Decimal, rounding: PriceRounding = "nearest") -> Decimal:
        """A trigger (stop) price: the same tick grid as limit prices."""
        return self.round_price(price, rounding)

    # -- checks ----------------------------------------------------------------------------------
    def check_price(self, price: Decimal) -> None:
        """Refuse a price outside ``[minPrice, maxPrice]`` (0 disables a bound)."""
        if self.min_price > 0 and price < self.min_price:
            raise _local(CODE_PRICE_TOO_LOW, f"Price less than min price {fmt(self.min_price)}.")
        if self.max_price > 0 and price > self.max_price:
            raise _local(CODE_PRICE_TOO_HIGH, f"Price greater than max price {fmt(self.max_price)}.")

    def check_quantity(self, quantity: Decimal, market: bool = False) -> None:
        """Refuse a quantity outside the (market) lot size."""
        low, high = (self.market_min_qty, self.market_max_qty) if market else (self.min_qty, self.max_qty)
        if quantity <= 0 or quantity < low:
            raise _local(CODE_QTY_TOO_SMALL, f"Quantity less than min quantity {fmt(low)}.")
        if high > 0 and quantity > high:
            raise _local(CODE_QTY_TOO_LARGE, f"Quantity greater than max quantity {fmt(high)}.")

    def check_notional(self, price: Decimal, quantity: Decimal, reduce_only: bool = False) -> None:
        """Refuse ``price * quantity`` below MIN_NOTIONAL (-4164), unless the order is reduce-only."""
        if reduce_only or self.min_notional <= 0:
            return
        if price * quantity < self.min_notional:
            raise _local(
                CODE_NOTIONAL_TOO_SMALL,
                f"Order's notional must be no smaller than {fmt(self.min_notional)} (unless you choose "
                "reduce only)",
            )

    def check_percent_price(self, side: str, price: Decimal, reference: Decimal) -> None:
        """A BUY needs ``price <= ref * up``, a SELL ``price >= ref * down`` (PERCENT_PRICE)."""
        if self.multiplier_up is not None and side == "BUY" and price > reference * self.multiplier_up:
            limit = self.round_price(reference * self.multiplier_up, "down")
            raise _local(CODE_PRICE_ABOVE_PERCENT, f"Limit price can't be higher than {fmt(limit)}.")
        if self.multiplier_down is not None and side == "SELL" and price < reference * self.multiplier_down:
            limit = self.round_price(reference * self.multiplier_down, "up")
            raise _local(CODE_PRICE_BELOW_PERCENT, f"Limit price can't be lower than {fmt(limit)}.")

    def prepare_order(
        self,
        side: str,
        order_type: str,
        quantity: Decimal,
        price: Decimal | None = None,
        *,
        reduce_only: bool = False,
        reference_price: Decimal | None = None,
        price_rounding: PriceRounding = "nearest",
    ) -> tuple[Decimal, Decimal | None]:
        """Round and check an order; returns ``(quantity, price)`` on the grid or raises locally.

        The notional uses ``price`` (or ``reference_price`` -- the mark -- for market orders; with
        neither, the exchange checks it).  PERCENT_PRICE is checked when ``reference_price`` is given.
        """
        market = order_type == "MARKET"
        qty = self.round_quantity(quantity, market=market)
        self.check_quantity(qty, market=market)
        rounded: Decimal | None = None
        if price is not None:
            rounded = self.round_price(price, price_rounding)
            self.check_price(rounded)
            if reference_price is not None:
                self.check_percent_price(side, rounded, reference_price)
        notional_price = rounded if rounded is not None else reference_price
        if notional_price is not None:
            self.check_notional(notional_price, qty, reduce_only)
        return qty, rounded


def _local(code: int, msg: str) -> RejectedError:
    return RejectedError(msg, code=code, local=True, endpoint="filters")
