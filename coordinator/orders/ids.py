"""Identifiers: intent ids and deterministic ``clientOrderId``s.

A client order id is a pure function of (intent id, leg, attempt): ``xy-<20 hex>-<leg><attempt>``,
where the hex is a BLAKE2b digest of the intent id (80 bits).  The same intent, leg and attempt
always give the same id, so a retried send carries the id of the first and Binance refuses a
duplicate of an open order; a new attempt is a new id.  Every id matches Binance's
``^[\\.A-Z\\:/a-z0-9_-]{1,36}$`` (``clientAlgoId`` uses the same form).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Final

from coordinator.orders.models import OrderKind

PREFIX: Final = "xy-"
BINANCE_CLIENT_ID: Final = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
LEG_CODES: Final = {
    OrderKind.ENTRY: "e",
    OrderKind.STOP_LOSS: "s",
    OrderKind.TAKE_PROFIT: "t",
    OrderKind.CLOSE: "c",
}
_CODE_LEGS: Final = {code: kind for kind, code in LEG_CODES.items()}
_OURS: Final = re.compile(r"^xy-([0-9a-f]{20})-([estc])([1-9][0-9]{0,9})$")
MAX_ATTEMPT: Final = 9_999_999_999


def intent_digest(intent_id: str) -> str:
    """The 20-hex-digit digest of ``intent_id`` embedded in its orders' client ids."""
    if not intent_id:
        raise ValueError("intent_id is empty")
    return hashlib.blake2b(intent_id.encode(), digest_size=10).hexdigest()


def client_order_id(intent_id: str, kind: OrderKind, attempt: int) -> str:
    """The client order id of ``attempt`` (1, 2, ...) of the ``kind`` leg of ``intent_id``."""
    if not 1 <= attempt <= MAX_ATTEMPT:
        raise ValueError(f"attempt must be in 1..{MAX_ATTEMPT}, got {attempt}")
    cid = f"{PREFIX}{intent_digest(intent_id)}-{LEG_CODES[kind]}{attempt}"
    if not BINANCE_CLIENT_ID.match(cid):
        raise ValueError(f"{cid!r} is not a valid Binance client order id")
    return cid


def is_ours(client_id: str) -> bool:
    """Whether ``client_id`` was made by :func:`client_order_id` (orders placed by hand are not)."""
    return _OURS.match(client_id) is not None


def parse_client_order_id(client_id: str) -> tuple[str, OrderKind, int] | None:
    """``(intent digest, leg, attempt)`` of one of our ids, ``None`` for anyone else's."""
    match = _OURS.match(client_id)
    if match is None:
        return None
    return match.group(1), _CODE_LEGS[match.group(2)], int(match.group(3))


def new_intent_id(now_ms: int) -> str:
    """A fresh, sortable intent id: ``i<ms>-<8 random hex>``."""
    return f"i{now_ms}-{secrets.token_hex(4)}"
