"""``/metrics`` scraped over real HTTP and parsed with prometheus_client's own text parser."""

from __future__ import annotations

import asyncio

import aiohttp
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from coordinator.metrics import Metrics, MetricsServer


async def scrape(metrics: Metrics) -> tuple[int, str, str]:
    server = MetricsServer(metrics, "127.0.0.1", 0)
    await server.start()
    try:
        timeout = aiohttp.ClientTimeout(total=5)
        async with (
            aiohttp.ClientSession(timeout=timeout) as s,
            s.get(f"http://127.0.0.1:{server.port}/metrics") as resp,
        ):
            return resp.status, resp.headers["Content-Type"], await resp.text()
    finally:
        await server.stop()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_scrape_after_updates() -> None:
    m = Metrics()
    m.observe_beat(0.012)
    m.observe_beat(0.3)
    m.observe_vote("a", "ok", 0.004)
    m.observe_vote("a", "ok", 0.006)
    m.observe_vote("b", "deadline", 0.02)
    m.observe_vote("c", "backoff", None)
    m.observe_decision("HOLD", ["LOW_EDGE", "NON_POSITIVE_EV"])
    m.observe_decision("LONG", [])
    m.order_state("FILLED")
    m.order_state("FILLED")
    m.exchange_error(-1021)
    m.rate_limit_weight_used.set(37)
    m.set_account(10_250.5, -12.25, 1)
    m.set_breaker("daily_loss", True)
    m.set_breaker("drawdown", False)
    m.set_model_server_up("a", True)
    m.set_model_server_up("c", False)

    status, ctype, text = asyncio.run(scrape(m))
    assert status == 200
    assert ctype.startswith("text/plain")
    got = samples(text)

    assert got[("xylen_beat_duration_seconds_count", ())] == 2
    assert abs(got[("xylen_beat_duration_seconds_sum", ())] - 0.312) < 1e-9
    assert got[("xylen_beat_duration_seconds_bucket", (("le", "0.025"),))] == 1
    assert got[("xylen_votes_total", (("server", "a"), ("status", "ok")))] == 2
    assert got[("xylen_votes_total", (("server", "b"), ("status", "deadline")))] == 1
    assert got[("xylen_votes_total", (("server", "c"), ("status", "backoff")))] == 1
    assert got[("xylen_vote_latency_seconds_count", (("server", "a"),))] == 2
    assert ("xylen_vote_latency_seconds_count", (("server", "c"),)) not in got
    assert got[("xylen_decisions_total", (("action", "HOLD"), ("reason", "LOW_EDGE")))] == 1
    assert got[("xylen_decisions_total", (("action", "HOLD"), ("reason", "NON_POSITIVE_EV")))] == 1
    assert got[("xylen_decisions_total", (("action", "LONG"), ("reason", "trade")))] == 1
    assert got[("xylen_orders_total", (("state", "FILLED"),))] == 2
    assert got[("xylen_exchange_errors_total", (("code", "-1021"),))] == 1
    assert got[("xylen_rate_limit_weight_used", ())] == 37
    assert got[("xylen_equity_usd", ())] == 10_250.5
    assert got[("xylen_daily_pnl_usd", ())] == -12.25
    assert got[("xylen_open_positions", ())] == 1
    assert got[("xylen_breaker_state", (("breaker", "daily_loss"),))] == 1
    assert got[("xylen_breaker_state", (("breaker", "drawdown"),))] == 0
    assert got[("xylen_model_server_up", (("server", "a"),))] == 1
    assert got[("xylen_model_server_up", (("server", "c"),))] == 0


def test_every_family_prefixed_and_private_registry() -> None:
    m = Metrics()
    names = {f.name for f in text_string_to_metric_families(m.exposition().decode())}
    assert names, "no families exposed"
    assert all(n.startswith("xylen_") for n in names), names
    # two instances never collide, and nothing lands in the process-global registry
    Metrics().equity_usd.set(1)
    assert REGISTRY.get_sample_value("xylen_equity_usd") is None
