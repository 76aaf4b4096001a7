"""Binance request authentication: API key, HMAC-SHA256 signature, timestamp and recvWindow.

Binance's signing rules, in the order they are checked:

1. ``X-MBX-APIKEY`` missing or empty -> 401 ``-2014 "API-key format invalid."``; a key that is not
   configured -> 401 ``-2015 "Invalid API-key, IP, or permissions for action."``.  USER_STREAM
   (listenKey) endpoints stop here: key only.
2. ``signature`` missing -> 400 ``-1102``; ``timestamp`` missing -> ``-1102``, not digits ->
   ``-1100``; ``recvWindow`` not digits -> ``-1100``, above the maximum (60000 by default, the
   fapi value is unverified so Binance spot's is used) -> 400 ``-1131 "recvWindow must be less
   than 60000."``.
3. ``signature`` must equal hex HMAC-SHA256(secret, rawQuery + rawBody) where the
   ``signature=...`` parameter (and the ``&`` before it) is cut out of whichever part carries it.
   The MAC is computed over the exact bytes received, never re-encoded; hex is compared
   case-insensitively with :func:`hmac.compare_digest`.  Mismatch -> 400 ``-1022``.
4. With ``server`` the wall clock (plus the clock-skew fault): ``timestamp >= server + 1000`` ->
   ``-1021 "Timestamp for this request was 1000ms ahead of the server's time."``;
   ``server - timestamp > recvWindow`` -> ``-1021 "Timestamp for this request is outside of the
   recvWindow."``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from paper_exchange.protocol import BinanceError

logger = logging.getLogger(__name__)

MSG_KEY_FORMAT = "API-key format invalid."
MSG_KEY_INVALID = "Invalid API-key, IP, or permissions for action."
MSG_BAD_SIGNATURE = "Signature for this request is not valid."
MSG_OUTSIDE_WINDOW = "Timestamp for this request is outside of the recvWindow."
MSG_AHEAD = "Timestamp for this request was {ms}ms ahead of the server's time."
MSG_MANDATORY = "Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
MSG_ILLEGAL = "Illegal characters found in parameter '{name}'; legal range is '{legal}'."
MSG_RECV_WINDOW = "recvWindow must be less than {max}."
MSG_DUPLICATE = "Duplicate values for a parameter detected."
DIGITS = "^[0-9]{1,20}$"

_SIGNATURE = re.compile(rb"(?:^|&)signature=([^&]*)")


def sign(secret: str | bytes, payload: str | bytes) -> str:
    """Hex HMAC-SHA256 of ``payload``: what a client appends as ``&signature=``."""
    key = secret.encode() if isinstance(secret, str) else secret
    data = payload.encode() if isinstance(payload, str) else payload
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def split_signature(query: bytes, body: bytes) -> tuple[bytes, bytes | None]:
    """``(signed payload, signature)``: query + body with the ``signature`` parameter cut out.

    The query is searched first (GET, and DELETE as ccxt sends it), then the body (python-binance
    and ccxt POST, python-binance DELETE).  ``signature`` is ``None`` when neither carries one.
    """
    match = _SIGNATURE.search(query)
    if match is not None:
        return query[: match.start()] + query[match.end() :] + body, match.group(1)
    match = _SIGNATURE.search(body)
    if match is not None:
        return query + body[: match.start()] + body[match.end() :], match.group(1)
    return query + body, None


def _digits(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 20:
        raise BinanceError(-1100, MSG_ILLEGAL.format(name=name, legal=DIGITS))
    return int(raw)


class Authenticator:
    """Checks API keys and signatures; one precompiled HMAC per configured key."""

    def __init__(
        self,
        api_keys: Mapping[str, str],
        recv_window_default_ms: int = 5000,
        recv_window_max_ms: int = 60_000,
        ahead_tolerance_ms: int = 1000,
    ) -> None:
        self._macs: dict[str, Any] = {
            key: hmac.new(secret.encode(), digestmod=hashlib.sha256) for key, secret in api_keys.items()
        }
        self.recv_window_default_ms = recv_window_default_ms
        self.recv_window_max_ms = recv_window_max_ms
        self.ahead_tolerance_ms = ahead_tolerance_ms

    def account_for(self, api_key: str | None) -> str:
        """The account of a request's ``X-MBX-APIKEY`` (the key itself), or -2014/-2015 with 401."""
        if not api_key:
            raise BinanceError(-2014, MSG_KEY_FORMAT, 401)
        if api_key not in self._macs:
            raise BinanceError(-2015, MSG_KEY_INVALID, 401)
        return api_key

    def verify(
        self, api_key: str, query: bytes, body: bytes, params: Mapping[str, str], server_ms: int
    ) -> None:
        """Check signature, timestamp and recvWindow of a signed request; raise :class:`BinanceError`."""
        payload, signature = split_signature(query, body)
        if not signature:
            raise BinanceError(-1102, MSG_MANDATORY.format(name="signature"))
        timestamp = _digits(params, "timestamp")
        if timestamp is None:
            raise BinanceError(-1102, MSG_MANDATORY.format(name="timestamp"))
        recv_window = _digits(params, "recvWindow")
        if recv_window is None:
            recv_window = self.recv_window_default_ms
        elif recv_window > self.recv_window_max_ms:
            raise BinanceError(-1131, MSG_RECV_WINDOW.format(max=self.recv_window_max_ms))
        mac = self._macs[api_key].copy()
        mac.update(payload)
        if not hmac.compare_digest(mac.hexdigest().encode(), signature.lower()):
            raise BinanceError(-1022, MSG_BAD_SIGNATURE)
        if timestamp >= server_ms + self.ahead_tolerance_ms:
            raise BinanceError(-1021, MSG_AHEAD.format(ms=self.ahead_tolerance_ms))
        if server_ms - timestamp > recv_window:
            raise BinanceError(-1021, MSG_OUTSIDE_WINDOW)


def _decode(part: str) -> str:
    if "%" in part or "+" in part:
        return unquote_plus(part, errors="replace")
    return part


def parse_form(raw: str, into: dict[str, str]) -> None:
    """Add the ``name=value`` pairs of a query string or form body to ``into``.

    ``+`` and percent escapes are decoded; a name repeated within ``raw`` is refused with
    ``-1101`` as Binance does; names already in ``into`` (from another part) are overwritten.
    """
    if not raw:
        return
    seen: set[str] = set()
    for part in raw.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name = _decode(name)
        if name in seen:
            raise BinanceError(-1101, MSG_DUPLICATE)
        seen.add(name)
        into[name] = _decode(value)


def parse_params(query: str, body: str) -> dict[str, str]:
    """Request parameters: the form body first, then the query over it (the query wins)."""
    params: dict[str, str] = {}
    parse_form(body, params)
    parse_form(query, params)
    return params
