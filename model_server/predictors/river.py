"""River backend: an online logistic regression that does no harm until it has shown skill.

A River model directory holds ``metadata.json`` (feature names, version, ATR multiples) and,
optionally, ``river.pkl`` (a pickled state written by :meth:`RiverPredictor.save`); without it the
model starts fresh; the server then replays the feedback buffer into it before serving, so a
restart loses nothing.  ``river.pkl`` is unpickled, so a model directory must be as trusted as the
server's code.

Three parts answer together:

* the **learner**: River's standard scaler, each scaled feature clipped to ``[-5, 5]``, then a
  logistic regression trained by SGD with a decaying learning rate (``lr / sqrt(t)``), gradient
  clipping and an L2 penalty, so a heavy-tailed feature or a burst of outcomes cannot blow its
  weights up;
* the **constant**: the running base rate, a decayed count of ups (:class:`BaseRate`);
* the **calibrator**: Platt scaling refitted on the learner's own prequential record (its raw
  log-odds before each outcome was learned), shrunk toward the base rate
  (:class:`PlattCalibrator`).

Every outcome is first scored (predict, then learn): the calibrated answer and the constant's, each
against the outcome, as decayed mean log-losses (:class:`PrequentialScore`).  The model answers
the base rate until it has learned ``min_outcomes`` outcomes and its calibrated prequential
log-loss beats the constant's by ``margin`` nats; after that it answers the calibrated
probability, and falls back to the base rate whenever it stops beating the constant.
"""

from __future__ import annotations

import math
import pickle  # nosec B403 # only model files this system wrote into its own models folder
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_server.online import BaseRate, PlattCalibrator, PrequentialScore
from model_server.predictors.base import F32, F64, MissingFeatures, ModelLoadError, Predictor, read_metadata
from xylen.contract import ModelMetadata
from xylen.fileio import atomic_write_bytes
from xylen.probability import clip_probability, logit, sigmoid

MODEL_FILE = "river.pkl"
FEATURE_CLIP = 5.0  # scaled features beyond 5 standard deviations are clipped


def clip_features(x: dict[str, float]) -> dict[str, float]:
    """Scaled features clipped to ``[-FEATURE_CLIP, FEATURE_CLIP]`` (a module function: picklable)."""
    c = FEATURE_CLIP
    return {k: (c if v > c else -c if v < -c else v) for k, v in x.items()}


def fresh_pipeline(learning_rate: float = 0.01, l2: float = 1e-3, clip_gradient: float = 1.0) -> Any:
    """The learner: standardise, clip, then logistic regression with a decaying SGD step."""
    from river import compose, linear_model, optim, preprocessing

    rate = optim.schedulers.InverseScaling(learning_rate, power=0.5)
    return compose.Pipeline(  # type: ignore[no-untyped-call]
        preprocessing.StandardScaler(),  # type: ignore[no-untyped-call]
        compose.FuncTransformer(clip_features),
        linear_model.LogisticRegression(
            optimizer=optim.SGD(rate),  # type: ignore[no-untyped-call]
            l2=l2,
            intercept_lr=rate,
            clip_gradient=clip_gradient,
        ),
    )


@dataclass(frozen=True)
class OnlineConfig:
    """When the learner may answer, and how its record is kept."""

    min_outcomes: int = 2000  # outcomes learned before the model may answer at all
    margin: float = 0.0005  # nats per outcome the calibrated answers must beat the constant by
    half_life: float = 5000.0  # outcomes: decay of the base rate and of the prequential scores
    record: int = 5000  # prequential (raw log-odds, outcome) pairs the calibrator is fitted on
    prior_outcomes: float = 4000.0  # weight of the calibrator's prior toward the base rate
    refit_every: int = 32  # outcomes between two calibrator refits


class RiverPredictor(Predictor):
    """An online River classifier behind the Predictor contract (``learn_one`` works)."""

    backend = "river"
    learns_online = True

    def __init__(
        self,
        metadata: ModelMetadata,
        model: Any,
        n_learned: int = 0,
        model_dir: Path | None = None,
        config: OnlineConfig | None = None,
    ):
        super().__init__(metadata, model_dir)
        self.config = config or OnlineConfig()
        self._model = model
        self.n_learned = n_learned
        self.base = BaseRate(self.config.half_life)
        self.calibrator = PlattCalibrator(self.config.record, self.config.prior_outcomes)
        self.candidate = PrequentialScore(self.config.half_life)  # calibrated answers vs the constant
        self.served = PrequentialScore(self.config.half_life)  # what was answered vs the constant
        self.answering = False  # True once the calibrated model beats the constant

    @classmethod
    def fresh(
        cls, metadata: ModelMetadata, model_dir: Path | None = None, config: OnlineConfig | None = None
    ) -> RiverPredictor:
        return cls(metadata, fresh_pipeline(), 0, model_dir, config)

    @classmethod
    def load(cls, model_dir: Path) -> RiverPredictor:
        """``metadata.json`` plus ``river.pkl`` when present, else a fresh model."""
        metadata = read_metadata(model_dir)
        path = model_dir / MODEL_FILE
        if not path.exists():
            return cls.fresh(metadata, model_dir)
        try:
            import river  # noqa: F401  (unpickling needs it; a clear error when missing)

            state = pickle.loads(path.read_bytes())  # nosec B301 # a model file this system wrote itself
            predictor = cls(metadata, state["model"], int(state["n_learned"]), model_dir, state.get("config"))
            predictor._restore(state)
            return predictor
        except ImportError as exc:
            raise ModelLoadError(f"river cannot be imported: {exc}") from exc
        except Exception as exc:  # unpickling can raise almost anything on a corrupt file
            raise ModelLoadError(f"{path}: cannot load the River state: {exc}") from exc

    def _state(self) -> dict[str, Any]:
        return {
            "model": self._model,
            "n_learned": self.n_learned,
            "config": self.config,
            "base": self.base,
            "calibrator": self.calibrator,
            "candidate": self.candidate,
            "served": self.served,
            "answering": self.answering,
        }

    def _restore(self, state: Mapping[str, Any]) -> None:
        """The online record of a saved state (a state saved before it existed starts a new one)."""
        if "base" in state:
            self.base = state["base"]
            self.calibrator = state["calibrator"]
            self.candidate = state["candidate"]
            self.served = state["served"]
            self.answering = bool(state["answering"])

    def save(self, model_dir: Path) -> None:
        """Write ``metadata.json`` and ``river.pkl`` (each atomically) into ``model_dir``."""
        state = pickle.dumps(self._state())
        atomic_write_bytes(model_dir / "metadata.json", self.metadata.model_dump_json(indent=2).encode())
        atomic_write_bytes(model_dir / MODEL_FILE, state)

    @property
    def fitted(self) -> bool:
        """True once the answers depend on the row (the calibrated model beats the constant)."""
        return self.answering

    def _features(self, x: Mapping[str, float]) -> dict[str, float]:
        try:
            return {name: float(x[name]) for name in self.feature_names}
        except KeyError:
            raise MissingFeatures([n for n in self.feature_names if n not in x]) from None

    def raw_logit(self, features: dict[str, float]) -> float:
        """The learner's own, uncalibrated log-odds of "up"."""
        proba = self._model.predict_proba_one(features)
        return logit(float(proba.get(True, 0.5)))

    def calibrated(self, z: float) -> float:
        """The calibrated probability for the learner's raw log-odds ``z``."""
        return clip_probability(sigmoid(self.calibrator.calibrated_logit(z)))

    def _answer(self, features: dict[str, float]) -> float:
        if not self.answering:
            return self.base.rate
        return self.calibrated(self.raw_logit(features))

    def predict_one(self, x: Mapping[str, float]) -> float:
        return self._answer(self._features(x))

    def score_one(self, x: Mapping[str, float]) -> tuple[float, float]:
        """``(served, raw)``: the answer (base rate or calibrated) and the learner's own probability."""
        features = self._features(x)
        z = self.raw_logit(features)
        served = self.calibrated(z) if self.answering else self.base.rate
        return served, sigmoid(z)

    def _predict_matrix(self, rows: F32) -> F64 | F32:
        names = self.feature_names
        out = np.empty(len(rows), dtype=np.float64)
        for k, row in enumerate(rows.tolist()):
            out[k] = self._answer(dict(zip(names, row, strict=True)))
        return out

    def learn_one(self, x: Mapping[str, float], y: int) -> None:
        """Score the answers given before this outcome, record it, then learn it."""
        features = self._features(x)
        label = int(y)
        z = self.raw_logit(features)
        constant = self.base.rate
        candidate = self.calibrated(z) if self.n_learned else constant
        self.candidate.update(candidate, constant, label)
        self.served.update(candidate if self.answering else constant, constant, label)
        self.calibrator.add(z, label)
        self.base.update(label)
        self._model.learn_one(features, bool(label))
        self.n_learned += 1
        cfg = self.config
        if self.n_learned % cfg.refit_every == 0:
            self.calibrator.refit(logit(self.base.rate))
            self.answering = self._beats_constant()

    def _beats_constant(self) -> bool:
        model, constant = self.candidate.model, self.candidate.constant
        if self.n_learned < self.config.min_outcomes or model is None or constant is None:
            return False
        return math.isfinite(model) and model < constant - self.config.margin

    def clone(self) -> RiverPredictor:
        copy = RiverPredictor(self.metadata, None, self.n_learned, self.model_dir, self.config)
        state = pickle.loads(pickle.dumps(self._state()))  # nosec B301 # a deep copy of our own state
        copy._model = state["model"]
        copy._restore(state)
        return copy
