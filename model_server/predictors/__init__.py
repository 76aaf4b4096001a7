"""Inference backends behind one contract (:class:`Predictor`) and the loader choosing one.

``load_predictor(dir, "lightgbm")`` tries ``model.txt`` and falls back to ``model.onnx`` when
LightGBM cannot load it (corrupt file, library missing); ``"onnx"`` prefers the ONNX file and falls
back to LightGBM; ``"river"`` loads (or starts) the online model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from model_server.predictors.base import (
    METADATA_FILE,
    FeatureVersionMismatch,
    MissingFeatures,
    ModelError,
    ModelLoadError,
    OnlineLearningUnsupported,
    Predictor,
    read_metadata,
)
from model_server.predictors.lightgbm import LightGBMPredictor
from model_server.predictors.onnx import OnnxPredictor
from model_server.predictors.river import RiverPredictor

logger = logging.getLogger(__name__)

ModelType = Literal["lightgbm", "onnx", "river"]

_ORDER: dict[str, tuple[type[LightGBMPredictor] | type[OnnxPredictor] | type[RiverPredictor], ...]] = {
    "lightgbm": (LightGBMPredictor, OnnxPredictor),
    "onnx": (OnnxPredictor, LightGBMPredictor),
    "river": (RiverPredictor,),
}


def load_predictor(model_dir: Path, model_type: ModelType = "lightgbm") -> tuple[Predictor, str | None]:
    """The predictor for ``model_dir`` and, when a fallback served, why the preferred one failed."""
    read_metadata(model_dir)  # a bad metadata.json fails every backend alike: say so once
    failures: list[str] = []
    for backend in _ORDER[model_type]:
        try:
            predictor: Predictor = backend.load(model_dir)
        except ModelLoadError as exc:
            failures.append(f"{backend.backend}: {exc}")
            continue
        reason = "; ".join(failures) or None
        if reason:
            logger.warning("model %s: fell back to %s (%s)", model_dir.name, backend.backend, reason)
        return predictor, reason
    raise ModelLoadError("; ".join(failures))


__all__ = [
    "METADATA_FILE",
    "FeatureVersionMismatch",
    "LightGBMPredictor",
    "MissingFeatures",
    "ModelError",
    "ModelLoadError",
    "ModelType",
    "OnlineLearningUnsupported",
    "OnnxPredictor",
    "Predictor",
    "RiverPredictor",
    "load_predictor",
    "read_metadata",
]
