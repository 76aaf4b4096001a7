"""The ``foreign_weight_per_s`` fault: another client on the IP uses weight continuously.

Unit tests of :class:`RateLimiter` on a hand-moved clock, one of the fault file, and one over
real HTTP on 127.0.0.1 (``X-MBX-USED-WEIGHT-1M`` shows the other client's weight).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from paper_exchange.faults import FaultConfig, Faults, load_fault_config
from paper_exchange.rate_limit import RateLimited, RateLimiter
from paper_exchange.tests.test_transport_support import FakeService, running_app, settings
from xylen.errors import ConfigError

T0_MS = 1_700_000_040_000  # aligned to the minute


def test_foreign_weight_accrues_per_second_and_restarts_with_the_window() -> None:
    limiter = RateLimiter(weight_limit_1m=100, foreign_weight_per_s=30.0)
    assert limiter.charge_weight("ip", 1, T0_MS + 10_000) == 1  # first seen: the other client starts
    assert limiter.used_weight("ip", T0_MS + 11_000) == 31
    assert limiter.used_weight("ip", T0_MS + 12_500) == 1 + 75
    assert limiter.used_weight("other", T0_MS + 12_500) == 0  # an IP never seen has no neighbour
    with pytest.raises(RateLimited) as err:  # 1 + 90 + 10 > 100
        limiter.charge_weight("ip", 10, T0_MS + 13_000)
    assert err.value.http_status == 429
    # the next minute starts from zero, then grows again at 30/s
    assert limiter.used_weight("ip", T0_MS + 60_000) == 0
    assert limiter.charge_weight("ip", 2, T0_MS + 61_000) == 2 + 30


def test_foreign_weight_alone_earns_a_ban_for_a_client_that_keeps_sending() -> None:
    limiter = RateLimiter(weight_limit_1m=50, foreign_weight_per_s=30.0, ban_after_429s=2)
    limiter.charge_weight("ip", 0, T0_MS)
    statuses = []
    for _ in range(3):
        with pytest.raises(RateLimited) as err:
            limiter.charge_weight("ip", 0, T0_MS + 2_000)  # 60 > 50 from the neighbour alone
        statuses.append(err.value.http_status)
    assert statuses == [429, 429, 418]


def test_a_shrunk_weight_window_turns_every_few_seconds() -> None:
    limiter = RateLimiter(weight_limit_1m=10, weight_window_ms=4_000, foreign_weight_per_s=1.0)
    limiter.charge_weight("ip", 10, T0_MS)
    with pytest.raises(RateLimited) as err:
        limiter.charge_weight("ip", 1, T0_MS + 1_000)
    assert err.value.retry_after_s == 3  # to the end of the 4 s window
    assert limiter.charge_weight("ip", 1, T0_MS + 4_000) == 1


def test_fault_file_takes_a_finite_non_negative_rate(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("foreign_weight_per_s: 30\n")
    assert Faults(load_fault_config(good)).foreign_weight_per_s == 30.0
    for bad in ("-1", ".inf", ".nan", "lots"):
        path = tmp_path / "bad.yaml"
        path.write_text(f"foreign_weight_per_s: {bad}\n")
        with pytest.raises(ConfigError, match="foreign_weight_per_s"):
            load_fault_config(path)


def test_used_weight_header_shows_the_neighbour_over_http() -> None:
    fault = Faults(FaultConfig(foreign_weight_per_s=200.0))

    async def scenario() -> None:
        app = running_app(FakeService(), settings(), faults=fault)
        async with app as (url, _app), aiohttp.ClientSession() as session:
            async with session.get(url + "/fapi/v1/ping") as first:
                used_first = int(first.headers["X-MBX-USED-WEIGHT-1M"])
            await asyncio.sleep(0.3)
            async with session.get(url + "/fapi/v1/ping") as second:
                used_second = int(second.headers["X-MBX-USED-WEIGHT-1M"])
        # our two pings cost 2; the neighbour used about 200/s x 0.3 s in between (unless the
        # minute turned in between, then the count restarted)
        assert used_first <= 2 + 10
        assert used_second >= used_first + 40 or used_second < used_first

    asyncio.run(scenario())
