"""Wire schemas: frozen pydantic models with Binance's own field names (REST replies and user-stream events).

These are the exchange's vocabulary, kept apart from the order manager's domain types.  Amounts
arrive as strings and are parsed to ``Decimal`` (never float); an empty string (Binance's "not
set", e.g. ``activatePrice``) becomes ``None``.  Unknown keys are ignored so a venue that adds a
field does not break us; keys we rely on are required.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

logger = logging.getLogger(__name__)


def _blank_to_none(value: Any) -> Any:
    return None if value in ("", None) else value


OptDecimal = Annotated[Decimal | None, BeforeValidator(_blank_to_none)]
ZERO = Decimal(0)


class Wire(BaseModel):
    """Base of every wire model: frozen, extra keys ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


# -- market data and exchangeInfo ------------------------------------------------------------------
class ServerTime(Wire):
    serverTime: int


class RateLimit(Wire):
    rateLimitType: str
    interval: str
    intervalNum: int
    limit: int


class SymbolInfo(Wire):
    """One ``exchangeInfo.symbols`` entry; ``filters`` stay raw here, :mod:`filters` reads them."""

    symbol: str
    status: str
    pricePrecision: int
    quantityPrecision: int
    baseAsset: str = ""
    quoteAsset: str = ""
    marginAsset: str = ""
    filters: tuple[dict[str, Any], ...] = ()
    orderTypes: tuple[str, ...] = ()
    timeInForce: tuple[str, ...] = ()

    def filter(self, filter_type: str) -> dict[str, Any] | None:
        """The filter of this ``filterType``, if the symbol has one."""
        for item in self.filters:
            if item.get("filterType") == filter_type:
                return item
        return None


class ExchangeInfo(Wire):
    serverTime: int = 0
    rateLimits: tuple[RateLimit, ...] = ()
    symbols: tuple[SymbolInfo, ...] = ()


# -- orders ----------------------------------------------------------------------------------------
class Order(Wire):
    """``POST/GET/DELETE /fapi/v1/order`` and ``openOrders`` items (ACK replies lack some amounts)."""

    orderId: int
    symbol: str
    status: str
    clientOrderId: str
    side: str
    type: str
    price: Decimal = ZERO
    avgPrice: Decimal = ZERO
    origQty: Decimal = ZERO
    executedQty: Decimal = ZERO
    cumQuote: Decimal = ZERO
    timeInForce: str = "GTC"
    reduceOnly: bool = False
    closePosition: bool = False
    positionSide: str = "BOTH"
    stopPrice: Decimal = ZERO
    workingType: str = "CONTRACT_PRICE"
    origType: str = ""
    priceProtect: bool = False
    goodTillDate: int = 0
    time: int = 0
    updateTime: int = 0


class AlgoOrder(Wire):
    """``/fapi/v1/algoOrder`` replies and ``openAlgoOrders`` items."""

    algoId: int
    clientAlgoId: str
    algoStatus: str
    symbol: str = ""
    side: str = ""
    orderType: str = ""
    algoType: str = "CONDITIONAL"
    positionSide: str = "BOTH"
    timeInForce: str = "GTC"
    quantity: OptDecimal = None
    triggerPrice: OptDecimal = None
    price: OptDecimal = None
    workingType: str = "CONTRACT_PRICE"
    closePosition: bool = False
    reduceOnly: bool = False
    priceProtect: bool = False
    activatePrice: OptDecimal = None
    callbackRate: OptDecimal = None
    createTime: int = 0
    updateTime: int = 0
    triggerTime: int = 0
    actualOrderId: str | int | None = None
    actualPrice: OptDecimal = None
    actualQty: OptDecimal = None


class AlgoCancel(Wire):
    """``DELETE /fapi/v1/algoOrder``: ``code`` is a string here ("200")."""

    algoId: int
    clientAlgoId: str
    code: str
    msg: str


class UserTrade(Wire):
    id: int
    orderId: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    quoteQty: Decimal = ZERO
    realizedPnl: Decimal = ZERO
    commission: Decimal = ZERO
    commissionAsset: str = ""
    positionSide: str = "BOTH"
    buyer: bool = False
    maker: bool = False
    time: int


class BookTicker(Wire):
    """``GET /fapi/v1/ticker/bookTicker`` (one symbol): the best bid and ask."""

    symbol: str
    bidPrice: Decimal
    bidQty: Decimal = ZERO
    askPrice: Decimal
    askQty: Decimal = ZERO
    time: int = 0


# -- account ---------------------------------------------------------------------------------------
class Income(Wire):
    """``GET /fapi/v1/income`` items; ``income`` is signed as the wallet sees it (paid: negative)."""

    symbol: str = ""
    incomeType: str
    income: Decimal
    asset: str = ""
    info: str = ""
    time: int
    tranId: int = 0
    tradeId: str = ""


class Balance(Wire):
    """``GET /fapi/v3/balance`` items."""

    asset: str
    balance: Decimal
    availableBalance: Decimal
    crossWalletBalance: Decimal = ZERO
    crossUnPnl: Decimal = ZERO
    maxWithdrawAmount: Decimal = ZERO
    accountAlias: str = ""
    updateTime: int = 0


class Position(Wire):
    """``GET /fapi/v3/positionRisk`` items (only symbols with a position or open orders)."""

    symbol: str
    positionSide: str
    positionAmt: Decimal
    entryPrice: Decimal = ZERO
    breakEvenPrice: Decimal = ZERO
    markPrice: Decimal = ZERO
    unRealizedProfit: Decimal = ZERO
    liquidationPrice: Decimal = ZERO
    isolatedMargin: Decimal = ZERO
    notional: Decimal = ZERO
    marginAsset: str = "USDT"
    initialMargin: Decimal = ZERO
    maintMargin: Decimal = ZERO
    updateTime: int = 0


class LeverageChange(Wire):
    leverage: int
    maxNotionalValue: Decimal
    symbol: str


class ListenKey(Wire):
    listenKey: str


# -- user-data stream ------------------------------------------------------------------------------
class OrderUpdateData(Wire):
    """``ORDER_TRADE_UPDATE.o``: Binance's one-letter keys (``x`` execution type, ``X`` status)."""

    s: str
    c: str
    S: str
    o: str
    X: str
    x: str
    i: int
    q: Decimal = ZERO
    p: Decimal = ZERO
    ap: Decimal = ZERO
    sp: Decimal = ZERO
    l: Decimal = ZERO  # noqa: E741 - Binance's name: last filled quantity
    z: Decimal = ZERO
    L: Decimal = ZERO
    n: Decimal = ZERO
    N: str | None = None
    rp: Decimal = ZERO
    f: str = "GTC"
    T: int = 0
    t: int = 0
    m: bool = False
    R: bool = False
    cp: bool = False
    ps: str = "BOTH"
    ot: str = ""
    wt: str = "CONTRACT_PRICE"


class OrderTradeUpdate(Wire):
    e: Literal["ORDER_TRADE_UPDATE"]
    E: int
    T: int = 0
    o: OrderUpdateData


class AlgoUpdateData(Wire):
    """``ALGO_UPDATE.o``: ``caid`` clientAlgoId, ``aid`` algoId, ``X`` algoStatus, ``ai`` order id."""

    caid: str
    aid: int
    X: str
    s: str = ""
    S: str = ""
    o: str = ""
    ps: str = "BOTH"
    q: OptDecimal = None
    tp: OptDecimal = None
    p: OptDecimal = None
    ai: str | int | None = None
    ap: OptDecimal = None
    aq: OptDecimal = None
    wt: str = "CONTRACT_PRICE"
    cp: bool = False
    R: bool = False
    rm: str | None = None


class AlgoUpdate(Wire):
    e: Literal["ALGO_UPDATE"]
    E: int
    T: int = 0
    o: AlgoUpdateData


class BalanceUpdate(Wire):
    a: str
    wb: Decimal
    cw: Decimal = ZERO
    bc: Decimal = ZERO


class PositionUpdate(Wire):
    s: str
    pa: Decimal
    ep: Decimal = ZERO
    up: Decimal = ZERO
    mt: str = ""
    iw: Decimal = ZERO
    ps: str = "BOTH"


class AccountUpdateData(Wire):
    m: str = ""
    B: tuple[BalanceUpdate, ...] = ()
    P: tuple[PositionUpdate, ...] = ()


class AccountUpdate(Wire):
    e: Literal["ACCOUNT_UPDATE"]
    E: int
    T: int = 0
    a: AccountUpdateData


class ListenKeyExpired(Wire):
    e: Literal["listenKeyExpired"]
    E: int
    listenKey: str = ""


class OtherEvent(Wire):
    """Any other event (``TRADE_LITE``, ``ACCOUNT_CONFIG_UPDATE``, ...), kept raw."""

    e: str
    E: int = 0
    raw: dict[str, Any] = Field(default_factory=dict)


UserEvent = OrderTradeUpdate | AlgoUpdate | AccountUpdate | ListenKeyExpired | OtherEvent

_EVENT_TYPES: dict[str, type[OrderTradeUpdate | AlgoUpdate | AccountUpdate | ListenKeyExpired]] = {
    "ORDER_TRADE_UPDATE": OrderTradeUpdate,
    "ALGO_UPDATE": AlgoUpdate,
    "ACCOUNT_UPDATE": AccountUpdate,
    "listenKeyExpired": ListenKeyExpired,
}


def parse_event(raw: dict[str, Any]) -> UserEvent:
    """The typed event for one user-data message (``pydantic.ValidationError`` if it is malformed)."""
    kind = raw.get("e")
    model = _EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if model is None:
        return OtherEvent(e=str(kind), E=int(raw.get("E", 0) or 0), raw=raw)
    return model.model_validate(raw)
