"""ONNX backend: ``model.onnx`` run by :class:`model_server.onnx_inference.OnnxPredictor`.

The runtime wrapper (shared with ``xylen convert-onnx --validate``) runs onnxruntime sequentially
on one thread and finds the probability output (``[N, 2]`` tensor, ``[N]`` tensor or ZipMap); this
adapter adds the Predictor contract: metadata, features by name, the checks at load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model_server.predictors.base import F32, F64, ModelLoadError, Predictor, read_metadata
from xylen.contract import ModelMetadata

MODEL_FILE = "model.onnx"


def _runtime(model_bytes: bytes) -> Any:
    try:
        from model_server.onnx_inference import OnnxPredictor as Runtime
    except ImportError as exc:
        raise ModelLoadError(f"onnxruntime cannot be imported: {exc}") from exc
    try:
        return Runtime(model_bytes, intra_op_threads=1, inter_op_threads=1)
    except Exception as exc:  # onnxruntime raises Fail/InvalidGraph/InvalidProtobuf, ValueError, ...
        raise ModelLoadError(f"{MODEL_FILE}: onnxruntime cannot load it: {exc}") from exc


class OnnxPredictor(Predictor):
    """An onnxruntime session over a converted binary classifier."""

    backend = "onnx"

    def __init__(self, metadata: ModelMetadata, model_bytes: bytes, model_dir: Path | None = None) -> None:
        super().__init__(metadata, model_dir)
        runtime = _runtime(model_bytes)
        width = runtime.n_features
        if width is not None and width != len(self.feature_names):
            raise ModelLoadError(
                f"{MODEL_FILE}: input has {width} columns, metadata.json names {len(self.feature_names)}"
            )
        embedded = runtime.feature_names
        if embedded is not None and list(embedded) != list(self.feature_names):
            raise ModelLoadError(f"{MODEL_FILE}: embedded feature names differ from metadata.json's")
        self._runtime = runtime
        self._bytes = model_bytes

    @classmethod
    def load(cls, model_dir: Path) -> OnnxPredictor:
        """Load ``model_dir/model.onnx``; a missing runtime or a corrupt file is a ModelLoadError."""
        metadata = read_metadata(model_dir)
        path = model_dir / MODEL_FILE
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelLoadError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        return cls(metadata, data, model_dir)

    def _predict_matrix(self, rows: F32) -> F64 | F32:
        out: F64 = self._runtime.predict_proba(rows)
        return out

    def clone(self) -> OnnxPredictor:
        return OnnxPredictor(self.metadata, self._bytes, self.model_dir)
