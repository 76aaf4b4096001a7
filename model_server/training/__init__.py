"""Model training: dataset, labels, walk-forward validation, hardware profiles, tuning, orchestration.

Public API::

    TrainConfig, TrainedModel, train_model(candles, config) -> TrainedModel
    write_model_dir(model, out_dir) -> Path          # model.txt, model.onnx, metadata.json (atomic)
    load_candles(symbol, interval, home=..., input_path=...), build_dataset(...)
    PROFILES, get_profile(name), make_folds(...), walk_forward(...), format_table(result)
"""

from model_server.training.dataset import Dataset, build_dataset, feature_rows, load_candles
from model_server.training.labels import direction_labels, forward_return, make_labels, round_trip_cost
from model_server.training.profiles import DEFAULT_PROFILE, PROFILES, Profile, get_profile
from model_server.training.train import TrainConfig, TrainedModel, train_model, write_model_dir
from model_server.training.walk_forward import (
    Fold,
    FoldMetrics,
    WalkForwardResult,
    format_table,
    make_folds,
    walk_forward,
)

__all__ = [
    "DEFAULT_PROFILE",
    "PROFILES",
    "Dataset",
    "Fold",
    "FoldMetrics",
    "Profile",
    "TrainConfig",
    "TrainedModel",
    "WalkForwardResult",
    "build_dataset",
    "direction_labels",
    "feature_rows",
    "format_table",
    "forward_return",
    "get_profile",
    "load_candles",
    "make_folds",
    "make_labels",
    "round_trip_cost",
    "train_model",
    "walk_forward",
    "write_model_dir",
]
