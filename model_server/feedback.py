"""The feedback buffer: outcomes from ``/retrain`` as append-only Parquet parts under ``<home>/feedback/``.

Every ``/retrain`` call becomes ONE new part ``part-<ms>-<pid>-<seq>.parquet``, written to a temp
file (``.tmp-...``), fsynced and renamed (:func:`xylen.fileio.atomic_write_parquet`); no part is ever
rewritten.  A process killed mid-write leaves at most a ``.tmp-`` file, which readers skip and the
next start removes, so the folder only ever holds complete parts.  Columns: ``request_id``,
``timestamp`` (int64 ms), ``label`` (int8), ``pnl`` (float64, null when unknown),
``feature_version``, ``received_at`` (ms), then one float32 column per feature name.

The continuous trainer consumes parts (moving them out of the folder); ``size`` counts the rows
of the parts present.  ``retrain.requested`` (JSON, written atomically) is the request for a batch
retrain once ``size`` reaches ``RETRAIN_MIN_SAMPLES``; the trainer removes it when it starts.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from xylen.contract import Outcome
from xylen.fileio import atomic_write_bytes, atomic_write_parquet, remove_stale_temp_files
from xylen.timeutil import wall_ms

logger = logging.getLogger(__name__)

PART_GLOB = "part-*.parquet"
RETRAIN_MARKER = "retrain.requested"
RESERVED = frozenset({"request_id", "timestamp", "label", "pnl", "feature_version", "received_at"})


class FeedbackBuffer:
    """Append-only Parquet parts of outcomes; thread-safe ``append`` (run it off the event loop)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(folder)
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._size: int = sum(int(pq.read_metadata(p).num_rows) for p in self.parts())

    @property
    def size(self) -> int:
        return self._size

    def parts(self) -> list[Path]:
        """Complete parts, oldest first."""
        return sorted(self.folder.glob(PART_GLOB))

    def append(self, outcomes: Sequence[Outcome], feature_version: str) -> Path:
        """Write ``outcomes`` as one new part; returns its path."""
        names = sorted({name for o in outcomes for name in o.features})
        clash = RESERVED.intersection(names)
        if clash:
            raise ValueError(f"feature names clash with buffer columns: {', '.join(sorted(clash))}")
        now = wall_ms()
        columns: dict[str, object] = {
            "request_id": [o.request_id for o in outcomes],
            "timestamp": np.fromiter((o.timestamp for o in outcomes), np.int64, len(outcomes)),
            "label": np.fromiter((o.label for o in outcomes), np.int8, len(outcomes)),
            "pnl": pd.array([o.pnl for o in outcomes], dtype="Float64"),
            "feature_version": feature_version,
            "received_at": np.full(len(outcomes), now, np.int64),
        }
        for name in names:
            columns[name] = np.fromiter(
                (o.features.get(name, np.nan) for o in outcomes), np.float32, len(outcomes)
            )
        frame = pd.DataFrame(columns)
        path = self.folder / f"part-{now:013d}-{os.getpid()}-{next(self._seq):06d}.parquet"
        atomic_write_parquet(frame, path, compression="zstd")
        with self._lock:
            self._size += len(outcomes)
        return path

    def read(self) -> pd.DataFrame:
        """Every complete part, concatenated (for tests and the trainer)."""
        parts = self.parts()
        if not parts:
            return pd.DataFrame(columns=sorted(RESERVED))
        return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)

    def tail_features(self, limit: int, names: Sequence[str]) -> list[dict[str, float]]:
        """Up to ``limit`` newest feature rows holding all of ``names`` (canary rows)."""
        rows: list[dict[str, float]] = []
        for part in reversed(self.parts()):
            try:
                frame = pd.read_parquet(part, columns=list(names))
            except (KeyError, ValueError, OSError):
                continue  # a part from another feature set
            frame = frame.dropna()
            records = frame.iloc[::-1].to_dict("records")
            rows.extend({str(k): float(v) for k, v in r.items()} for r in records)
            if len(rows) >= limit:
                break
        return rows[:limit]

    def labelled_rows(self, names: Sequence[str]) -> Iterator[tuple[dict[str, float], int]]:
        """Every stored outcome holding all of ``names``, oldest first, as (features, label)."""
        for part in self.parts():
            try:
                frame = pd.read_parquet(part, columns=[*names, "label"])
            except (KeyError, ValueError, OSError):
                continue
            frame = frame.dropna()
            labels = frame.pop("label").astype(int).tolist()
            for row, label in zip(frame.to_dict("records"), labels, strict=True):
                yield {str(k): float(v) for k, v in row.items()}, label

    @property
    def retrain_requested(self) -> bool:
        return (self.folder / RETRAIN_MARKER).exists()

    def request_retrain(self, reason: str) -> None:
        """Leave the marker the continuous trainer picks up (atomic; idempotent)."""
        payload = {"requested_at": wall_ms(), "buffer_size": self._size, "reason": reason}
        atomic_write_bytes(self.folder / RETRAIN_MARKER, json.dumps(payload).encode())
        logger.info("batch retrain requested: %s samples in the feedback buffer", self._size)
