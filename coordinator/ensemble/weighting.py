"""Bayesian model weights with exponential forgetting, the base-rate predictor one of the candidates.

The pool's candidates are the models and the constant base-rate predictor.  Each weight is the
posterior probability of its candidate under an exponentially forgetting likelihood::

    w_i     ∝  new_model_prior · prior_i · exp(-η · L_i)      (a model)
    w_base  ∝  1                                              (the base rate: L = 0 by definition)
    L_i  <-  L_i · 2^(-Δt / half_life)  +  ω · ℓ_i          (at every outcome, Δt in outcome time)
    ℓ_i  =  logloss(q_i, y) - logloss(base, y)

``q_i`` is the model's calibrated probability, ``base`` the base-rate predictor: the frequency of
up-labels decayed with its own, longer half-life, with a Beta(P/2, P/2) prior (``base_prior`` = P
outcomes at one half), taken BEFORE the outcome is counted.  ``L_i`` is thus the model's decayed
log-loss minus the constant's on the same outcomes.  A model no better than the constant keeps ``L``
near zero and its weight near ``new_model_prior / (1 + ...)``, small when ``new_model_prior`` is (0.1
by default): the base rate holds the rest, so a pool of models without skill answers (almost) the base
rate.  A model without outcomes has the same small weight: it has to earn its share by beating the
constant.  A model that did not vote on an outcome is neutral (ℓ = 0).  All models, voters or not,
decay by the same elapsed time, so a model that was good and turned bad loses its lead at the speed of
the half-life and a model that turns good again regains it.  Weights are computed in log space with
the maximum subtracted before ``exp``; a prior of 0 mutes a model.

**Overlapping outcomes.**  A heartbeat every minute with a one-hour horizon labels 60 outcomes per
hour whose price paths overlap: together they carry about the information of one.  Each outcome
therefore counts ``ω = outcome_weight`` (the beat interval over the horizon, at most 1) in the
losses and in the base rate's counts, so evidence is measured in independent horizons and the
weights move at the same speed whatever the beat interval.  Counted one per beat, a few hours of
one market move would swing the weights and the base rate from one end to the other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from coordinator.ensemble.calibration import EPS
from xylen.probability import clip_probability

MS_PER_HOUR = 3_600_000
BASE_RATE = "_base_rate"
"""The key of the base-rate predictor's weight in :meth:`BayesianWeights.weights`."""


def binary_log_loss(q: float, y: int) -> float:
    """``-log q`` if ``y`` else ``-log(1 - q)`` with ``q`` clipped."""
    q = clip_probability(q, EPS)
    return -math.log(q) if y else -math.log1p(-q)


@dataclass(slots=True)
class ModelWeightState:
    """One model's prior and decayed cumulative relative log-loss."""

    prior: float
    loss: float = 0.0


class BayesianWeights:
    """The weights of all known models, updated one outcome at a time."""

    def __init__(
        self,
        priors: Mapping[str, float],
        *,
        half_life_hours: float,
        learning_rate: float,
        default_prior: float = 1.0,
        new_model_prior: float = 1.0,
        base_half_life_hours: float | None = None,
        base_prior: float = 2.0,
        outcome_weight: float = 1.0,
    ) -> None:
        self.new_model_prior = new_model_prior
        self.half_life_ms = half_life_hours * MS_PER_HOUR
        self.base_half_life_ms = (base_half_life_hours or half_life_hours) * MS_PER_HOUR
        self.base_prior = base_prior
        self.outcome_weight = outcome_weight
        self.learning_rate = learning_rate
        self.default_prior = default_prior
        self.models: dict[str, ModelWeightState] = {m: ModelWeightState(float(p)) for m, p in priors.items()}
        self.last_ms: int | None = None
        self.base_up = 0.0  # decayed weighted count of up labels
        self.base_n = 0.0  # decayed weighted count of labels
        self._log_w: dict[str, float] = {}
        self.refresh()

    def ensure(self, model_id: str) -> ModelWeightState:
        """The state of ``model_id``, registering an unknown model with the default prior."""
        state = self.models.get(model_id)
        if state is None:
            state = self.models[model_id] = ModelWeightState(self.default_prior)
            self._log_w[model_id] = self._log_weight(state)
        return state

    @property
    def base_rate(self) -> float:
        """The base-rate predictor: decayed up-frequency with a Beta(P/2, P/2) prior (P = ``base_prior``)."""
        half = 0.5 * self.base_prior
        return (self.base_up + half) / (self.base_n + self.base_prior)

    def update(self, timestamp_ms: int, probs: Mapping[str, float], label: int) -> dict[str, float]:
        """Decay every model's loss to ``timestamp_ms`` and add this outcome's relative losses.

        ``probs`` are the calibrated probabilities of the models that voted.  Returns their
        relative log-losses (unweighted).  An outcome older than the last one decays nothing (Δt = 0).
        """
        if self.last_ms is not None:
            dt = max(0, timestamp_ms - self.last_ms)
            if dt:
                factor = 2.0 ** (-dt / self.half_life_ms)
                for state in self.models.values():
                    state.loss *= factor
                base_factor = 2.0 ** (-dt / self.base_half_life_ms)
                self.base_up *= base_factor
                self.base_n *= base_factor
        self.last_ms = timestamp_ms if self.last_ms is None else max(self.last_ms, timestamp_ms)
        base_loss = binary_log_loss(self.base_rate, label)
        relative: dict[str, float] = {}
        for model_id, q in probs.items():
            state = self.ensure(model_id)
            rel = binary_log_loss(q, label) - base_loss
            state.loss += self.outcome_weight * rel
            relative[model_id] = rel
        if label:
            self.base_up += self.outcome_weight
        self.base_n += self.outcome_weight
        self.refresh()
        return relative

    def _log_weight(self, state: ModelWeightState) -> float:
        if state.prior <= 0.0:
            return -math.inf
        return math.log(state.prior * self.new_model_prior) - self.learning_rate * state.loss

    def refresh(self) -> None:
        self._log_w = {m: self._log_weight(s) for m, s in self.models.items()}

    def usable(self, model_id: str) -> bool:
        """False for a muted model (prior 0).  Unknown models are usable with the default prior."""
        log_w = self._log_w.get(model_id)
        return self.default_prior > 0.0 if log_w is None else log_w > -math.inf

    def log_weight(self, model_id: str, prior: float | None = None) -> float:
        """The unnormalised log-weight of ``model_id`` (the base rate's is 0).

        ``prior`` overrides the stored prior (the ensemble passes the prior of the servers that
        voted); an unknown id has no loss and the default prior.
        """
        state = self.models.get(model_id)
        if prior is None:
            if state is not None:
                return self._log_w.get(model_id, self._log_weight(state))
            prior = self.default_prior
        if prior <= 0.0:
            return -math.inf
        loss = state.loss if state is not None else 0.0
        return math.log(prior * self.new_model_prior) - self.learning_rate * loss

    def weights(
        self, model_ids: Iterable[str] | None = None, priors: Mapping[str, float] | None = None
    ) -> dict[str, float]:
        """Weights over ``model_ids`` (default: every known model) and :data:`BASE_RATE`; sums to 1.

        Unknown ids get the default prior and no loss; ``priors`` overrides the stored priors.
        Muted models get 0; if every model in the set is muted, the base rate gets all the weight.
        """
        ids = [m for m in (list(self.models) if model_ids is None else list(model_ids)) if m != BASE_RATE]
        given = priors or {}
        logs = [self.log_weight(m, given.get(m)) for m in ids] + [0.0]
        top = max(logs)
        raw = [math.exp(v - top) for v in logs]
        total = math.fsum(raw)
        return {m: r / total for m, r in zip([*ids, BASE_RATE], raw, strict=True)}
