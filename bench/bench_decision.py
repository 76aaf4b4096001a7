"""One whole decision: ``Ensemble.decide()`` on 10 votes, then ``RiskManager.validate()`` (with sizing).

``python bench/bench_decision.py [--runs N]``: ten calibrated models (as in ``bench_ensemble``), a
risk manager over a migrated in-memory store with a fresh snapshot each decision.  Each run times
decide() + proposal_from_decision() + validate() together and prints the median and p99 in
microseconds, and how many decisions traded.  Goal: under 1 ms per decision.
"""

from __future__ import annotations

import argparse
import statistics
import time
from decimal import Decimal

import numpy as np
from bench_ensemble import MODELS, T0, trained_ensemble
from bench_risk import rules

from coordinator.decision import proposal_from_decision
from coordinator.ensemble import Action, Market, Vote
from coordinator.risk import AccountView, MarketView, RiskManager, RiskStore
from coordinator.storage.db import init_db
from xylen.config.schema import RiskConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=20_000)
    args = parser.parse_args()
    ensemble = trained_ensemble(meta=False)
    risk = RiskManager(RiskConfig(), store=RiskStore(init_db(":memory:")), fee_rate=Decimal("0.0005"))
    account = AccountView(
        equity=Decimal(10_000), available_balance=Decimal(9_000), unrealised_pnl=Decimal(0), positions=()
    )
    risk.on_equity(account.equity, account.unrealised_pnl, T0)
    rng = np.random.default_rng(3)
    cases = []
    for _ in range(64):
        p = rng.uniform(0.2, 0.8)
        cases.append(
            [
                Vote(m, float(np.clip(p + rng.normal(0, 0.03), 0, 1)), Action.LONG, 66_200.0, 68_100.0, 1.0)
                for m in MODELS
            ]
        )
    timings: list[float] = []
    traded = approved = 0
    for n in range(args.runs):
        now = T0 + n * 60_000
        market = Market(now, 67_000.0, funding_rate=1e-4, atr=400.0)
        view = MarketView("BTCUSDT", Decimal("67000.0"), Decimal("67000.5"), now - 500, rules())
        start = time.perf_counter()
        decision = ensemble.decide(cases[n % len(cases)], market)
        proposal = proposal_from_decision(decision, "BTCUSDT", 67_000.0)
        if proposal is not None:
            approved += risk.validate(proposal, account, view, now).approved
        timings.append((time.perf_counter() - start) * 1e6)
        traded += proposal is not None
    timings.sort()
    print(
        f"decision (ensemble of 10 votes + risk validate/size): median {statistics.median(timings):.1f} us, "
        f"p99 {timings[int(0.99 * (len(timings) - 1))]:.1f} us over {args.runs} runs "
        f"({traded} trades proposed, {approved} approved); goal < 1000 us"
    )


if __name__ == "__main__":
    main()
