"""Request signing: HMAC-SHA256 over the exact bytes sent, as Binance specifies.

``signature = hex HMAC-SHA256(secret, rawQuery + rawBody)``; we put every parameter in ONE part
(the query for GET, the form body otherwise), so the signed payload is that part, and the
signature is appended last.  Parameters keep their insertion order and are percent-encoded
once, here; nothing re-sorts or re-encodes them later.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from urllib.parse import quote

from pydantic import SecretStr

logger = logging.getLogger(__name__)

# Characters Binance parameter values use unescaped (client ids allow ".:/_-").
_SAFE = "-_.~"


def sign(secret: bytes, payload: str) -> str:
    """Hex HMAC-SHA256 of ``payload`` with ``secret``."""
    return hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()


def encode_params(params: Mapping[str, str]) -> str:
    """``name=value&...`` in insertion order, values percent-encoded (``/`` and ``:`` too)."""
    return "&".join(f"{name}={quote(value, safe=_SAFE)}" for name, value in params.items())


class Signer:
    """Holds the API key and secret (never logged, never in a repr) and signs payloads."""

    __slots__ = ("_key", "_secret")

    def __init__(self, api_key: SecretStr, api_secret: SecretStr) -> None:
        self._key = api_key.get_secret_value()
        self._secret = api_secret.get_secret_value().encode()

    def __repr__(self) -> str:
        return "Signer(api_key=**********)"

    @property
    def api_key(self) -> str:
        """The key for the ``X-MBX-APIKEY`` header."""
        return self._key

    def signed_payload(self, params: Mapping[str, str], timestamp_ms: int, recv_window_ms: int) -> str:
        """The encoded parameters plus ``recvWindow``, ``timestamp`` and, last, ``signature``."""
        payload = encode_params(params)
        tail = f"recvWindow={recv_window_ms}&timestamp={timestamp_ms}"
        payload = f"{payload}&{tail}" if payload else tail
        return f"{payload}&signature={sign(self._secret, payload)}"
