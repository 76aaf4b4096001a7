"""The feature engine: versioned, float32, deterministic, look-ahead free.

Public API::

    FEATURE_VERSION, FEATURE_NAMES, FEATURES, FeatureSpec, feature_specs(interval), max_warmup(interval)
    compute_features(candles, interval="5m") -> pandas.DataFrame      # open_time + float32 features
    compute_feature_matrix(candles, interval="5m") -> ndarray (n, F) float32
    feature_block(arrays, interval="5m", start=0, contiguous=None, out=None) -> ndarray (F, n - start)
    raw_indicators(candles) -> dict[str, ndarray]                      # raw EMA/MACD/BB/OBV values
    resample_candles(frame, base_interval, target_interval) -> DataFrame
    resample_arrays(open_time, columns, base_ms, target_ms)
    latest_row(candles_tail, interval="5m", history=DEFAULT_HISTORY) -> dict[str, float]
    latest_row_array(candles_tail, interval="5m", history=DEFAULT_HISTORY) -> ndarray (F,) float32

``candles`` is a candle frame (:mod:`xylen.data.schema`) or any mapping holding the arrays
open_time (int64 ms), open, high, low, close, volume.
"""

from xylen.features.compute import compute_feature_matrix, compute_features, feature_block, raw_indicators
from xylen.features.incremental import DEFAULT_HISTORY, latest_row, latest_row_array
from xylen.features.spec import (
    FEATURE_NAMES,
    FEATURE_VERSION,
    FEATURES,
    FeatureSpec,
    feature_metadata,
    feature_specs,
    max_warmup,
)
from xylen.features.timeframes import resample_arrays, resample_candles

__all__ = [
    "DEFAULT_HISTORY",
    "FEATURES",
    "FEATURE_NAMES",
    "FEATURE_VERSION",
    "FeatureSpec",
    "compute_feature_matrix",
    "compute_features",
    "feature_block",
    "feature_metadata",
    "feature_specs",
    "latest_row",
    "latest_row_array",
    "max_warmup",
    "raw_indicators",
    "resample_arrays",
    "resample_candles",
]
