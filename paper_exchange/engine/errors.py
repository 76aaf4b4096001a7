"""Binance error replies of the paper exchange: one exception, the real codes and messages.

Every rejection the engine or the service produces is an :class:`ApiError` carrying the
code and message Binance USDⓈ-M uses (Binance's documented
futures error-code list).  The HTTP layer renders it as ``{"code": ..., "msg": ...}`` with
``http_status``.
"""

from __future__ import annotations

from typing import Final


class ApiError(Exception):
    """A request the exchange refuses, with Binance's ``code``, ``msg`` and HTTP status."""

    def __init__(self, code: int, msg: str, http_status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.http_status = http_status

    def to_json(self) -> dict[str, object]:
        """The reply body Binance sends for this error."""
        return {"code": self.code, "msg": self.msg}


CLIENT_ID_PATTERN: Final = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"

MSG_PRECISION: Final = "Precision is over the maximum defined for this asset."
MSG_TICK: Final = "Price not increased by tick size."
MSG_QTY_ZERO: Final = "Quantity less than zero."
MSG_QTY_MAX: Final = "Quantity greater than max quantity."
MSG_PRICE_MIN: Final = "Price less than min price."
MSG_PRICE_MAX: Final = "Price greater than max price."
MSG_PRICE_CAP: Final = "Price is higher than mark price multiplier cap."
MSG_PRICE_FLOOR: Final = "Price is lower than mark price multiplier floor."
MSG_NOTIONAL: Final = "Order's notional must be no smaller than {} (unless you choose reduce only)."
MSG_ALGO_ONLY: Final = (
    "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead."
)
MSG_MARGIN: Final = "Margin is insufficient."
MSG_IMMEDIATE: Final = "Order would immediately trigger."
MSG_REDUCE_ONLY: Final = "ReduceOnly Order is rejected."
MSG_GTX: Final = "Due to the order could not be executed as maker, the Post Only order will be rejected."
MSG_FOK: Final = "Due to the order could not be filled immediately, the FOK order has been rejected."
MSG_UNKNOWN_ORDER: Final = "Unknown order sent."
MSG_NO_ORDER: Final = "Order does not exist."
MSG_MARGIN_SAME: Final = "No need to change margin type."
MSG_MARGIN_ORDERS: Final = "Margin type cannot be changed if there exists open orders."
MSG_MARGIN_POSITION: Final = "Margin type cannot be changed if there exists position."
MSG_DUAL_SAME: Final = "No need to change position side."
MSG_DUAL_ORDERS: Final = "Position side cannot be changed if there exists open orders."
MSG_DUAL_POSITION: Final = "Position side cannot be changed if there exists position."
MSG_POSITION_SIDE: Final = "Order's position side does not match user's setting."
MSG_CLIENT_ID: Final = "Client order id is not valid."
MSG_CLIENT_ID_DUP: Final = "ClientOrderId is duplicated."
MSG_INVALID_SYMBOL: Final = "Invalid symbol."
MSG_INVALID_INTERVAL: Final = "Invalid interval."
MSG_INVALID_TYPE: Final = "Invalid orderType."
MSG_INVALID_SIDE: Final = "Invalid side."
MSG_INVALID_TIF: Final = "Invalid timeInForce."
MSG_LEVERAGE: Final = "Leverage {} is not valid"
MSG_LEVERAGE_MARGIN: Final = "Leverage is smaller than permitted: insufficient margin balance"


def missing(name: str) -> ApiError:
    """-1102: a mandatory parameter was not sent, was empty/null, or malformed."""
    return ApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def illegal(name: str, legal: str) -> ApiError:
    """-1100: illegal characters in a parameter."""
    return ApiError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'.")


def not_required(name: str) -> ApiError:
    """-1106: a parameter sent when not required."""
    return ApiError(-1106, f"Parameter '{name}' sent when not required.")


def invalid_data(name: str) -> ApiError:
    """-1130: data sent for a parameter is not valid."""
    return ApiError(-1130, f"Data sent for parameter '{name}' is not valid.")
