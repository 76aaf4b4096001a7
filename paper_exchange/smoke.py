"""A short trade through the paper exchange over real HTTP, for ``xylen demo``.

It starts the exchange on an ephemeral 127.0.0.1 port over a fresh database, then, as any
Binance client would (signed requests, form bodies): reads the mark price, sets leverage,
buys at market, protects the position with a STOP_MARKET and a TAKE_PROFIT_MARKET
(``closePosition``), reads the position, cancels the bracket, closes the position and reads
the balance.  Each step is one line of the returned report.
"""

from __future__ import annotations

import tempfile
import urllib.parse
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from paper_exchange.app import create_app
from paper_exchange.auth import sign
from paper_exchange.faults import Faults
from paper_exchange.service import PaperExchangeService, ServiceConfig
from paper_exchange.settings import TransportSettings
from xylen.config.secrets import load_secrets
from xylen.paths import Home
from xylen.timeutil import wall_ms


class _Client:
    """The few signed calls the smoke trade needs, with a timeout on each."""

    def __init__(self, session: aiohttp.ClientSession, base: str, key: str, secret: str) -> None:
        self.session, self.base, self.key, self.secret = session, base, key, secret

    async def call(self, method: str, path: str, params: Mapping[str, str] | None = None) -> Any:
        items = dict(params or {})
        items["timestamp"] = str(wall_ms())
        body = urllib.parse.urlencode(items)
        body += f"&signature={sign(self.secret, body)}"
        headers = {"X-MBX-APIKEY": self.key, "Content-Type": "application/x-www-form-urlencoded"}
        url = f"{self.base}{path}"
        if method == "GET":
            response = await self.session.get(f"{url}?{body}", headers=headers)
        else:
            response = await self.session.request(method, url, data=body, headers=headers)
        async with response:
            payload = await response.json()
            if response.status != 200:
                raise RuntimeError(f"{method} {path}: HTTP {response.status} {payload}")
            return payload


def _on_tick(price: Decimal, tick: Decimal) -> str:
    return str((price / tick).to_integral_value() * tick)


async def smoke_trade(home: Home, symbol: str = "BTCUSDT") -> list[str]:
    """Run the trade against the candles stored under ``home``; returns the report lines."""
    secrets = load_secrets()
    key, secret = secrets.paper_api_key.get_secret_value(), secrets.paper_api_secret.get_secret_value()
    with tempfile.TemporaryDirectory(prefix="xylen-paper-") as tmp:
        config = replace(
            ServiceConfig.from_home(home, symbols=(symbol,)), db_path=Path(tmp) / "paper_exchange.db"
        )
        service = PaperExchangeService(config)
        settings = TransportSettings(host="127.0.0.1", port=0, api_keys={key: secret})
        runner = web.AppRunner(create_app(service, settings, faults=Faults()), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        try:
            timeout = aiohttp.ClientTimeout(total=10)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                client = _Client(session, f"http://{host}:{port}", key, secret)
                return await _trade(client, symbol, f"http://{host}:{port}")
        finally:
            await runner.cleanup()


async def _trade(client: _Client, symbol: str, url: str) -> list[str]:
    info = await client.call("GET", "/fapi/v1/exchangeInfo")
    spec = next(s for s in info["symbols"] if s["symbol"] == symbol)
    tick = Decimal(next(f["tickSize"] for f in spec["filters"] if f["filterType"] == "PRICE_FILTER"))
    mark = Decimal((await client.call("GET", "/fapi/v1/premiumIndex", {"symbol": symbol}))["markPrice"])
    lines = [f"paper exchange on {url}: {symbol} mark {mark} at replay time (tick {tick})"]
    await client.call("POST", "/fapi/v1/leverage", {"symbol": symbol, "leverage": "5"})
    entry = await client.call(
        "POST",
        "/fapi/v1/order",
        {
            "symbol": symbol,
            "side": "BUY",
            "type": "MARKET",
            "quantity": "0.010",
            "newOrderRespType": "RESULT",
        },
    )
    lines.append(f"MARKET BUY 0.010: {entry['status']} at {entry['avgPrice']} (order {entry['orderId']})")
    legs = []
    for kind, factor in (("STOP_MARKET", Decimal("0.99")), ("TAKE_PROFIT_MARKET", Decimal("1.01"))):
        algo = await client.call(
            "POST",
            "/fapi/v1/algoOrder",
            {
                "algoType": "CONDITIONAL",
                "symbol": symbol,
                "side": "SELL",
                "type": kind,
                "triggerPrice": _on_tick(mark * factor, tick),
                "closePosition": "true",
            },
        )
        legs.append(algo)
    lines.append(
        "bracket: " + ", ".join(f"{a['orderType']} at {a['triggerPrice']} ({a['algoStatus']})" for a in legs)
    )
    risk = await client.call("GET", "/fapi/v3/positionRisk", {"symbol": symbol})
    pos = risk[0]
    lines.append(
        f"position {pos['positionAmt']} at {pos['entryPrice']}, unrealised {pos['unRealizedProfit']}, "
        f"liquidation {pos['liquidationPrice']}"
    )
    for algo in legs:
        await client.call("DELETE", "/fapi/v1/algoOrder", {"algoId": str(algo["algoId"])})
    close = await client.call(
        "POST",
        "/fapi/v1/order",
        {
            "symbol": symbol,
            "side": "SELL",
            "type": "MARKET",
            "quantity": "0.010",
            "reduceOnly": "true",
            "newOrderRespType": "RESULT",
        },
    )
    balance = await client.call("GET", "/fapi/v2/balance")
    usdt = next(b for b in balance if b["asset"] == "USDT")
    lines.append(
        f"closed at {close['avgPrice']}: bracket cancelled, balance {usdt['balance']} USDT after fees"
    )
    return lines
