"""Model server checks: each enabled server healthy, serving the feature version and the symbols.

``GET /health`` gives the status, the loaded model and its symbols.  The feature version is asked
with a probe ``POST /predict`` per symbol that cannot produce a prediction: two candles (too few
for any feature) with this build's ``FEATURE_VERSION``.  The server checks the feature version, the
timeframe and the symbol first (409 naming the mismatch), and only then finds the candles too few
(422), so a 422 means all three match.  A server answering from a model that needs no features (a
fresh online model) may answer 200: a match as well.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from xylen.config.schema import ModelServerConfig, XylenConfig
from xylen.features import FEATURE_VERSION
from xylen.preflight.report import Check, Status, failed, passed, warned

PROBE_CANDLES = [[0, 1.0, 1.0, 1.0, 1.0, 1.0], [300_000, 1.0, 1.0, 1.0, 1.0, 1.0]]


def _probe(symbol: str, timeframe: str) -> dict[str, Any]:
    return {
        "request_id": "preflight-probe",
        "symbol": symbol,
        "timeframe": timeframe,
        "timestamp": 599_999,
        "candles": PROBE_CANDLES,
        "feature_version": FEATURE_VERSION,
    }


async def _detail(resp: aiohttp.ClientResponse) -> str:
    try:
        body = await resp.json(content_type=None)
        return str(body.get("detail", body))[:200] if isinstance(body, dict) else str(body)[:200]
    except (ValueError, aiohttp.ClientError):
        return (await resp.text())[:200]


async def server_check(
    session: aiohttp.ClientSession, server: ModelServerConfig, config: XylenConfig, token: str | None
) -> Check:
    name = f"model {server.id}"
    base = server.url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=max(2.0, server.timeout_ms / 1000.0 * 3))
    try:
        async with session.get(f"{base}/health", timeout=timeout) as resp:
            if resp.status != 200:
                return failed(name, f"{base}/health answered {resp.status}")
            health = await resp.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        return failed(name, f"{base} does not answer /health: {type(exc).__name__} {exc}".strip())
    if health.get("status") != "ok" or not health.get("model_loaded"):
        return failed(name, f"status {health.get('status')}, model loaded: {health.get('model_loaded')}")
    served = list(health.get("symbols") or [])
    wanted = [s for s in config.market.symbols if server.symbols is None or s in server.symbols]
    asked = [s for s in wanted if not served or s in served]
    if not asked:
        return failed(name, f"serves {', '.join(served)}; the config trades {', '.join(wanted)}")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for symbol in asked:
        body = _probe(symbol, config.market.base_interval)
        try:
            async with session.post(f"{base}/predict", json=body, headers=headers, timeout=timeout) as resp:
                if resp.status not in (200, 422):
                    return failed(name, f"{symbol}: /predict answered {resp.status}: {await _detail(resp)}")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return failed(name, f"{symbol}: /predict failed: {type(exc).__name__}")
    detail = (
        f"ok, {health.get('model_type')} {health.get('model_version')}, feature version {FEATURE_VERSION}, "
        f"answers {', '.join(asked)}"
    )
    missing = [s for s in wanted if s not in asked]
    if missing:
        return warned(name, detail + f"; not {', '.join(missing)}")
    return passed(name, detail)


async def model_checks(config: XylenConfig, token: str | None) -> list[Check]:
    """One line per enabled server (asked in parallel), then whether enough answer for the quorum."""
    servers = [s for s in config.model_servers if s.enabled]
    if not servers:
        return [failed("model servers", "no enabled model server in the config")]
    async with aiohttp.ClientSession() as session:
        checks = list(await asyncio.gather(*(server_check(session, s, config, token) for s in servers)))
    healthy = sum(1 for c in checks if c.status is not Status.FAIL)
    quorum = config.ensemble.quorum
    detail = f"{healthy} of {len(servers)} servers usable, ensemble.quorum {quorum}"
    checks.append(failed("model quorum", detail) if healthy < quorum else passed("model quorum", detail))
    return checks
