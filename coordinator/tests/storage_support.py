"""Shared helpers of the storage tests: a trained ensemble and simulated beats."""

from __future__ import annotations

import math
import random
from decimal import Decimal

from coordinator.ensemble import Action, Ensemble, Market, Outcome, Vote
from coordinator.storage.journal import Prediction, Snapshot, TradeRecord
from xylen.config.schema import EnsembleConfig, TradingConfig

T0 = 1_717_200_000_000  # 2024-06-01 00:00:00 UTC
STEP = 300_000
MODELS = ("host-a/lgbm", "host-b/onnx", "host-c/river")


def trained_ensemble(seed: int = 7, n: int = 400) -> Ensemble:
    """An ensemble fed ``n`` simulated outcomes: fitted calibrators and unequal weights.

    Model a reports a noisy version of the true probability, b a worse one, c noise.
    """
    config = EnsembleConfig(
        quorum=2,
        min_edge=0.01,
        max_disagreement=0.2,
        calibration_min_samples=50,
        calibration_refit_hours=2,
        weight_half_life_hours=24,
    )
    ens = Ensemble(config, TradingConfig(entry="market"), {m: 1.0 for m in MODELS})
    rng = random.Random(seed)
    for i in range(n):
        p = rng.uniform(0.25, 0.75)
        y = int(rng.random() < p)
        probs = {
            MODELS[0]: min(0.99, max(0.01, p + rng.gauss(0, 0.05))),
            MODELS[1]: min(0.99, max(0.01, 0.5 + 1.5 * (p - 0.5) + rng.gauss(0, 0.15))),
            MODELS[2]: rng.uniform(0.2, 0.8),
        }
        ts = T0 + i * STEP
        ens.observe(Outcome(ts, y, probs, Market(ts - 3_600_000, 100.0, atr=0.5), decision_ms=ts - 3_600_000))
    return ens


def simulated_beat(rng: random.Random, i: int, ts: int) -> tuple[Snapshot, list[Prediction], Market]:
    """A varied beat: brackets from votes or from ATR or none, funding, timeouts, duplicates."""
    price = 100.0 * math.exp(rng.gauss(0, 0.01))
    kind = i % 5
    market = Market(
        timestamp_ms=ts,
        price=price,
        funding_rate=rng.choice([0.0, 0.0001, -0.0002]),
        atr=None if kind == 4 else price * rng.uniform(0.002, 0.01),
        next_funding_ms=rng.choice([None, ts + 1_800_000, ts + 7_200_000]),
    )
    drift = rng.uniform(-0.3, 0.3)
    preds: list[Prediction] = []
    for j, model in enumerate(MODELS):
        p = min(0.99, max(0.01, 0.5 + drift + rng.gauss(0, 0.05)))
        stop = take = None
        if kind in (0, 1) and j < 2:
            up = p >= 0.5
            stop = price * (1 - 0.004) if up else price * (1 + 0.004)
            take = price * (1 + rng.uniform(0.004, 0.012)) if up else price * (1 - rng.uniform(0.004, 0.012))
        action = Action.LONG if p > 0.55 else Action.SHORT if p < 0.45 else Action.HOLD
        if kind == 3 and j == 2:
            preds.append(Prediction(Vote(model, math.nan, latency_ms=250.0), "v1", "river", "timeout"))
            continue
        preds.append(
            Prediction(
                Vote(model, p, action, stop, take, latency_ms=rng.uniform(0.3, 5.0)), f"v{j}", "lightgbm"
            )
        )
    if kind == 2:  # a duplicate answer of model a: the ensemble uses the first only
        preds.append(Prediction(Vote(MODELS[0], 0.9, Action.LONG), "v0", "lightgbm"))
    snap = Snapshot(
        beat_id=f"BTCUSDT-{ts}",
        symbol="BTCUSDT",
        market=market,
        mark_price=price * 1.0001,
        features={"rsi_14": rng.uniform(20, 80), "ret_1": rng.gauss(0, 0.001)},
        feature_version="f1",
    )
    return snap, preds, market


def same_float(a: float | None, b: float | None) -> bool:
    """Exact equality where NaN equals NaN."""
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or a == b


def trade(intent: str, exit_ms: int, pnl: str = "12.5") -> TradeRecord:
    return TradeRecord(
        intent_id=intent,
        symbol="BTCUSDT",
        side="LONG",
        entry_ms=exit_ms - 3_600_000,
        exit_ms=exit_ms,
        entry_price=Decimal("42000.1"),
        exit_price=Decimal("42100.3"),
        qty=Decimal("0.125"),
        realised_pnl=Decimal(pnl),
        fees=Decimal("1.05"),
        funding=Decimal("-0.02"),
        exit_reason="take_profit",
    )
