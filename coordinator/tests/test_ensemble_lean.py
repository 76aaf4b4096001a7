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

The learning side (``observe()``: weights, calibrators, the pool's recalibration and quality) is
checked against golden values: every 25th decision of the same replay and the pool's state then, as
the ensemble computed them before its hot path was made lean (``data/ensemble_replay_golden.json``;
regenerate with ``python -m coordinator.tests.test_ensemble_lean`` only for an intended change).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coordinator.ensemble import Action, Decision, Ensemble, Market, Outcome, Vote, WeightedVote
from coordinator.ensemble.calibration import EPS, interp_one, shrink
from coordinator.ensemble.gating import log_odds_average, weighted_disagreement
from coordinator.ensemble.resolve import resolve
from coordinator.ensemble.weighting import BASE_RATE
from xylen.config.schema import EnsembleConfig, TradingConfig
from xylen.data.importers import read_freqtrade_feather
from xylen.probability import clip_probability, logit, sigmoid

HORIZON = 12  # 5m candles in the default 60-minute horizon
START = 40_000  # a slice of the real history (after any warm-up)
DECISIONS = 3_000
GOLDEN = Path(__file__).parent / "data" / "ensemble_replay_golden.json"
GOLDEN_EVERY = 25
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
            mapped = float(np.interp(raw, cal.calibrator.x, cal.calibrator.y))
            calibrated.append(clip_probability(mapped, EPS))
    weights = ens.weighting.weights(keys, priors)
    if ens.config.pooling == "log_odds":
        total = math.fsum(weights[k] for k in keys)
        weights = {k: (weights[k] / total if total > 0.0 else 0.0) for k in keys}
        weights[BASE_RATE] = 0.0
        z = math.fsum(weights[k] * logit(q, EPS) for k, q in zip(keys, calibrated, strict=True))
        p = clip_probability(sigmoid(z), EPS)
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


def replay_ensemble(pooling: str, pool_refit_every: int = 1) -> Ensemble:
    """The replay's ensemble; the golden values were computed with the pool refitted at every outcome."""
    config = EnsembleConfig(
        quorum=2,
        calibration_min_samples=200,
        calibration_refit_hours=12,
        pooling=pooling,
        pool_refit_every=pool_refit_every,
        min_edge=0.0,
    )
    # The skill weights keep these votes' pool near the base rate: without costs or an edge floor the
    # replay still trades, so the trade paths (bracket, EV, size) are compared too.
    free = TradingConfig(taker_fee_bps=0.0, maker_fee_bps=0.0, slippage_bps=0.0)
    return Ensemble(config, free, SERVERS, window=600, default_prior=0.5, beat_ms=300_000)


def golden_rows(candles_path: Path, pooling: str, n: int = DECISIONS) -> list[list[Any]]:
    """Every ``GOLDEN_EVERY``-th decision of the replay with the pool's state (the golden file's rows)."""
    ens = replay_ensemble(pooling)
    pending: list[tuple[list[Vote], Market, int]] = []
    rows: list[list[Any]] = []
    for i, (votes, market, label) in enumerate(replay(candles_path, n)):
        while pending and pending[0][1].timestamp_ms + HORIZON * 300_000 <= market.timestamp_ms:
            old_votes, old_market, old_label = pending.pop(0)
            ens.observe(
                Outcome.from_votes(
                    old_votes, old_market, old_label, old_market.timestamp_ms + HORIZON * 300_000
                )
            )
        d = ens.decide(votes, market)
        pending.append((votes, market, label))
        if i % GOLDEN_EVERY:
            continue
        q = ens.quality()
        rows.append(
            [d.timestamp_ms, d.action.value, [r.value for r in d.reasons], d.probability,
             d.expected_value_bps, d.size_fraction, d.stop_loss, d.take_profit, d.disagreement, d.base_weight,
             [[v.model_id, v.prob_calibrated, v.weight] for v in d.votes],
             ens.pool_calibration.a, ens.pool_calibration.b, q.n, q.log_loss, q.brier, q.ece,
             ens.weighting.base_rate, {k: s.loss for k, s in sorted(ens.weighting.models.items())}]
        )  # fmt: skip
    return rows


def _close(a: Any, b: Any, where: str) -> None:
    """Equal within 1e-12 (floats, NaN equal to NaN), recursively through lists and dicts."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, float) and isinstance(b, float), where
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-12, (where, a, b)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{where}[{k}]")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    else:
        assert a == b, (where, a, b)


def run_replay(candles_path: Path, pooling: str, n: int = DECISIONS) -> tuple[int, int, int]:
    """Decide every replayed candle with both paths; returns (decisions, trades, exact matches)."""
    ens = replay_ensemble(pooling)
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


@pytest.mark.parametrize("pooling", ["skill", "log_odds"])
def test_replay_matches_the_golden_values(btc_5m_path: Path, pooling: str) -> None:
    golden = json.loads(GOLDEN.read_text())[pooling]
    rows = json.loads(json.dumps(golden_rows(btc_5m_path, pooling)))  # the file's own float round trip
    assert len(rows) == len(golden) == DECISIONS // GOLDEN_EVERY
    _close(rows, golden, pooling)
    assert any(r[1] != "HOLD" for r in rows) and rows[-1][13] == 600  # trades, and a full pool window


def test_interp_one_is_numpy_interp() -> None:
    rng = np.random.default_rng(11)
    for trial in range(200):
        m = int(rng.integers(1, 30))
        xs = np.sort(rng.uniform(0.0, 1.0, m))
        if trial % 3 == 0 and m > 2:
            xs[1], xs[-1] = xs[0], xs[-2]  # repeated thresholds
        ys = np.full(m, 0.3) if trial % 5 == 0 else np.sort(rng.uniform(EPS, 1.0 - EPS, m))
        fx, fy = tuple(float(v) for v in xs), tuple(float(v) for v in ys)
        for p in [*rng.uniform(-0.1, 1.1, 200), *xs, 0.0, 1.0]:
            expected = float(np.interp(float(p), xs, ys))
            assert interp_one(float(p), fx, fy) == expected, (xs, ys, p)
    assert math.isnan(interp_one(math.nan, (0.1, 0.9), (0.2, 0.8)))


if __name__ == "__main__":  # regenerate the golden file (only for an intended change of results)
    from xylen.paths import SHARED_BTC_5M, shared_data_dir

    path = shared_data_dir() / SHARED_BTC_5M
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({p: golden_rows(path, p) for p in ("skill", "log_odds")}) + "\n")
