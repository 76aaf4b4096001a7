"""Small LightGBM model directories for the model-server benchmarks (fan-out, beat, server).

:func:`training_set` labels real candles (up or not ``HORIZON`` bars on) over the engine's
features; :func:`write_model_dir` writes a booster (and optionally its ONNX twin) with the
metadata a model server loads; :func:`request_rows` gives feature rows and candle rows for
``/predict`` bodies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from xylen.contract import ModelMetadata
from xylen.data.importers import read_freqtrade_feather
from xylen.features import FEATURE_NAMES, FEATURE_VERSION, compute_features
from xylen.timeutil import wall_ms

HORIZON = 12
WARMUP = 300  # rows dropped before the first label: every feature is past its warm-up
CANDLE_COLUMNS = ["open_time", "open", "high", "low", "close", "volume"]


def training_set(candle_file: Path, rows: int) -> tuple[pd.DataFrame, pd.DataFrame, npt.NDArray[np.int8]]:
    """(candles, float32 features, 0/1 labels) of about ``rows`` labelled rows of ``candle_file``."""
    candles = read_freqtrade_feather(candle_file).tail(rows + WARMUP).reset_index(drop=True)
    feats = compute_features(candles)
    close = candles["close"].to_numpy()
    labels = (np.roll(close, -HORIZON) > close).astype(np.int8)[WARMUP:-HORIZON]
    x = feats[list(FEATURE_NAMES)].iloc[WARMUP:-HORIZON].astype(np.float32)
    return candles, x, labels


def write_model_dir(
    folder: Path, booster: Any, candles: pd.DataFrame, version: str, onnx: bool = False
) -> None:
    """``model.txt`` (and ``model.onnx``) and ``metadata.json`` in a new ``folder``."""
    folder.mkdir(parents=True)
    booster.save_model(str(folder / "model.txt"))
    if onnx:
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        width = len(FEATURE_NAMES)
        onx = onnxmltools.convert_lightgbm(
            booster, initial_types=[("input", FloatTensorType([None, width]))], zipmap=False, target_opset=15
        )
        (folder / "model.onnx").write_bytes(onx.SerializeToString())
    meta = ModelMetadata(
        model_version=version,
        created_at=wall_ms(),
        feature_version=FEATURE_VERSION,
        feature_names=list(FEATURE_NAMES),
        horizon_bars=HORIZON,
        stop_atr_multiple=1.5,
        take_profit_atr_multiple=2.5,
        train_start=int(candles["open_time"].iloc[0]),
        train_end=int(candles["open_time"].iloc[-1]),
    )
    (folder / "metadata.json").write_text(meta.model_dump_json(indent=2))


def request_rows(
    x: pd.DataFrame, candles: pd.DataFrame, features: int, candle_count: int
) -> tuple[list[dict[str, float]], list[list[float]]]:
    """The newest ``features`` feature rows (dicts) and ``candle_count`` candles (lists)."""
    rows = [{str(k): float(v) for k, v in r.items()} for r in x.tail(features).to_dict("records")]
    tail = candles.tail(candle_count)[CANDLE_COLUMNS] if candle_count else candles.iloc[:0][CANDLE_COLUMNS]
    return rows, [[int(r[0]), *map(float, r[1:])] for r in tail.itertuples(index=False)]
