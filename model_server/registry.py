"""Model versions and hot swap.

A new version (a new directory under the models folder, seen by :meth:`ModelRegistry.watch`, or
``POST /admin/reload``) is loaded in a worker thread *beside* the serving one and checked
(:func:`canary_check`): its ``feature_version`` must be the server's, its feature names known to
the feature engine, and on a canary batch (recent request rows, then feedback rows) its
probabilities finite, in [0, 1] and not constant.  Only then does ``self._current = loaded`` swap
it in: one reference assignment, so a request that took the old reference finishes on it.  A
refused version changes nothing.  The last ``keep_versions`` versions stay loaded for
:meth:`ModelRegistry.rollback`.  Version directories sort by name (``20240201T000000Z``); names
starting with ``.`` (a trainer's temp dir, renamed when complete) are ignored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model_server.metrics import ServerMetrics
from model_server.predictors import (
    METADATA_FILE,
    FeatureVersionMismatch,
    ModelError,
    ModelLoadError,
    ModelType,
    Predictor,
    RiverPredictor,
    load_predictor,
)
from xylen.contract import Backend, ModelMetadata
from xylen.features import FEATURE_NAMES, FEATURE_VERSION
from xylen.timeutil import wall_ms

logger = logging.getLogger(__name__)

MIN_ROWS_FOR_SPREAD = 8
Rows = Sequence[Mapping[str, float]]


@dataclass(frozen=True)
class LoadedModel:
    """One checked model version; requests hold this object for their whole lifetime."""

    predictor: Predictor
    path: Path | None
    loaded_at: float = field(default_factory=time.time)
    fallback: str | None = None
    canary_rows: int = 0

    @property
    def version(self) -> str:
        return self.predictor.version

    @property
    def backend(self) -> Backend:
        return self.predictor.backend

    @property
    def metadata(self) -> ModelMetadata:
        return self.predictor.metadata


def canary_check(predictor: Predictor, rows: Rows, feature_version: str = FEATURE_VERSION) -> int:
    """Raise ModelError unless ``predictor`` may serve; returns the number of canary rows used."""
    predictor.check_feature_version(feature_version)
    unknown = [n for n in predictor.feature_names if n not in FEATURE_NAMES]
    if feature_version == FEATURE_VERSION and unknown:
        raise ModelLoadError(f"canary: features unknown to feature engine {FEATURE_VERSION}: {unknown[:5]}")
    usable = [r for r in rows if all(n in r for n in predictor.feature_names)]
    batch = usable or [dict.fromkeys(predictor.feature_names, 0.0)]
    try:
        probs = predictor.predict_many(batch)
        raw = predictor.predict_many_raw(batch)  # a calibrator may serve a constant; the model may not
    except Exception as exc:  # a model that cannot even answer is refused, whatever the error
        raise ModelLoadError(f"canary: prediction failed: {exc}") from exc
    if probs.shape != (len(batch),):
        raise ModelLoadError(f"canary: expected {len(batch)} probabilities, got shape {probs.shape}")
    if not np.isfinite(probs).all():
        raise ModelLoadError("canary: non-finite probabilities")
    if (probs < 0).any() or (probs > 1).any():
        raise ModelLoadError(f"canary: probabilities outside [0, 1] ({probs.min():.3g}..{probs.max():.3g})")
    distinct = len({tuple(sorted(r.items())) for r in usable})
    if predictor.fitted and distinct >= MIN_ROWS_FOR_SPREAD and float(np.ptp(raw)) < 1e-9:
        raise ModelLoadError(f"canary: constant probability {raw[0]:.6f} over {distinct} distinct rows")
    return len(usable)


def default_river_metadata() -> ModelMetadata:
    """Metadata of a River model started from nothing (no model directory)."""
    now = wall_ms()
    return ModelMetadata(
        model_version=f"river-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now / 1000))}",
        created_at=now,
        feature_version=FEATURE_VERSION,
        feature_names=list(FEATURE_NAMES),
        symbols=[],  # learns from the outcomes of every market the coordinator sends it
        horizon_bars=12,
        stop_atr_multiple=1.5,
        take_profit_atr_multiple=2.5,
        train_start=now,
        train_end=now,
    )


def version_dirs(folder: Path) -> list[Path]:
    """Model directories (holding ``metadata.json``) directly under ``folder``, oldest name first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and (p / METADATA_FILE).is_file())


class ModelRegistry:
    """The serving model, the versions kept for rollback, and the loader/watcher around them."""

    def __init__(
        self,
        *,
        model_type: ModelType,
        keep_versions: int,
        metrics: ServerMetrics,
        recent_rows: Callable[[], list[Mapping[str, float]]],
        stored_rows: Callable[[Sequence[str], int], list[dict[str, float]]],
        canary_limit: int = 256,
    ) -> None:
        self.model_type = model_type
        self.keep_versions = keep_versions
        self.metrics = metrics
        self._recent_rows = recent_rows
        self._stored_rows = stored_rows
        self._canary_limit = canary_limit
        self._current: LoadedModel | None = None
        self._history: list[LoadedModel] = []
        self._lock = asyncio.Lock()
        self._seen: dict[Path, float] = {}

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    @property
    def versions(self) -> list[str]:
        return [m.version for m in self._history]

    def _prepare(self, path: Path | None, recent: list[Mapping[str, float]]) -> LoadedModel:
        """Load and check a version (worker thread); nothing shared is touched."""
        if path is None:
            predictor: Predictor = RiverPredictor.fresh(default_river_metadata())
            fallback = None
        else:
            predictor, fallback = load_predictor(path, self.model_type)
        rows: list[Mapping[str, float]] = list(recent)
        if len(rows) < self._canary_limit:
            rows.extend(self._stored_rows(predictor.feature_names, self._canary_limit - len(rows)))
        used = canary_check(predictor, rows)
        return LoadedModel(predictor, path, fallback=fallback, canary_rows=used)

    async def load(self, path: Path | None, reason: str) -> LoadedModel:
        """Load, check and swap in ``path`` (``None``: a fresh River model); ModelError if refused."""
        if path is not None:
            self.mark_seen(path)  # the watcher must not load it a second time
        async with self._lock:
            recent = self._recent_rows()  # snapshot on the loop thread
            try:
                loaded = await asyncio.to_thread(self._prepare, path, recent)
            except ModelError as exc:
                self.metrics.swaps.labels("refused").inc()
                logger.warning("model %s refused (%s): %s", path, reason, exc)
                raise
            self._swap_in(loaded, "swapped")
            logger.info(
                "serving model %s (%s, %s, canary rows %d)",
                loaded.version,
                loaded.backend,
                reason,
                loaded.canary_rows,
            )
            return loaded

    def _swap_in(self, loaded: LoadedModel, result: str) -> None:
        if loaded not in self._history:
            self._history.append(loaded)
        self._current = loaded  # the atomic swap
        while len(self._history) > self.keep_versions:
            self._history.pop(0 if self._history[0] is not loaded else 1)
        self.metrics.swaps.labels(result).inc()
        self.metrics.set_model(loaded.version, loaded.backend, loaded.predictor.feature_version)

    async def rollback(self, version: str | None = None) -> LoadedModel:
        """Serve the version before the current one (or ``version``); versions after it are dropped."""
        async with self._lock:
            current = self._current
            if current is None or current not in self._history:
                raise ModelLoadError("no model is serving")
            at = self._history.index(current)
            if version is None:
                if at == 0:
                    raise ModelLoadError(f"no version before {current.version} is kept")
                target = self._history[at - 1]
            else:
                found = [m for m in self._history if m.version == version]
                if not found:
                    raise ModelLoadError(
                        f"version {version!r} is not kept (kept: {', '.join(self.versions)})"
                    )
                target = found[-1]
            del self._history[self._history.index(target) + 1 :]
            self._swap_in(target, "rollback")
            logger.warning("rolled back from %s to %s", current.version, target.version)
            return target

    def scan(self, folder: Path) -> dict[Path, float]:
        """Version directories under ``folder`` with their ``metadata.json`` mtimes."""
        out: dict[Path, float] = {}
        for path in version_dirs(folder):
            try:
                out[path] = (path / METADATA_FILE).stat().st_mtime
            except OSError:
                continue
        return out

    async def start(self, folder: Path, explicit: Path | None) -> None:
        """Load the first model: ``explicit`` (a version dir; errors propagate), else the newest
        under ``folder`` that passes its checks; a River server with none starts fresh."""
        self._seen = self.scan(folder)
        if explicit is not None and (explicit / METADATA_FILE).is_file():
            await self.load(explicit, "startup")
            return
        for path in sorted(self._seen, reverse=True):
            try:
                await self.load(path, "startup")
                return
            except ModelError:
                continue
        if self.model_type == "river":
            await self.load(None, "startup (fresh River model)")
        else:
            logger.warning("no usable model under %s yet; waiting for one", folder)

    async def poll(self, folder: Path) -> LoadedModel | None:
        """Load the newest new or changed version directory, if any (one watcher step)."""
        found = self.scan(folder)
        new = [p for p, mtime in found.items() if self._seen.get(p) != mtime]
        self._seen.update(found)
        if not new:
            return None
        try:
            return await self.load(max(new), "new version directory")
        except ModelError:
            return None

    async def watch(self, folder: Path, interval_s: float) -> None:
        """Poll ``folder`` for new versions forever (a supervised background task)."""
        while True:
            await asyncio.sleep(interval_s)
            await self.poll(folder)

    def mark_seen(self, path: Path) -> None:
        """Remember ``path`` as handled so the watcher does not load it again."""
        try:
            self._seen[path] = (path / METADATA_FILE).stat().st_mtime
        except OSError:
            self._seen.pop(path, None)


__all__ = [
    "FeatureVersionMismatch",
    "LoadedModel",
    "ModelRegistry",
    "canary_check",
    "default_river_metadata",
    "version_dirs",
]
