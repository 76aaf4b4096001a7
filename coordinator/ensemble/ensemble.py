"""``Ensemble``: calibrate, weight, aggregate, gate and price the votes of one heartbeat.

Pure and synchronous, so it never stalls the event loop: :meth:`Ensemble.decide` reads state
only and takes well under a millisecond for ten votes; :meth:`Ensemble.observe` updates state
(weights, tracking, calibration windows, scheduled refits) and, when a store is given, persists
the result in one transaction before returning, so a restart resumes with the same weights,
calibrators and meta-learner.

A heartbeat, step by step (:meth:`decide`):

1. usable votes: finite ``prob_up`` in [0, 1], first vote per server id, server not muted (prior 0);
2. votes of one model share one weight: votes with the same fingerprint (``Vote.fingerprint``: the
   LightGBM server and its ONNX twin of one training run) are merged into one, their mean raw
   probability, weighted and calibrated as one model under the fingerprint (``Vote.key``); its
   prior is the largest of its servers';
3. each model calibrated (:mod:`~coordinator.ensemble.calibration`) and weighted by its Bayesian
   posterior against the base-rate predictor (:mod:`~coordinator.ensemble.weighting`): a model no
   better than the constant, or without outcomes yet, holds a small share, the base rate the rest;
4. pooled in log-odds, ``z = Σ w_i logit(q_i) + w_base logit(base)``, and recalibrated on the
   ensemble's own outcomes, ``p = σ(a + b z)`` (:mod:`~coordinator.ensemble.pool`); or the
   meta-learner's answer when it is enabled and currently beats the pool out of time;
5. bracket: the weighted mean stop and take-profit distances of the votes that carry both, else
   ATR x ``stop_atr_multiple`` / ``take_profit_atr_multiple``;
6. EV after fees, slippage and funding and the Kelly suggestion (:mod:`~coordinator.ensemble.ev`);
7. gates (:mod:`~coordinator.ensemble.gating`): every HOLD reason that applies.  The disagreement is
   the spread of the votes' calibrated probabilities under their weights renormalised over the votes.

Each :meth:`observe` first scores the pool as it stood (the out-of-sample record behind the pool's
recalibration and :meth:`quality`: log-loss, Brier and ECE against the constant, kept as running
sums over the window), then learns.  The pool's recalibration is refitted on its whole window at
every ``pool_refit_every``-th outcome of its whole count (1: every outcome) and tracked by one cheap
Newton step per outcome in between (:meth:`PoolCalibration.track`), the same live and in a
backtest; a restart refits the window as it was at the last scheduled refit and tracks the
outcomes since, so it resumes with the same map.

Priors: the config's ``ModelServerConfig.weight`` (0 for a disabled server); a model id not in the
config gets ``default_prior``.  On load, the config's prior wins over the stored one.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence

from coordinator.ensemble.calibration import EPS, MIN_BIN, ModelCalibration, interp_one, shrink
from coordinator.ensemble.ev import Costs
from coordinator.ensemble.gating import log_odds_average, weighted_disagreement
from coordinator.ensemble.meta import MetaLearner, MetaRow, meta_features
from coordinator.ensemble.pool import PoolCalibration, PoolQuality, QualitySnapshot
from coordinator.ensemble.resolve import DecisionParams, resolve_fields
from coordinator.ensemble.store import (
    BASE_ROW,
    POOL_ROW,
    EnsembleStore,
    GlobalRecord,
    ModelRecord,
    OutcomeRow,
    RefitRow,
)
from coordinator.ensemble.tracking import ModelStats, ModelTracker, snapshot
from coordinator.ensemble.types import (
    Decision,
    Market,
    Outcome,
    Vote,
    make_decision,
    make_weighted_vote,
)
from coordinator.ensemble.weighting import MS_PER_HOUR, BayesianWeights
from xylen.config.schema import EnsembleConfig, TradingConfig, XylenConfig
from xylen.probability import clip_probability, logit, sigmoid

META_TARGET = "_meta"


class Ensemble:
    """The "Xylen Adaptive Consensus" ensemble (see the module docstring)."""

    def __init__(
        self,
        config: EnsembleConfig,
        trading: TradingConfig,
        priors: Mapping[str, float],
        *,
        store: EnsembleStore | None = None,
        default_prior: float = 1.0,
        bracket_odds: bool = True,
        meta_min_samples: int = 1000,
        window: int = 5000,
        meta_window: int = 20_000,
        history_interval_ms: int = MS_PER_HOUR,
        beat_ms: int | None = None,
    ) -> None:
        self.config = config
        self.priors = dict(priors)
        self.default_prior = default_prior
        self.costs = Costs.from_trading(trading)
        self.horizon_ms = trading.horizon_minutes * 60_000
        # outcomes labelled every beat over a longer horizon overlap: each carries 1/overlap of an
        # independent outcome's information (see coordinator.ensemble.weighting)
        self.overlap = max(1.0, self.horizon_ms / beat_ms) if beat_ms else 1.0
        self.stop_atr_multiple = trading.stop_atr_multiple
        self.take_profit_atr_multiple = trading.take_profit_atr_multiple
        self.bracket_odds = bracket_odds
        self.meta_min_samples = meta_min_samples
        self.window = window
        self.history_interval_ms = history_interval_ms
        self.refit_ms = int(config.calibration_refit_hours * MS_PER_HOUR)
        self._log_odds = config.pooling == "log_odds"
        self._meta_learner = config.meta_learner
        self._params = DecisionParams(
            quorum=config.quorum,
            min_edge=config.min_edge,
            max_disagreement=config.max_disagreement,
            costs_bps=self.costs.total_bps,
            horizon_ms=self.horizon_ms,
            stop_atr_multiple=self.stop_atr_multiple,
            take_profit_atr_multiple=self.take_profit_atr_multiple,
            bracket_odds=bracket_odds,
        )
        self.weighting = BayesianWeights(
            priors,
            half_life_hours=config.weight_half_life_hours,
            learning_rate=config.weight_learning_rate,
            default_prior=default_prior,
            new_model_prior=config.weight_new_model_prior,
            base_half_life_hours=config.base_rate_half_life_hours,
            base_prior=config.base_rate_prior,
            outcome_weight=1.0 / self.overlap,
        )
        self.pool_calibration = PoolCalibration(config.pool_calibration_prior * self.overlap)
        # per-model calibration: as many independent outcomes as without overlap, within the window
        self.calibration_min_samples = min(window, round(config.calibration_min_samples * self.overlap))
        self.calibration_min_bin = max(MIN_BIN, min(round(MIN_BIN * self.overlap), window // 4))
        self.pool_quality = PoolQuality(window)
        self.pool_refit_every = config.pool_refit_every
        self.pool_outcomes = 0  # outcomes the pool ever recorded: it is refitted at each multiple of N
        self._quality: QualitySnapshot | None = None  # built from the running sums when read
        self.members: dict[str, set[str]] = {}
        self.calibrations: dict[str, ModelCalibration] = {}
        self.trackers: dict[str, ModelTracker] = {}
        self.windows: dict[str, deque[tuple[float, float, int]]] = {}
        self.meta = MetaLearner()
        self.meta_rows: deque[MetaRow] = deque(maxlen=meta_window)
        self.last_history_ms: int | None = None
        self._store = store
        if store is not None:
            self._restore(store, dict(priors), meta_window)

    @classmethod
    def from_config(
        cls, config: XylenConfig, store: EnsembleStore | None = None, **kwargs: object
    ) -> Ensemble:
        """An ensemble over the configured model servers (priors = their weights, 0 when disabled),
        its outcomes one heartbeat interval apart."""
        priors = {s.id: (s.weight if s.enabled else 0.0) for s in config.model_servers}
        kwargs.setdefault("beat_ms", round(config.heartbeat.interval_seconds * 1000))
        return cls(config.ensemble, config.trading, priors, store=store, **kwargs)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ state

    def _restore(self, store: EnsembleStore, priors: dict[str, float], meta_window: int) -> None:
        loaded = store.load(self.window, meta_window, self.pool_refit_every)
        for model_id, record in loaded.models.items():
            state = self.weighting.ensure(model_id)
            state.prior = priors.get(model_id, record.prior)
            state.loss = record.loss
            self.trackers[model_id] = record.tracker
            cal = self._calibration(model_id)
            cal.calibrator = record.calibrator
            cal.last_refit_ms = record.last_refit_ms
            self.windows[model_id] = deque(loaded.windows.get(model_id, ()), maxlen=self.window)
        self.weighting.refresh()
        if loaded.state is not None:
            self.weighting.last_ms = loaded.state.last_outcome_ms
            self.weighting.base_up = loaded.state.base_up
            self.weighting.base_n = loaded.state.base_n
            self.last_history_ms = loaded.state.last_history_ms
            self.meta = loaded.state.meta
        if self._meta_learner:
            self.meta_rows.extend(loaded.meta_rows)
        # the window as of the last scheduled refit, refitted, then the outcomes since, tracked
        pending = loaded.pool_count % self.pool_refit_every
        records = loaded.pool
        for pool_record in records[: len(records) - pending]:
            self.pool_quality.add(pool_record)
        self._refit_pool()
        self.pool_outcomes = loaded.pool_count - pending
        for r in records[len(records) - pending :]:
            self._pool_outcome(r.z, r.prob, r.base, r.label)

    def _calibration(self, model_id: str) -> ModelCalibration:
        cal = self.calibrations.get(model_id)
        if cal is None:
            cal = self.calibrations[model_id] = ModelCalibration(self.config.uncalibrated_shrink)
        return cal

    def calibrate(self, model_id: str, prob_up: float) -> float:
        """The calibrated probability of ``model_id``'s raw ``prob_up`` (shrunk while uncalibrated)."""
        cal = self.calibrations.get(model_id)
        if cal is None:
            return ModelCalibration(self.config.uncalibrated_shrink)(prob_up)
        return cal(prob_up)

    def weights(self, model_ids: Sequence[str] | None = None) -> dict[str, float]:
        """Current weights over ``model_ids`` (default: every known model) and the base rate
        (:data:`~coordinator.ensemble.weighting.BASE_RATE`); they sum to 1."""
        return self.weighting.weights(model_ids)

    @property
    def quality_snapshot(self) -> QualitySnapshot:
        """The pool's record against the constant as of the last outcome (built once per outcome,
        when first read: the figures are running sums over the window, see :class:`PoolQuality`)."""
        snap = self._quality
        if snap is None:
            snap = self._quality = self.pool_quality.snapshot(self.pool_calibration)
        return snap

    def quality(self) -> QualitySnapshot:
        """The pool's record on its recent outcomes against the constant (as of the last outcome)."""
        return self.quality_snapshot

    def stats(self) -> dict[str, ModelStats]:
        """Per-model performance: hit rate, log-loss, Brier, ECE (recent window), weight."""
        weights = self.weighting.weights()
        out: dict[str, ModelStats] = {}
        for model_id in self.weighting.models:
            window = self.windows.get(model_id, deque())
            cal = self.calibrations.get(model_id)
            out[model_id] = snapshot(
                model_id,
                self.trackers.get(model_id, ModelTracker()),
                [w[1] for w in window],
                [w[2] for w in window],
                weights.get(model_id, 0.0),
                cal is not None and cal.calibrator is not None,
                tuple(sorted(self.members.get(model_id, ()))),
            )
        return out

    # ------------------------------------------------------------------ decide

    def server_prior(self, server_id: str) -> float:
        """The configured prior of a server (``default_prior`` for one not in the config)."""
        return self.priors.get(server_id, self.default_prior)

    def _pool(
        self, keys: Sequence[str], probs: Sequence[float], priors: Sequence[float]
    ) -> tuple[float, list[float], float]:
        """The pooled log-odds ``z`` of calibrated ``probs`` of models ``keys`` (with ``priors``), the
        models' weights in the order of ``keys`` and the base rate's weight.

        The weights are :meth:`BayesianWeights.weights` over ``keys`` with the given priors, computed
        here without the dictionaries.  ``pooling: skill``: the base rate is a member of the pool;
        ``pooling: log_odds``: the weights are renormalised over the models that voted (the base
        rate's weight is 0).  ``probs`` are calibrated, so already within ``[EPS, 1 - EPS]``.
        """
        weighting = self.weighting
        models = weighting.models
        scale = weighting.new_model_prior
        rate = weighting.learning_rate
        logs: list[float] = []
        for key, prior in zip(keys, priors, strict=True):
            if prior <= 0.0:
                logs.append(-math.inf)
                continue
            state = models.get(key)
            logs.append(math.log(prior * scale) - rate * (state.loss if state is not None else 0.0))
        logs.append(0.0)  # the base rate
        top = max(logs)
        raw = [math.exp(v - top) for v in logs]
        total = math.fsum(raw)
        weights = [r / total for r in raw]
        base_weight = weights.pop()
        to_logit, eps = logit, EPS
        if self._log_odds:
            total = math.fsum(weights)
            weights = [w / total if total > 0.0 else 0.0 for w in weights]
            z = math.fsum([w * to_logit(q, eps) for w, q in zip(weights, probs, strict=True)])
            return z, weights, 0.0
        z = math.fsum([w * to_logit(q, eps) for w, q in zip(weights, probs, strict=True)])
        z += base_weight * to_logit(weighting.base_rate, eps)
        return z, weights, base_weight

    def _answer(self, z: float) -> float:
        """The probability of pooled log-odds ``z``: recalibrated (``skill``) or as is (``log_odds``)."""
        if self._log_odds:
            return clip_probability(sigmoid(z), EPS)
        return self.pool_calibration(z)

    @property
    def params(self) -> DecisionParams:
        """The config values :meth:`decide` uses (logged with every decision; fixed at construction)."""
        return self._params

    def decide(self, votes: Sequence[Vote], market: Market) -> Decision:
        """The decision for one heartbeat (reads state only).

        The steps of the module docstring, written for the per-candle path (a backtest calls it once
        per candle): plain lists and floats, no objects but the answer.
        """
        priors = self.priors
        default_prior = self.default_prior
        seen: set[str] = set()
        grouped: dict[str, list[Vote]] = {}  # model key -> its usable votes (twins share a key)
        group_prior: dict[str, float] = {}  # model key -> the largest prior of its servers
        for vote in votes:
            server = vote.model_id
            prob = vote.prob_up
            prior = priors.get(server, default_prior)
            if server in seen or not 0.0 <= prob <= 1.0 or prior <= 0.0:  # NaN and inf fail the range
                continue
            seen.add(server)
            key = vote.fingerprint or server
            members = grouped.get(key)
            if members is None:
                grouped[key] = [vote]
                group_prior[key] = prior
            else:
                members.append(vote)
                group_prior[key] = max(group_prior[key], prior)
        keys = list(grouped)
        calibrations = self.calibrations
        clip, eps = clip_probability, EPS
        group_probs: list[float] = []
        for key, members in grouped.items():
            if len(members) == 1:
                raw = float(members[0].prob_up)  # what the mean of one vote gives
            else:
                raw = math.fsum(v.prob_up for v in members) / len(members)
            cal = calibrations.get(key)
            if cal is None:
                group_probs.append(shrink(raw, self.config.uncalibrated_shrink))
            elif cal.calibrator is None:
                group_probs.append(shrink(raw, cal.shrink_factor))
            else:
                fitted = cal.calibrator
                group_probs.append(clip(interp_one(raw, fitted.xs, fitted.ys), eps))
        z, group_weights, base_weight = self._pool(keys, group_probs, list(group_prior.values()))
        p = clip(sigmoid(z), eps) if self._log_odds else self.pool_calibration(z)  # _answer(z)
        usable: list[Vote]
        probs: list[float]
        weights: list[float]
        if len(seen) == len(keys):  # no twins: one vote per model
            usable = [members[0] for members in grouped.values()]
            probs, weights = group_probs, group_weights
        else:
            usable, probs, weights = [], [], []
            for members, q, w in zip(grouped.values(), group_probs, group_weights, strict=True):
                share = w / len(members)  # twins split their model's weight
                for v in members:
                    usable.append(v)
                    probs.append(q)
                    weights.append(share)
        disagreement = weighted_disagreement(probs, weights)
        source = "log_odds" if self._log_odds else "pool"
        if self._log_odds and usable:  # exactly what the journal recomputes
            p = log_odds_average(probs, weights)
        if self._meta_learner and self.meta.active and usable:
            row = meta_features(
                self.meta.model_ids,
                dict(zip(keys, group_probs, strict=True)),
                p,
                disagreement,
                market.atr_bps,
                market.funding_rate,
            )
            p = self.meta.predict(row)
            source = "meta"
        legs = [(v.stop_loss, v.take_profit, w) for v, w in zip(usable, weights, strict=True)]
        action, p, confidence, ev, size, stop, take, disagreement, reasons = resolve_fields(
            p, disagreement, len(keys), legs, market, self._params
        )
        return make_decision(
            market.timestamp_ms,
            action,
            p,
            confidence,
            ev,
            size,
            stop,
            take,
            tuple(
                [
                    make_weighted_vote(v.model_id, v.prob_up, q, w)
                    for v, q, w in zip(usable, probs, weights, strict=True)
                ]
            ),
            reasons,
            disagreement,
            source,
            base_weight,
            self._quality or self.quality_snapshot,  # the property, without its call when built
        )

    # ------------------------------------------------------------------ observe

    def observe(self, outcome: Outcome) -> None:
        """Learn from one outcome: pool record, weights, tracking, windows, scheduled refits; then persist."""
        t = outcome.timestamp_ms
        label = 1 if outcome.label else 0
        members: dict[str, list[tuple[str, float]]] = {}
        for m, p in outcome.probs.items():
            if math.isfinite(p) and 0.0 <= p <= 1.0:
                key = outcome.fingerprints.get(m) or m
                members.setdefault(key, []).append((m, float(p)))
        raw = {k: math.fsum(p for _, p in ms) / len(ms) for k, ms in members.items()}
        priors = {k: max(self.server_prior(m) for m, _ in ms) for k, ms in members.items()}
        calibrated = {k: self._calibration(k)(p) for k, p in raw.items()}
        ids = [k for k in calibrated if priors[k] > 0.0]
        probs = [calibrated[k] for k in ids]
        z, weights, _ = self._pool(ids, probs, [priors[k] for k in ids])
        pooled = self._answer(z)
        base = self.weighting.base_rate
        self._pool_outcome(z, pooled, base, label)
        store = self._store
        meta_row: MetaRow | None = None
        if self._meta_learner or store is not None:  # the stacker's row: in memory for it, stored always
            meta_row = MetaRow(
                t,
                {k: calibrated[k] for k in ids},
                pooled,
                weighted_disagreement(probs, weights),
                outcome.market.atr_bps,
                outcome.market.funding_rate,
                label,
            )
            if self._meta_learner:
                self.meta_rows.append(meta_row)
        for key, ms in members.items():
            self.weighting.ensure(key).prior = priors[key]
            self.members.setdefault(key, set()).update(m for m, _ in ms)
        self.weighting.update(t, calibrated, label)
        for model_id, p in raw.items():
            q = calibrated[model_id]
            self.trackers.setdefault(model_id, ModelTracker()).update(q, label, t)
            window = self.windows.setdefault(model_id, deque(maxlen=self.window))
            window.append((p, q, label))
        refits = self._refit_calibrators(t, raw)
        refits += self._refit_meta(t)
        history: list[tuple[int, str, float, float]] = []
        if self.last_history_ms is None or t - self.last_history_ms >= self.history_interval_ms:
            self.last_history_ms = t
            all_weights = self.weighting.weights()
            history = [(t, m, all_weights[m], s.loss) for m, s in self.weighting.models.items()]
        if store is not None and meta_row is not None:
            rows = [
                OutcomeRow(POOL_ROW, t, outcome.decision_ms, z, pooled, label),
                OutcomeRow(BASE_ROW, t, outcome.decision_ms, base, base, label),
            ]
            rows += [OutcomeRow(m, t, outcome.decision_ms, p, calibrated[m], label) for m, p in raw.items()]
            store.save(
                now_ms=t,
                models=self._records(),
                state=GlobalRecord(
                    self.weighting.last_ms,
                    self.weighting.base_up,
                    self.weighting.base_n,
                    self.last_history_ms,
                    self.meta,
                ),
                outcomes=rows,
                meta_row=meta_row,
                history=history,
                refits=refits,
            )

    def _pool_outcome(self, z: float, prob: float, base: float, label: int) -> None:
        """Record one outcome of the pool; refit its recalibration at every ``pool_refit_every``-th
        outcome (of its whole count), else track the optimum with the outcomes in and out."""
        left = self.pool_quality.push(z, prob, base, label)
        self._quality = None
        self.pool_outcomes += 1
        if self.pool_outcomes % self.pool_refit_every == 0:
            self._refit_pool()
        else:
            self.pool_calibration.track(z, label, left, self.pool_quality.mean_z2())

    def _refit_pool(self) -> None:
        """Refit the pool's recalibration on the window (every ``pool_refit_every`` outcomes)."""
        z, _, _, labels = self.pool_quality.columns()
        self.pool_calibration.fit(z, labels)
        self._quality = None

    def _refit_calibrators(self, t: int, raw: Mapping[str, float]) -> list[RefitRow]:
        out: list[RefitRow] = []
        for model_id in raw:
            cal = self._calibration(model_id)
            window = self.windows[model_id]
            if not cal.due(t, len(window), self.calibration_min_samples, self.refit_ms):
                continue
            result = cal.refit([w[0] for w in window], [w[2] for w in window], t, self.calibration_min_bin)
            if result is not None:
                out.append(
                    RefitRow(
                        t,
                        model_id,
                        result.accepted,
                        result.candidate_logloss,
                        result.current_logloss,
                        result.n_fit,
                        result.n_holdout,
                    )
                )
        return out

    def _refit_meta(self, t: int) -> list[RefitRow]:
        if not self.config.meta_learner or len(self.meta_rows) < self.meta_min_samples:
            return []
        if self.meta.last_refit_ms is not None and t - self.meta.last_refit_ms < self.refit_ms:
            return []
        model_ids = sorted({m for row in self.meta_rows for m in row.calibrated})
        evaluation = self.meta.refit(
            model_ids,
            [row.features(model_ids) for row in self.meta_rows],
            [row.log_odds_prob for row in self.meta_rows],
            [row.label for row in self.meta_rows],
            t,
        )
        if evaluation is None:
            return []
        return [
            RefitRow(
                t,
                META_TARGET,
                evaluation.active,
                evaluation.meta_logloss,
                evaluation.baseline_logloss,
                evaluation.n_train,
                evaluation.n_holdout,
            )
        ]

    def _records(self) -> list[ModelRecord]:
        out: list[ModelRecord] = []
        for model_id, state in self.weighting.models.items():
            cal = self.calibrations.get(model_id)
            out.append(
                ModelRecord(
                    model_id,
                    state.prior,
                    state.loss,
                    self.trackers.get(model_id, ModelTracker()),
                    cal.calibrator if cal is not None else None,
                    cal.last_refit_ms if cal is not None else None,
                )
            )
        return out
