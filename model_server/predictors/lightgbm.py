"""LightGBM backend: ``model.txt`` of a binary-objective booster, one row at a time, one thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from model_server.predictors.base import F32, F64, ModelLoadError, Predictor, read_metadata
from xylen.contract import ModelMetadata

MODEL_FILE = "model.txt"
_BINARY_OBJECTIVES = ("binary", "cross_entropy", "xentropy")


class LightGBMPredictor(Predictor):
    """A LightGBM booster predicting the probability of "up" (``predict`` with ``num_threads=1``)."""

    backend = "lightgbm"

    def __init__(self, metadata: ModelMetadata, booster: Any, model_dir: Path | None = None) -> None:
        super().__init__(metadata, model_dir)
        objective = str(booster.params.get("objective", "")) or _objective_from_dump(booster)
        if not objective.startswith(_BINARY_OBJECTIVES):
            raise ModelLoadError(f"{MODEL_FILE}: objective {objective!r} is not a binary classifier")
        names = list(booster.feature_name())
        generic = [f"Column_{i}" for i in range(len(names))]
        if names != list(self.feature_names) and not (
            names == generic and len(names) == len(self.feature_names)
        ):
            raise ModelLoadError(
                f"{MODEL_FILE}: the booster's {len(names)} features differ from metadata.json's "
                f"{len(self.feature_names)} feature_names "
                f"(first: {names[:3]} vs {list(self.feature_names[:3])})"
            )
        self._booster = booster

    @classmethod
    def load(cls, model_dir: Path) -> LightGBMPredictor:
        """Load ``model_dir/model.txt``; a missing library or a corrupt file is a ModelLoadError."""
        metadata = read_metadata(model_dir)
        path = model_dir / MODEL_FILE
        if not path.is_file():
            raise ModelLoadError(f"{path}: not found")
        try:
            import lightgbm
        except ImportError as exc:
            raise ModelLoadError(f"lightgbm cannot be imported: {exc}") from exc
        try:
            booster = lightgbm.Booster(model_file=str(path))
        except Exception as exc:  # LightGBMError, ValueError, ...: all mean "unusable file"
            raise ModelLoadError(f"{path}: LightGBM cannot load it: {exc}") from exc
        return cls(metadata, booster, model_dir)

    def _predict_matrix(self, rows: F32) -> F64 | F32:
        out: F64 = self._booster.predict(rows, num_threads=1, validate_features=False)
        return out

    def clone(self) -> LightGBMPredictor:
        import lightgbm

        booster = lightgbm.Booster(model_str=self._booster.model_to_string())
        return LightGBMPredictor(self.metadata, booster, self.model_dir)


def _objective_from_dump(booster: Any) -> str:
    """The ``objective=`` line of a booster's text (``params`` is empty for loaded files)."""
    text: str = booster.model_to_string(num_iteration=0)
    for line in text.splitlines():
        if line.startswith("objective="):
            return line.partition("=")[2].strip()
        if line.startswith("Tree="):
            break
    return ""


def booster_probabilities(booster: Any, rows: F32) -> F64:
    """Batch probabilities of a booster (used by tests and the bench as the reference)."""
    return np.asarray(booster.predict(rows, num_threads=1), dtype=np.float64)
