"""The one ``Predictor`` contract shared by the LightGBM, ONNX and River backends.

A predictor wraps one model version (a model directory: ``metadata.json`` plus the backend's file)
and answers for one feature row given as a ``{name: value}`` dict.  Features are matched **by
name**, never by position: each backend keeps a precomputed ``name -> column`` map and fills a
float32 row in the order the model was trained with, so a dict in any key order gives the same
answer.  Extra keys (``open_time``, features of other models) are ignored; a missing feature is
refused (:class:`MissingFeatures`) rather than guessed.

::

    predict_one(x) -> float        calibrated probability of "up" in [0, 1] (the served prob_up)
    score_one(x) -> (float, float) (calibrated, raw) probability: raw_score is the raw one's logit
    predict_many(xs) -> ndarray    calibrated probabilities of many rows (tests, benchmarks)
    predict_many_raw(xs) -> ndarray  the uncalibrated ones (canary checks of the model itself)
    learn_one(x, y) -> None        online update (River); batch models raise OnlineLearningUnsupported
    clone() -> Predictor           an independent copy with the same state (same answers)
    check_feature_version(v)       raises FeatureVersionMismatch unless v is the model's version

Calibration: when the model directory holds ``calibration.json`` (written by ``xylen train``), its
:class:`model_server.calibration.Calibrator` maps the backend's raw probability to the served one,
the same map for every backend of one model; without the file the map is the identity.

``predict_one`` reuses one preallocated row, so it is meant for one caller at a time (the event
loop); use ``predict_many`` from worker threads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from model_server.calibration import CalibrationError, Calibrator, load_calibrator
from xylen.contract import Backend, ModelMetadata

METADATA_FILE = "metadata.json"
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


class ModelError(Exception):
    """A model version that cannot be used; ``status`` is the HTTP status a reload answers with."""

    status = 422


class ModelLoadError(ModelError):
    """The model files are missing, corrupt, or disagree with ``metadata.json``."""


class FeatureVersionMismatch(ModelError):
    """Features of one ``feature_version`` offered to a model trained on another (never guessed)."""

    status = 409


class MissingFeatures(ValueError):
    """A feature row lacks features the model was trained on."""

    def __init__(self, missing: Sequence[str]) -> None:
        self.missing = list(missing)
        shown = ", ".join(self.missing[:5]) + (" ..." if len(self.missing) > 5 else "")
        super().__init__(f"missing {len(self.missing)} feature(s) the model needs: {shown}")


class OnlineLearningUnsupported(TypeError):
    """``learn_one`` called on a batch-trained model (LightGBM, ONNX)."""


def read_metadata(model_dir: Path) -> ModelMetadata:
    """``metadata.json`` of a model directory, validated."""
    path = model_dir / METADATA_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        return ModelMetadata.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ModelLoadError(f"{path}: {where}: {first['msg']}") from exc


class Predictor(ABC):
    """One loaded model version answering for feature dicts (see the module docstring)."""

    backend: ClassVar[Backend]
    learns_online: ClassVar[bool] = False

    def __init__(self, metadata: ModelMetadata, model_dir: Path | None) -> None:
        self.metadata = metadata
        self.model_dir = model_dir
        self.feature_names: tuple[str, ...] = tuple(metadata.feature_names)
        if len(set(self.feature_names)) != len(self.feature_names):
            raise ModelLoadError("metadata.json: feature_names repeats a name")
        if not self.feature_names:
            raise ModelLoadError("metadata.json: feature_names is empty")
        self._index: dict[str, int] = {name: i for i, name in enumerate(self.feature_names)}
        self._row: F32 = np.zeros((1, len(self.feature_names)), dtype=np.float32)
        try:
            self.model_calibrator: Calibrator = load_calibrator(model_dir)
        except CalibrationError as exc:
            raise ModelLoadError(str(exc)) from exc

    @property
    def version(self) -> str:
        return self.metadata.model_version

    @property
    def feature_version(self) -> str:
        return self.metadata.feature_version

    @property
    def fitted(self) -> bool:
        """False while an online model has not learned anything (its answers are constant)."""
        return True

    def refusal(self, feature_version: str, timeframe: str, symbol: str) -> str | None:
        """Why this model does not answer for ``symbol``'s ``timeframe`` candles with features of
        ``feature_version`` (``/predict`` answers 409 with it, a backtest refuses the model), or
        None when it answers."""
        meta = self.metadata
        if feature_version != self.feature_version:
            return f"serves feature_version {self.feature_version!r}"
        if timeframe != meta.base_interval:
            return f"serves timeframe {meta.base_interval!r}"
        if not meta.serves(symbol):
            return f"was trained for {', '.join(meta.symbols)} and does not answer for {symbol}"
        return None

    def check_feature_version(self, feature_version: str) -> None:
        """Refuse features computed by another version of the feature engine."""
        if feature_version != self.metadata.feature_version:
            raise FeatureVersionMismatch(
                f"model {self.version} was trained on feature_version "
                f"{self.metadata.feature_version!r}, got {feature_version!r}"
            )

    def fill_row(self, x: Mapping[str, float], row: F32) -> None:
        """Write ``x`` into ``row[0]`` in model order, matching by name; refuse missing features."""
        index = self._index
        out = row[0]
        found = 0
        for name, value in x.items():
            i = index.get(name)
            if i is not None:
                out[i] = value
                found += 1
        if found != len(index):
            raise MissingFeatures([n for n in self.feature_names if n not in x])

    def matrix(self, xs: Sequence[Mapping[str, float]]) -> F32:
        """Rows ``xs`` as a fresh ``(n, F)`` float32 matrix in model order."""
        out = np.empty((len(xs), len(self.feature_names)), dtype=np.float32)
        for k, x in enumerate(xs):
            self.fill_row(x, out[k : k + 1])
        return out

    def predict_one(self, x: Mapping[str, float]) -> float:
        """Calibrated probability of "up" for one feature dict."""
        return self.score_one(x)[0]

    def score_one(self, x: Mapping[str, float]) -> tuple[float, float]:
        """``(calibrated, raw)`` probability of "up" for one feature dict.

        A backend that answers single rows its own way (it overrides :meth:`predict_one`) has no
        separate raw score here: it gets ``(p, p)`` from its own ``predict_one``.
        """
        if type(self).predict_one is not Predictor.predict_one:
            p = self.predict_one(x)
            return p, p
        self.fill_row(x, self._row)
        raw = float(self._predict_matrix(self._row)[0])
        return self.model_calibrator.apply_one(raw), raw

    def predict_many(self, xs: Sequence[Mapping[str, float]]) -> F64:
        """Calibrated probabilities for many feature dicts (float64, one per row)."""
        raw = self.predict_many_raw(xs)
        return raw if self.model_calibrator.is_identity else self.model_calibrator.apply(raw)

    def predict_many_raw(self, xs: Sequence[Mapping[str, float]]) -> F64:
        """Uncalibrated probabilities for many feature dicts (float64, one per row)."""
        if not xs:
            return np.empty(0, dtype=np.float64)
        return np.asarray(self._predict_matrix(self.matrix(xs)), dtype=np.float64)

    def learn_one(self, x: Mapping[str, float], y: int) -> None:
        """Update the model with one labelled row (online backends only)."""
        raise OnlineLearningUnsupported(f"the {self.backend} backend is trained in batch, not online")

    @abstractmethod
    def _predict_matrix(self, rows: F32) -> F64 | F32:
        """Probabilities of "up" for an ``(n, F)`` float32 matrix in model order."""

    @abstractmethod
    def clone(self) -> Predictor:
        """An independent predictor with the same state (same answers for the same rows)."""
