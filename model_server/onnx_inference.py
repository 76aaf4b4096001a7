"""ONNX Runtime inference for binary classifiers, with the LightGBM backend's ``predict_proba``.

:class:`OnnxPredictor` serves any ONNX binary classifier whose first input is a float tensor
``[N, F]`` (float32; a float64 input is fed an exact upcast of the float32 rows) and which outputs
probabilities, in one of these forms (found automatically, or named with ``output_name``):

* a tensor ``[N, 2]`` of class probabilities (column 1 = up), e.g. onnxmltools/skl2onnx with
  ``zipmap=False`` or the ``model.onnx`` written by ``xylen train``;
* a tensor ``[N]`` or ``[N, 1]`` holding P(up) directly;
* a ZipMap (sequence of ``{class: probability}`` maps), the default of onnxmltools/skl2onnx.

That is also how a PyTorch model is served: export it with ``torch.onnx.export(model, example,
"model.onnx", input_names=["input"], output_names=["probabilities"], dynamic_axes={"input": {0: "N"},
"probabilities": {0: "N"}})`` with a final ``sigmoid`` (the output must be a probability, not a
logit) and the features in the order of ``metadata.json``'s ``feature_names``; nothing here
needs torch.

Sessions run sequentially (``ORT_SEQUENTIAL``) with ``intra_op_threads`` threads (default 1: a model
server answers one small request at a time and several servers share a host).  ``predict_one``
reuses a preallocated ``[1, F]`` buffer: no per-call allocation beyond ONNX Runtime's own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

logger = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
_FLOAT_TYPES: dict[str, type[np.floating[Any]]] = {"tensor(float)": np.float32, "tensor(double)": np.float64}


def session_options(intra_op_threads: int = 1, inter_op_threads: int = 1) -> ort.SessionOptions:
    """Sequential execution, ``intra_op_threads`` threads, all graph optimisations."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    opts.inter_op_num_threads = inter_op_threads
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # hide shape warnings of converter-declared outputs
    return opts


def _pick_output(outputs: Sequence[Any], wanted: str | None) -> tuple[str, str]:
    """Name and kind (``tensor2``, ``tensor1``, ``zipmap``) of the probability output."""
    if wanted is not None:
        chosen = [o for o in outputs if o.name == wanted]
        if not chosen:
            raise ValueError(f"no output named {wanted!r} (have {[o.name for o in outputs]})")
        candidates = chosen
    else:
        named = [o for o in outputs if "prob" in o.name.lower()]
        candidates = named + [o for o in outputs if o not in named]
    for out in candidates:
        if out.type.startswith("seq(map("):
            return out.name, "zipmap"
        if out.type in _FLOAT_TYPES:
            last = out.shape[-1] if out.shape else None
            if last == 2:
                return out.name, "tensor2"
            if len(out.shape) == 1 or last == 1:
                return out.name, "tensor1"
            if wanted is not None or "prob" in out.name.lower():
                return out.name, "tensor2"  # dynamic last dimension: checked on the first call
    raise ValueError(f"no probability output among {[(o.name, o.type) for o in outputs]}")


class OnnxPredictor:
    """P(up) of an ONNX binary classifier; same call shape as the LightGBM backend."""

    def __init__(
        self,
        model: str | Path | bytes,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        output_name: str | None = None,
    ) -> None:
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(
            source, session_options(intra_op_threads, inter_op_threads), providers=["CPUExecutionProvider"]
        )
        first = self.session.get_inputs()[0]
        if first.type not in _FLOAT_TYPES or len(first.shape) != 2:
            raise ValueError(f"input {first.name!r} is {first.type} {first.shape}, expected float [N, F]")
        self.input_name: str = first.name
        self.input_dtype: type[np.floating[Any]] = _FLOAT_TYPES[first.type]
        n = first.shape[1]
        self.n_features: int | None = n if isinstance(n, int) else None
        self.output_name, self._kind = _pick_output(self.session.get_outputs(), output_name)
        self._outputs = [self.output_name]
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata: dict[str, str] = dict(meta)
        names = meta.get("xylen.feature_names")
        self.feature_names: list[str] | None = names.split(",") if names else None
        self._row = np.zeros((1, self.n_features or 0), dtype=self.input_dtype)
        logger.debug(
            "ONNX model: input %s %s, output %s (%s)", self.input_name, first.type, *self._outputs, self._kind
        )

    def _probability(self, result: Any) -> F64:
        if self._kind == "zipmap":
            return np.array([float(row.get(1, row.get("1", 0.0))) for row in result], dtype=np.float64)
        arr = np.asarray(result, dtype=np.float64)
        if self._kind == "tensor2":
            if arr.ndim != 2 or arr.shape[1] != 2:
                raise ValueError(f"output {self.output_name!r} has shape {arr.shape}, expected [N, 2]")
            return np.ascontiguousarray(arr[:, 1])
        return arr.reshape(-1)

    def predict_proba(self, matrix: npt.ArrayLike) -> F64:
        """P(up) for each row of a ``[N, F]`` matrix (float32 rows; cast if needed), as float64 ``[N]``."""
        x = np.asarray(matrix)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if self.n_features is not None and x.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got {x.shape[1]}")
        if x.dtype != np.float32:
            x = x.astype(np.float32)  # the float32 feature contract (exact for float32 sources)
        if self.input_dtype is not np.float32:
            x = x.astype(self.input_dtype)
        result = self.session.run(self._outputs, {self.input_name: np.ascontiguousarray(x)})[0]
        return self._probability(result)

    def predict_one(self, row: npt.ArrayLike) -> float:
        """P(up) of one feature row (fast path: a preallocated ``[1, F]`` input buffer)."""
        values = np.asarray(row, dtype=np.float32).reshape(-1)
        if self._row.shape[1] != len(values):
            if self.n_features is not None:
                raise ValueError(f"expected {self.n_features} features, got {len(values)}")
            self._row = np.zeros((1, len(values)), dtype=self.input_dtype)
        self._row[0, :] = values
        result = self.session.run(self._outputs, {self.input_name: self._row})[0]
        return float(self._probability(result)[0])
