"""Exchange errors, grouped by how the caller reacts to them.

::

    ExchangeError (XylenError)
    ├── RetryableError          nothing was executed; repeat later (after ``retry_after_s`` if set)
    │   ├── RateLimitError      429 / 418 (``banned``): every request paused until Retry-After
    │   └── ClockSkewError      -1021: the clock offset is resynced, the request repeated once
    ├── UnknownOutcomeError     a placement that may have executed (timeout, 503 "Unknown error"):
    │   │                       look the order up by its clientOrderId before doing anything else
    │   └── UnreadableReplyError  a 2xx reply to a placement whose body is not readable JSON: the
    │                           venue accepted the request, only the reply was lost
    ├── RejectedError           the exchange (or the local filters) said no; ``code`` and ``msg``
    │   └── NotFoundError       -2011 / -2013 / -1125: no such order, algo order or listen key
    └── FatalError              auth (-2014 / -2015 / -1022 / 401), bad config: stop and tell a human

Transport errors (aiohttp, timeouts, JSON) never leave the exchange package untranslated.
"""

from __future__ import annotations

import logging

from xylen.errors import XylenError

logger = logging.getLogger(__name__)


class ExchangeError(XylenError):
    """Base of every exchange error: the venue ``code``/``msg`` and HTTP status when there was one."""

    def __init__(
        self,
        msg: str,
        *,
        code: int | None = None,
        status: int | None = None,
        endpoint: str = "",
    ) -> None:
        self.msg = msg
        self.code = code
        self.status = status
        self.endpoint = endpoint
        where = f"{endpoint}: " if endpoint else ""
        tag = f" [{code}]" if code is not None else ""
        http = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{where}{msg}{tag}{http}")


class RetryableError(ExchangeError):
    """Failed without executing; safe to repeat, after ``retry_after_s`` seconds when given.

    ``sent=False``: the request never reached the exchange (no connection), so even an order
    placement may be repeated.
    """

    def __init__(
        self,
        msg: str,
        *,
        retry_after_s: float | None = None,
        sent: bool = True,
        code: int | None = None,
        status: int | None = None,
        endpoint: str = "",
    ) -> None:
        super().__init__(msg, code=code, status=status, endpoint=endpoint)
        self.retry_after_s = retry_after_s
        self.sent = sent


class RateLimitError(RetryableError):
    """429 (too many requests / orders) or 418 (IP banned, ``banned=True``)."""

    def __init__(
        self,
        msg: str,
        *,
        retry_after_s: float | None = None,
        banned: bool = False,
        code: int | None = None,
        status: int | None = None,
        endpoint: str = "",
    ) -> None:
        super().__init__(msg, retry_after_s=retry_after_s, code=code, status=status, endpoint=endpoint)
        self.banned = banned


class ClockSkewError(RetryableError):
    """-1021: the request's timestamp was outside recvWindow of the server's clock."""


class UnknownOutcomeError(ExchangeError):
    """The request may have been executed: an order may exist.  Query it by its client id."""


class UnreadableReplyError(UnknownOutcomeError):
    """A 2xx reply to a non-idempotent request (a placement) whose body could not be parsed.

    The status says the venue accepted and processed the request; only its reply is unreadable
    (truncated, garbled), so the order exists and must be looked up by its client id.
    """


class RejectedError(ExchangeError):
    """The exchange refused the request (or a local filter did, with ``local=True``)."""

    def __init__(
        self,
        msg: str,
        *,
        local: bool = False,
        code: int | None = None,
        status: int | None = None,
        endpoint: str = "",
    ) -> None:
        super().__init__(msg, code=code, status=status, endpoint=endpoint)
        self.local = local


class NotFoundError(RejectedError):
    """The order, algo order or listen key does not exist (-2011, -2013, -1125)."""


class FatalError(ExchangeError):
    """Credentials, permissions or configuration are wrong; retrying cannot help."""
