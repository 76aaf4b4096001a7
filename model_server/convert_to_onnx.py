"""LightGBM -> ONNX conversion and a parity check of the two on real feature rows.

Two precisions, both with a float32 input ``input [N, F]`` and a ``probabilities [N, 2]`` output:

* ``float`` (default): onnxmltools ``convert_lightgbm`` (``TreeEnsembleClassifier``, zipmap off).
  ONNX tree ensembles compare float32 features with float32 thresholds, while LightGBM compares
  with the double threshold; onnxmltools rounds each threshold to the *nearest* float32, so a
  feature lying between the two goes the other way (max |dp| about 2e-3 on a 300-tree model).  We
  replace every threshold with the largest float32 ``<=`` LightGBM's double threshold: for a float32
  feature ``x``, ``x <= t32`` then holds exactly when ``x <= t64``, so every split agrees and only
  the float32 sum of the leaf values differs (about 1e-7).
* ``double``: our own graph from ``Booster.dump_model()`` with the ``ai.onnx.ml`` opset 5
  ``TreeEnsemble`` operator in float64 (double thresholds and leaf values, supported by onnxruntime
  >= 1.20): ``Cast`` (exact) -> ``TreeEnsemble`` -> ``Sigmoid``.  Parity with LightGBM is at the
  level of float64 rounding (differences only from the order of summation).

Actions for the parity check (document of the ensemble's defaults): LONG when p > 0.55, SHORT when
p < 0.45, HOLD otherwise.  :func:`validate_parity` fails when the mean |dp| exceeds 1e-6, the max
5e-3, or more than 0.1 % of the rows change action.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper, numpy_helper

from model_server.onnx_inference import OnnxPredictor
from xylen.fileio import atomic_write_bytes

logger = logging.getLogger(__name__)

Precision = Literal["float", "double"]
LONG_THRESHOLD: Final = 0.55
SHORT_THRESHOLD: Final = 0.45
MEAN_TOLERANCE: Final = 1e-6
MAX_TOLERANCE: Final = 5e-3
ACTION_TOLERANCE: Final = 0.001  # share of rows
FLOAT_OPSET: Final = 15  # the highest main-domain opset onnxmltools 1.16 emits
INPUT_NAME: Final = "input"
OUTPUT_NAME: Final = "probabilities"


def _round_down_f32(value: float) -> float:
    """The largest float32 that is ``<= value``."""
    f = np.float32(value)
    if float(f) > value:
        f = np.nextafter(f, np.float32(-np.inf), dtype=np.float32)
    return float(f)


def _walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    out, stack = [], [node]
    while stack:
        cur = stack.pop()
        if "split_index" in cur:
            out.append(cur)
            stack.extend((cur["left_child"], cur["right_child"]))
    return out


def _exact_float_thresholds(model: onnx.ModelProto, booster: lgb.Booster) -> int:
    """Rewrite the float thresholds of the tree node in ``model`` (see the module docstring)."""
    trees = booster.dump_model()["tree_info"]
    lookup: list[dict[tuple[int, float], set[float]]] = []
    for tree in trees:
        table: dict[tuple[int, float], set[float]] = {}
        for split in _walk(tree["tree_structure"]):
            if split["decision_type"] != "<=":
                continue
            thr = float(split["threshold"])
            table.setdefault((int(split["split_feature"]), float(np.float32(thr))), set()).add(
                _round_down_f32(thr)
            )
        lookup.append(table)
    node = next(n for n in model.graph.node if n.op_type.startswith("TreeEnsemble"))
    attrs = {a.name: a for a in node.attribute}
    tree_ids = list(attrs["nodes_treeids"].ints)
    features = list(attrs["nodes_featureids"].ints)
    modes = list(attrs["nodes_modes"].strings)
    values = list(attrs["nodes_values"].floats)
    changed = 0
    for i, mode in enumerate(modes):
        if mode != b"BRANCH_LEQ":
            continue
        found = lookup[tree_ids[i]].get((features[i], float(np.float32(values[i]))))
        if found is not None and len(found) == 1:
            new = next(iter(found))
            changed += new != values[i]
            values[i] = new
    del attrs["nodes_values"].floats[:]
    attrs["nodes_values"].floats.extend(values)
    return changed


def _float_model(booster: lgb.Booster) -> onnx.ModelProto:
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    n = booster.num_feature()
    model: onnx.ModelProto = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n]))],
        zipmap=False,
        target_opset=FLOAT_OPSET,
    )
    changed = _exact_float_thresholds(model, booster)
    logger.info("float model: %d thresholds rounded down to float32", changed)
    return model


class _DoubleTrees:
    """Flattened ``TreeEnsemble`` (ai.onnx.ml opset 5) attributes of a LightGBM model."""

    def __init__(self) -> None:
        self.roots: list[int] = []
        self.feature: list[int] = []
        self.split: list[float] = []
        self.true_id: list[int] = []
        self.true_leaf: list[int] = []
        self.false_id: list[int] = []
        self.false_leaf: list[int] = []
        self.missing_true: list[int] = []
        self.leaf_weights: list[float] = []

    def _child(self, node: dict[str, Any]) -> tuple[int, int]:
        if "leaf_value" in node:
            self.leaf_weights.append(float(node["leaf_value"]))
            return len(self.leaf_weights) - 1, 1
        return self._split(node), 0

    def _split(self, node: dict[str, Any]) -> int:
        if node["decision_type"] != "<=" or node["missing_type"] == "Zero":
            raise ValueError(f"unsupported split {node['decision_type']} / missing {node['missing_type']}")
        i = len(self.feature)
        thr = float(node["threshold"])
        self.feature.append(int(node["split_feature"]))
        self.split.append(thr)
        # LightGBM: NaN goes the default way ("NaN") or is read as 0.0 ("None").
        nan_left = bool(node["default_left"]) if node["missing_type"] == "NaN" else thr >= 0.0
        self.missing_true.append(int(nan_left))
        for lst in (self.true_id, self.true_leaf, self.false_id, self.false_leaf):
            lst.append(0)
        self.true_id[i], self.true_leaf[i] = self._child(node["left_child"])
        self.false_id[i], self.false_leaf[i] = self._child(node["right_child"])
        return i

    def add_tree(self, structure: dict[str, Any]) -> None:
        if "leaf_value" in structure:  # a constant tree: one split whose both sides reach its leaf
            structure = {
                "decision_type": "<=",
                "missing_type": "None",
                "threshold": np.inf,
                "split_feature": 0,
                "default_left": True,
                "left_child": structure,
                "right_child": structure,
            }
        self.roots.append(self._split(structure))


def _double_model(booster: lgb.Booster) -> onnx.ModelProto:
    dump = booster.dump_model()
    objective = str(dump.get("objective", ""))
    if not objective.startswith("binary"):
        raise ValueError(f"double precision export supports binary models only, not {objective!r}")
    sigmoid = 1.0
    for part in objective.split():
        if part.startswith("sigmoid:"):
            sigmoid = float(part.split(":", 1)[1])
    trees = _DoubleTrees()
    for tree in dump["tree_info"]:
        trees.add_tree(tree["tree_structure"])
    n_nodes, n_leaves = len(trees.feature), len(trees.leaf_weights)
    ensemble = helper.make_node(
        "TreeEnsemble",
        ["x64"],
        ["raw"],
        domain="ai.onnx.ml",
        n_targets=1,
        aggregate_function=1,  # SUM
        post_transform=0,  # NONE: the sigmoid follows in double
        tree_roots=trees.roots,
        nodes_featureids=trees.feature,
        nodes_splits=numpy_helper.from_array(np.array(trees.split, dtype=np.float64)),
        nodes_modes=numpy_helper.from_array(np.zeros(n_nodes, dtype=np.uint8)),  # BRANCH_LEQ
        nodes_truenodeids=trees.true_id,
        nodes_trueleafs=trees.true_leaf,
        nodes_falsenodeids=trees.false_id,
        nodes_falseleafs=trees.false_leaf,
        nodes_missing_value_tracks_true=trees.missing_true,
        leaf_targetids=[0] * n_leaves,
        leaf_weights=numpy_helper.from_array(np.array(trees.leaf_weights, dtype=np.float64)),
    )
    coef = numpy_helper.from_array(np.array(sigmoid, dtype=np.float64), "sigmoid_coef")
    one = numpy_helper.from_array(np.array(1.0, dtype=np.float64), "one")
    nodes = [
        helper.make_node("Cast", [INPUT_NAME], ["x64"], to=TensorProto.DOUBLE),
        ensemble,
        helper.make_node("Mul", ["raw", "sigmoid_coef"], ["scaled"]),
        helper.make_node("Sigmoid", ["scaled"], ["p_up"]),
        helper.make_node("Sub", ["one", "p_up"], ["p_down"]),
        helper.make_node("Concat", ["p_down", "p_up"], [OUTPUT_NAME], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "lightgbm_double",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [None, booster.num_feature()])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.DOUBLE, [None, 2])],
        initializer=[coef, one],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("ai.onnx.ml", 5)]
    )
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def booster_to_onnx(
    booster: lgb.Booster, precision: Precision = "float", metadata: dict[str, str] | None = None
) -> onnx.ModelProto:
    """The ONNX graph of a LightGBM binary classifier; ``metadata`` goes into ``metadata_props``."""
    model = _double_model(booster) if precision == "double" else _float_model(booster)
    props = {"xylen.precision": precision, "xylen.feature_names": ",".join(booster.feature_name())}
    props.update(metadata or {})
    onnx.helper.set_model_props(model, props)
    return model


def convert_file(input_path: Path, output_path: Path, precision: Precision = "float") -> onnx.ModelProto:
    """Convert ``model.txt`` to ``model.onnx`` (written atomically)."""
    booster = lgb.Booster(model_file=str(input_path))
    model = booster_to_onnx(booster, precision)
    atomic_write_bytes(output_path, model.SerializeToString())
    logger.info("wrote %s (%s, %d trees)", output_path, precision, booster.num_trees())
    return model


def actions(proba: npt.ArrayLike, long_th: float = LONG_THRESHOLD, short_th: float = SHORT_THRESHOLD) -> Any:
    """1 = LONG (p > long_th), -1 = SHORT (p < short_th), 0 = HOLD."""
    p = np.asarray(proba, dtype=np.float64)
    return np.where(p > long_th, 1, np.where(p < short_th, -1, 0)).astype(np.int8)


@dataclass(frozen=True)
class ParityReport:
    """LightGBM vs ONNX probabilities on the same rows."""

    rows: int
    max_abs_diff: float
    mean_abs_diff: float
    action_mismatches: int
    long_threshold: float = LONG_THRESHOLD
    short_threshold: float = SHORT_THRESHOLD

    @property
    def action_mismatch_share(self) -> float:
        return self.action_mismatches / max(self.rows, 1)

    @property
    def passed(self) -> bool:
        return (
            self.mean_abs_diff <= MEAN_TOLERANCE
            and self.max_abs_diff <= MAX_TOLERANCE
            and self.action_mismatch_share <= ACTION_TOLERANCE
        )

    def format(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (
            f"parity {verdict} on {self.rows:,} rows: max |dp| {self.max_abs_diff:.3e} "
            f"(limit {MAX_TOLERANCE:g}), mean |dp| {self.mean_abs_diff:.3e} (limit {MEAN_TOLERANCE:g}), "
            "actions differing "
            f"{self.action_mismatches} = {100 * self.action_mismatch_share:.4f} % (limit "
            f"{100 * ACTION_TOLERANCE:g} %; LONG p>{self.long_threshold}, SHORT p<{self.short_threshold})"
        )


def validate_parity(
    booster: lgb.Booster,
    onnx_model: str | Path | bytes | onnx.ModelProto,
    rows: npt.NDArray[np.float32],
    long_th: float = LONG_THRESHOLD,
    short_th: float = SHORT_THRESHOLD,
) -> ParityReport:
    """Compare LightGBM's and ONNX Runtime's P(up) on ``rows`` (float32 ``[N, F]``)."""
    if isinstance(onnx_model, onnx.ModelProto):
        onnx_model = onnx_model.SerializeToString()
    predictor = OnnxPredictor(onnx_model, intra_op_threads=2)
    x = np.ascontiguousarray(rows, dtype=np.float32)
    if predictor.n_features is not None and predictor.n_features != x.shape[1]:
        raise ValueError(f"ONNX model expects {predictor.n_features} features, the rows have {x.shape[1]}")
    expected = np.asarray(booster.predict(x), dtype=np.float64)
    got = predictor.predict_proba(x)
    diff = np.abs(expected - got)
    report = ParityReport(
        rows=len(x),
        max_abs_diff=float(diff.max()) if len(diff) else 0.0,
        mean_abs_diff=float(diff.mean()) if len(diff) else 0.0,
        action_mismatches=int(
            (actions(expected, long_th, short_th) != actions(got, long_th, short_th)).sum()
        ),
        long_threshold=long_th,
        short_threshold=short_th,
    )
    logger.info("%s", report.format())
    return report
