"""River backend: an online logistic regression that learns one outcome at a time.

A River model directory holds ``metadata.json`` (feature names, version, ATR multiples) and,
optionally, ``river.pkl`` (a pickled state written by :meth:`RiverPredictor.save`); without it the
model starts fresh (standard scaler + logistic regression) and answers 0.5 until it has learned;
the server then replays the feedback buffer into it before serving, so a restart loses nothing.
River works on dicts natively: the row passed on holds exactly the model's features, by name.
``river.pkl`` is unpickled, so a model directory must be as trusted as the server's code.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from model_server.predictors.base import F32, F64, MissingFeatures, ModelLoadError, Predictor, read_metadata
from xylen.contract import ModelMetadata
from xylen.fileio import atomic_write_bytes

MODEL_FILE = "river.pkl"


def fresh_pipeline(learning_rate: float = 0.02) -> Any:
    """The default online model: standardise, then logistic regression with SGD."""
    from river import compose, linear_model, optim, preprocessing

    return compose.Pipeline(  # type: ignore[no-untyped-call]
        preprocessing.StandardScaler(),  # type: ignore[no-untyped-call]
        linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate), l2=1e-4),  # type: ignore[no-untyped-call]
    )


class RiverPredictor(Predictor):
    """An online River classifier behind the Predictor contract (``learn_one`` works)."""

    backend = "river"
    learns_online = True

    def __init__(
        self, metadata: ModelMetadata, model: Any, n_learned: int = 0, model_dir: Path | None = None
    ):
        super().__init__(metadata, model_dir)
        self._model = model
        self.n_learned = n_learned

    @classmethod
    def fresh(cls, metadata: ModelMetadata, model_dir: Path | None = None) -> RiverPredictor:
        return cls(metadata, fresh_pipeline(), 0, model_dir)

    @classmethod
    def load(cls, model_dir: Path) -> RiverPredictor:
        """``metadata.json`` plus ``river.pkl`` when present, else a fresh model."""
        metadata = read_metadata(model_dir)
        path = model_dir / MODEL_FILE
        if not path.exists():
            return cls.fresh(metadata, model_dir)
        try:
            import river  # noqa: F401  (unpickling needs it; a clear error when missing)

            state = pickle.loads(path.read_bytes())
            return cls(metadata, state["model"], int(state["n_learned"]), model_dir)
        except ImportError as exc:
            raise ModelLoadError(f"river cannot be imported: {exc}") from exc
        except Exception as exc:  # unpickling can raise almost anything on a corrupt file
            raise ModelLoadError(f"{path}: cannot load the River state: {exc}") from exc

    def save(self, model_dir: Path) -> None:
        """Write ``metadata.json`` and ``river.pkl`` (each atomically) into ``model_dir``."""
        state = pickle.dumps({"model": self._model, "n_learned": self.n_learned})
        atomic_write_bytes(model_dir / "metadata.json", self.metadata.model_dump_json(indent=2).encode())
        atomic_write_bytes(model_dir / MODEL_FILE, state)

    @property
    def fitted(self) -> bool:
        return self.n_learned > 0

    def _features(self, x: Mapping[str, float]) -> dict[str, float]:
        try:
            return {name: float(x[name]) for name in self.feature_names}
        except KeyError:
            raise MissingFeatures([n for n in self.feature_names if n not in x]) from None

    def predict_one(self, x: Mapping[str, float]) -> float:
        proba = self._model.predict_proba_one(self._features(x))
        return float(proba.get(True, 0.5))

    def _predict_matrix(self, rows: F32) -> F64 | F32:
        names = self.feature_names
        out = np.empty(len(rows), dtype=np.float64)
        for k, row in enumerate(rows.tolist()):
            out[k] = self._model.predict_proba_one(dict(zip(names, row, strict=True))).get(True, 0.5)
        return out

    def learn_one(self, x: Mapping[str, float], y: int) -> None:
        self._model.learn_one(self._features(x), bool(y))
        self.n_learned += 1

    def clone(self) -> RiverPredictor:
        return RiverPredictor(
            self.metadata, pickle.loads(pickle.dumps(self._model)), self.n_learned, self.model_dir
        )
