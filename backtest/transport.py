"""An in-process transport: the coordinator's exchange client talking to the paper exchange's
service directly, with no HTTP in between.

The coordinator reaches a venue only through its exchange client (``BinanceFuturesClient`` over a
``Transport``); here the transport's one attempt (:meth:`InProcessTransport.send`) looks the
endpoint up in the paper exchange's route table, calls the same service method its HTTP gateway
would call, and turns the reply into the JSON the HTTP reply would carry (so the client parses the
same bytes' worth of data with the same schemas).  A refusal becomes the exchange error the HTTP
transport would raise for that status and body (:func:`~coordinator.exchange.transport.translate`).

What the HTTP gateway adds and this leaves out, on purpose: request weights and order-count limits
(a backtest is one client with no other traffic), signatures and the timestamp window (nothing
crosses a network), and fault injection.  Each of those is tested with the HTTP transport.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
from pydantic import SecretStr

from coordinator.exchange.auth import Signer
from coordinator.exchange.constants import Endpoint
from coordinator.exchange.priority import Priority
from coordinator.exchange.transport import Transport, translate
from paper_exchange.protocol import API_ERROR_TYPES, error_fields, json_dumps
from paper_exchange.routes import OPTIONAL_ROUTES, ROUTES, Route
from paper_exchange.service import PaperExchangeService

ACCOUNT = "backtest"  # the paper account the backtest trades in (the HTTP gateway uses the API key)


class InProcessTransport(Transport):
    """The paper exchange's service behind the exchange client's transport interface."""

    def __init__(self, service: PaperExchangeService, now_ms: Callable[[], int]) -> None:
        super().__init__(
            "inprocess://paper",
            Signer(SecretStr(ACCOUNT), SecretStr("unused")),
            clock=lambda: now_ms() / 1000.0,
        )
        self.service = service
        self._routes: dict[tuple[str, str], tuple[Route, Callable[..., Any]]] = {}
        for route in ROUTES + OPTIONAL_ROUTES:
            target = getattr(service, route.target, None)
            if callable(target):
                self._routes[(route.method, route.path)] = (route, target)

    async def close(self) -> None:
        """Nothing to close: no session was opened."""

    async def sync_time(self) -> int:
        """The offset is 0: the client and the venue share one clock."""
        self.time_offset_ms = 0
        return 0

    async def send(
        self,
        endpoint: Endpoint,
        params: Mapping[str, str],
        timeout_s: float | None = None,
        priority: Priority | None = None,
    ) -> Any:
        """One call of the service method behind ``endpoint`` (module docstring)."""
        where = f"{endpoint.method} {endpoint.path}"
        self.sent[where] += 1
        found = self._routes.get((endpoint.method, endpoint.path))
        if found is None:
            self.statuses[404] += 1
            body = orjson.dumps(
                {"code": -5000, "msg": f"Path {endpoint.path}, Method {endpoint.method} is invalid"}
            )
            raise translate(endpoint, 404, body, None)
        route, target = found
        values = {k: str(v) for k, v in params.items()}
        try:
            result = target(ACCOUNT, values) if route.security.needs_key else target(values)
        except API_ERROR_TYPES as exc:
            code, msg, status = error_fields(exc)
            self.statuses[status] += 1
            raise translate(endpoint, status, orjson.dumps({"code": code, "msg": msg}), None) from exc
        self.statuses[200] += 1
        # the wire form: Decimals and the like become what an HTTP reply would carry
        return orjson.loads(json_dumps(result))
