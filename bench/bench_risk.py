"""Cost of one risk decision: ``RiskManager.validate()`` of an unsized entry (which calls ``size()``).

``python bench/bench_risk.py [--runs N] [--method kelly|fixed_fraction|fixed_amount]``: a manager
over a migrated in-memory SQLite store, an account with two open positions, a fresh snapshot; each
run validates a Kelly-sized LONG at a fresh time (so the order-rate window never refuses it and
nothing is written to SQLite: validate() does not touch the disk on the hot path).  Prints the
median and percentiles in microseconds of validate() and of size() alone.  The goal for ensemble
plus risk together is under 1 ms per decision; risk aims well under 0.3 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time
from decimal import Decimal
from typing import Literal, cast

from coordinator.exchange.filters import SymbolRules
from coordinator.risk import (
    AccountView,
    MarketView,
    PositionView,
    RiskManager,
    RiskStore,
    Side,
    TradeProposal,
)
from coordinator.storage.db import init_db
from xylen.config.schema import RiskConfig

D = Decimal
NOW = 1_717_200_000_000
Method = Literal["fixed_fraction", "kelly", "fixed_amount"]


def rules() -> SymbolRules:
    return SymbolRules(
        symbol="BTCUSDT", tick_size=D("0.1"), min_price=D("0.1"), max_price=D("1000000"),
        step_size=D("0.001"), min_qty=D("0.001"), max_qty=D("1000"), market_step_size=D("0.001"),
        market_min_qty=D("0.001"), market_max_qty=D("120"), min_notional=D("100"),
    )  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--method", default="kelly", choices=["kelly", "fixed_fraction", "fixed_amount"])
    args = parser.parse_args()
    method = cast(Method, args.method)
    config = RiskConfig(
        sizing=method, max_open_positions=3, max_exposure_per_symbol_usd=50_000, max_total_exposure_usd=90_000
    )
    manager = RiskManager(config, store=RiskStore(init_db(":memory:")), fee_rate=D("0.0005"))
    account = AccountView(
        equity=D("10000"),
        available_balance=D("8000"),
        unrealised_pnl=D("12.5"),
        positions=(PositionView("ETHUSDT", D("1.5"), D("3500")), PositionView("SOLUSDT", D("-10"), D("150"))),
        leverage=D("2"),
    )
    proposal = TradeProposal("BTCUSDT", Side.BUY, D("67000.1"), D("66200"), D("68100"), D("0.58"))
    manager.on_equity(account.equity, account.unrealised_pnl, NOW)
    validate_us: list[float] = []
    size_us: list[float] = []
    approved = 0
    for i in range(args.runs):
        now = NOW + i * 60_000  # one decision a minute, as the heartbeat does
        market = MarketView("BTCUSDT", D("67000.0"), D("67001.3"), now - 500, rules())
        start = time.perf_counter()
        result = manager.validate(proposal, account, market, now)
        middle = time.perf_counter()
        manager.size(proposal, account, market)
        end = time.perf_counter()
        validate_us.append((middle - start) * 1e6)
        size_us.append((end - middle) * 1e6)
        approved += result.approved
        if i == 0 and not result.approved:
            print("refused:", [v.detail for v in result.violations])
    print(f"risk bench: {args.runs} decisions, sizing {method}, {approved} approved")
    for name, values in (("validate() incl. size()", validate_us), ("size() alone", size_us)):
        print(
            f"  {name:<24} median {statistics.median(values):7.1f} us  "
            f"p90 {percentile(values, 0.9):7.1f} us  p99 {percentile(values, 0.99):7.1f} us"
        )


if __name__ == "__main__":
    main()
