"""The lean ``Ensemble.decide()`` gives exactly what the straightforward pipeline gives, on real data.

A replay of real Binance BTCUSDT 5m candles: three models (a LightGBM server and its ONNX twin
sharing a fingerprint, a River server, and a server without fingerprint) vote a probability derived
from the candles; the river vote carries a bracket, the others do not (so the ATR bracket is used when
the river vote is missing); now and then a vote is NaN, duplicated or from a muted server, and the ATR
or the next funding time is unknown.  Outcomes are the real price move over the horizon and are
observed as live (once the horizon has passed), so the calibrators get fitted, the weights move and
the pool is recalibrated.  Every decision of the ensemble is compared with
:func:`reference_decide`, the pipeline written plainly (per-model ``numpy.interp``, the weighting's
own :meth:`BayesianWeights.weights`, ``resolve``), which reads the same state.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from coordinator.ensemble import Action, Decision, Ensemble, Market, Outcome, Vote, WeightedVote
from coordinator.ensemble.calibration import EPS, clip_prob, shrink
from coordinator.ensemble.gating import log_odds_average, weighted_disagreement
from coordinator.ensemble.resolve import resolve
from coordinator.ensemble.weighting import BASE_RATE
from xylen.config.schema import EnsembleConfig, TradingConfig
from xylen.data.importers import read_freqtrade_feather
from xylen.probability import logit, sigmoid

HORIZON = 12  # 5m candles in the default 60-minute horizon
START = 40_000  # a slice of the real history (after any warm-up)
DECISIONS = 3_000
SERVERS = {"gbdt-a": 1.0, "gbdt-b": 0.8, "river": 1.0, "plain": 0.6, "muted": 0.0}


def reference_decide(ens: Ensemble, votes: Sequence[Vote], market: Market) -> Decision:
    """The decision of ``ens`` for ``votes``, computed step by step from its state (see the module)."""
    groups: dict[str, list[Vote]] = {}
    seen: set[str] = set()
    for v in votes:
        prior = ens.priors.get(v.model_id, ens.default_prior)
        if v.model_id in seen or not (math.isfinite(v.prob_up) and 0.0 <= v.prob_up <= 1.0) or prior <= 0:
            continue
        seen.add(v.model_id)
        groups.setdefault(v.fingerprint or v.model_id, []).append(v)
    keys = list(groups)
    priors = {k: max(ens.priors.get(v.model_id, ens.default_prior) for v in vs) for k, vs in groups.items()}
    calibrated = []
    for k in keys:
        raw = math.fsum(v.prob_up for v in groups[k]) / len(groups[k])
        cal = ens.calibrations.get(k)
        if cal is None or cal.calibrator is None:
            calibrated.append(shrink(raw, ens.config.uncalibrated_shrink))
        else:
            calibrated.append(clip_prob(float(np.interp(raw, cal.calibrator.x, cal.calibrator.y))))
    weights = ens.weighting.weights(keys, priors)
    if ens.config.pooling == "log_odds":
        total = math.fsum(weights[k] for k in keys)
        weights = {k: (weights[k] / total if total > 0.0 else 0.0) for k in keys}
        weights[BASE_RATE] = 0.0
        z = math.fsum(weights[k] * logit(q, EPS) for k, q in zip(keys, calibrated, strict=True))
        p = clip_prob(sigmoid(z))
    else:
        z = math.fsum(weights[k] * logit(q, EPS) for k, q in zip(keys, calibrated, strict=True))
        z += weights[BASE_RATE] * logit(ens.weighting.base_rate, EPS)
        pool = ens.pool_calibration
        p = min(1.0 - EPS, max(EPS, sigmoid(max(-math.log(99.0), min(math.log(99.0), pool.a + pool.b * z)))))
    used = [
        (v, q, weights[k] / len(groups[k])) for k, q in zip(keys, calibrated, strict=True) for v in groups[k]
    ]
    probs = [q for _, q, _ in used]
    ws = [w for _, _, w in used]
    disagreement = weighted_disagreement(probs, ws)
    if ens.config.pooling == "log_odds" and used:
        p = log_odds_average(probs, ws)
    legs = [(v.stop_loss, v.take_profit, w) for v, _, w in used]
    r = resolve(p, disagreement, len(keys), legs, market, ens.params)
    return Decision(
        timestamp_ms=market.timestamp_ms,
        action=r.action,
        probability=r.probability,
        confidence=r.confidence,
        expected_value_bps=r.expected_value_bps,
        size_fraction=r.size_fraction,
        stop_loss=r.stop_loss,
        take_profit=r.take_profit,
        votes=tuple(WeightedVote(v.model_id, v.prob_up, q, w) for v, q, w in used),
        reasons=r.reasons,
        disagreement=r.disagreement,
        source="pool" if ens.config.pooling == "skill" else "log_odds",
        base_weight=weights[BASE_RATE],
        quality=ens.quality(),
    )


def replay(candles_path: Path, n: int = DECISIONS) -> Iterator[tuple[list[Vote], Market, int]]:
    """``(votes, market, label)`` per real candle; the label is known ``HORIZON`` candles later."""
    frame = read_freqtrade_feather(candles_path).iloc[START - 20 : START + n + HORIZON]
    close = frame["close"].to_numpy()
    high, low = frame["high"].to_numpy(), frame["low"].to_numpy()
    times = frame["open_time"].to_numpy()
    volume = frame["volume"].to_numpy()
    for i in range(20, 20 + n):
        price = float(close[i])
        atr = float(np.mean(high[i - 14 : i + 1] - low[i - 14 : i + 1]))
        ret_12 = math.log(price / close[i - 12])
        ret_3 = math.log(price / close[i - 3])
        vol_z = (volume[i] - volume[i - 20 : i].mean()) / (volume[i - 20 : i].std() + 1e-9)
        p_gbdt = sigmoid(-40.0 * ret_12)
        p_river = sigmoid(150.0 * ret_3)
        p_plain = 0.5 + 0.2 * math.tanh(0.3 * vol_z) * (1.0 if ret_3 >= 0 else -1.0)
        side = 1.0 if p_river >= 0.5 else -1.0
        votes = [
            Vote("gbdt-a", p_gbdt, fingerprint="gbdt:v1"),
            Vote("gbdt-b", min(1.0, p_gbdt * (1.0 + 1e-6 * (i % 7))), fingerprint="gbdt:v1"),
            Vote("river", p_river, Action.LONG if side > 0 else Action.SHORT,
                 price - side * 1.5 * atr, price + side * 2.0 * atr, fingerprint="river:v2"),
            Vote("plain", p_plain),
        ]  # fmt: skip
        if i % 11 == 0:
            votes.pop(2)  # the river server missed the beat: ATR bracket
        if i % 13 == 0:
            votes.append(Vote("muted", 0.9))
        if i % 17 == 0:
            votes.append(Vote("plain", 0.1))  # a second vote of one server: ignored
        if i % 19 == 0:
            votes[0] = Vote("gbdt-a", math.nan, fingerprint="gbdt:v1")
        if i % 23 == 0:
            votes = [Vote("plain", p_plain)]  # below quorum
        t = int(times[i]) + 300_000  # decided at the candle's close
        market = Market(
            timestamp_ms=t,
            price=price,
            funding_rate=1e-4 * math.sin(i / 40.0),
            atr=None if i % 29 == 0 else atr,
            next_funding_ms=None if i % 2 else t - t % 28_800_000 + 28_800_000,
        )
        label = int(close[i + HORIZON] > price)
        yield votes, market, label


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= 1e-12


def assert_same(lean: Decision, ref: Decision) -> None:
    assert lean.action is ref.action and lean.reasons == ref.reasons and lean.source == ref.source
    for name in ("probability", "confidence", "expected_value_bps", "size_fraction", "stop_loss",
                 "take_profit", "disagreement", "base_weight"):  # fmt: skip
        assert _same(getattr(lean, name), getattr(ref, name)), (name, getattr(lean, name), getattr(ref, name))
    assert len(lean.votes) == len(ref.votes)
    for a, b in zip(lean.votes, ref.votes, strict=True):
        assert a.model_id == b.model_id and a.prob_raw == b.prob_raw
        assert _same(a.prob_calibrated, b.prob_calibrated) and _same(a.weight, b.weight)
    assert lean.timestamp_ms == ref.timestamp_ms and lean.quality is ref.quality


def run_replay(candles_path: Path, pooling: str, n: int = DECISIONS) -> tuple[int, int, int]:
    """Decide every replayed candle with both paths; returns (decisions, trades, exact matches)."""
    config = EnsembleConfig(
        quorum=2,
        calibration_min_samples=200,
        calibration_refit_hours=12,
        pooling=pooling,  # type: ignore[arg-type]
    )
    ens = Ensemble(config, TradingConfig(), SERVERS, window=600, default_prior=0.5)
    pending: list[tuple[list[Vote], Market, int]] = []
    decisions = trades = exact = 0
    calibrated_seen = False
    for votes, market, label in replay(candles_path, n):
        while pending and pending[0][1].timestamp_ms + HORIZON * 300_000 <= market.timestamp_ms:
            old_votes, old_market, old_label = pending.pop(0)
            ens.observe(
                Outcome.from_votes(
                    old_votes, old_market, old_label, old_market.timestamp_ms + HORIZON * 300_000
                )
            )
        lean = ens.decide(votes, market)
        ref = reference_decide(ens, votes, market)
        assert_same(lean, ref)
        exact += repr(lean) == repr(ref)  # repr shows every float exactly (and NaN equal to NaN)
        decisions += 1
        trades += lean.is_trade
        calibrated_seen |= any(c.calibrator is not None for c in ens.calibrations.values())
        pending.append((votes, market, label))
    assert calibrated_seen, "the replay never reached a fitted calibrator"
    return decisions, trades, exact


@pytest.mark.parametrize("pooling", ["skill", "log_odds"])
def test_lean_decide_equals_reference_on_real_replay(btc_5m_path: Path, pooling: str) -> None:
    decisions, trades, exact = run_replay(btc_5m_path, pooling)
    print(f"\n{pooling}: {decisions} real decisions, {trades} trades, {exact} bit-identical to the reference")
    assert decisions == DECISIONS and trades > 0
