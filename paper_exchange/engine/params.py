"""Request parameters (always strings) parsed the way Binance validates them, with its errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal

from paper_exchange.engine.errors import (
    MSG_INVALID_SIDE,
    MSG_INVALID_TIF,
    ApiError,
    illegal,
    invalid_data,
    missing,
)
from paper_exchange.engine.instruments import parse_decimal
from paper_exchange.engine.models import POSITION_SIDES, SIDES, TIME_IN_FORCE, WORKING_TYPES

Params = Mapping[str, str]

_DECIMAL_RANGE = "^([0-9]{1,20})(\\.[0-9]{1,20})?$"
_INT_RANGE = "^[0-9]{1,20}$"
_DECIMAL = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?")


def text(params: Params, name: str, required: bool = False) -> str | None:
    """A parameter as sent (None when absent or empty; -1102 if ``required``)."""
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise missing(name)
        return None
    return value


def required(params: Params, name: str) -> str:
    value = text(params, name, required=True)
    if value is None:
        raise RuntimeError(f"required parameter {name} came back empty")
    return value


def decimal(params: Params, name: str, need: bool = False) -> Decimal | None:
    """A decimal parameter (-1100 for anything but plain digits)."""
    value = text(params, name, need)
    if value is None:
        return None
    parsed = parse_decimal(value) if _DECIMAL.fullmatch(value) else None
    if parsed is None:  # the pattern Binance names: at most 20 digits before and after the point
        raise illegal(name, _DECIMAL_RANGE)
    return parsed


def integer(params: Params, name: str, need: bool = False) -> int | None:
    """A non-negative integer parameter (-1100 otherwise)."""
    value = text(params, name, need)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 20:
        raise illegal(name, _INT_RANGE)
    return int(value)


def boolean(params: Params, name: str, default: bool = False) -> bool:
    """``"true"``/``"false"`` (any case); -1130 otherwise."""
    value = text(params, name)
    if value is None:
        return default
    low = value.lower()
    if low not in ("true", "false"):
        raise invalid_data(name)
    return low == "true"


def side(params: Params) -> str:
    value = required(params, "side")
    if value not in SIDES:
        raise ApiError(-1117, MSG_INVALID_SIDE)
    return value


def time_in_force(params: Params, need: bool) -> str:
    value = text(params, "timeInForce", need)
    if value is None:
        return "GTC"
    if value not in TIME_IN_FORCE:
        raise ApiError(-1115, MSG_INVALID_TIF)
    return value


def position_side(params: Params) -> str | None:
    value = text(params, "positionSide")
    if value is not None and value not in POSITION_SIDES:
        raise ApiError(-4060, "Invalid position side.")
    return value


def working_type(params: Params) -> str:
    value = text(params, "workingType") or "CONTRACT_PRICE"
    if value not in WORKING_TYPES:
        raise ApiError(-4031, "Invalid parameter working type")
    return value


def limit(params: Params, default: int, maximum: int) -> int:
    value = integer(params, "limit")
    if value is None:
        return default
    if value <= 0:
        raise invalid_data("limit")
    return min(value, maximum)
