"""The feedback buffer: outcomes from ``/retrain`` as append-only Parquet parts under ``<home>/feedback/``.

Every ``/retrain`` call becomes ONE new part ``part-<ms>-<pid>-<seq>.parquet``, written to a temp
file (``.tmp-...``), fsynced and renamed (:func:`xylen.fileio.atomic_write_table`); no part is ever
rewritten.  A process killed mid-write leaves at most a ``.tmp-`` file, which readers skip and the
next start removes, so the folder only ever holds complete parts.  Columns: ``request_id``,
``timestamp`` (int64 ms), ``label`` (int8), ``pnl`` (float64, null when unknown),
``feature_version``, ``received_at`` (ms), then one float32 column per feature name.

The continuous trainer consumes parts (moving them out of the folder); ``size`` counts the rows
of the parts present.  ``retrain.requested`` (JSON, written atomically) is the request for a batch
retrain once ``size`` reaches ``RETRAIN_MIN_SAMPLES``; the trainer removes it when it starts.

Parts are written and read with pyarrow alone, imported on first use: the model server's serving
path never loads pandas, and a server that has not yet stored or read an outcome not even pyarrow.
Only :meth:`FeedbackBuffer.read` (tests and the trainer) builds a pandas DataFrame.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from xylen.contract import Outcome
from xylen.fileio import atomic_write_bytes, atomic_write_table, remove_stale_temp_files
from xylen.timeutil import wall_ms

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

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
        self._size: int = 0
        parts = self.parts()
        if parts:
            import pyarrow.parquet as pq

            self._size = sum(int(pq.ParquetFile(p).metadata.num_rows) for p in parts)

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
        import pyarrow as pa

        now = wall_ms()
        n = len(outcomes)
        pnl = np.array([np.nan if o.pnl is None else o.pnl for o in outcomes], np.float64)
        columns: dict[str, pa.Array] = {
            "request_id": _strings([o.request_id for o in outcomes]),
            "timestamp": _numbers(np.fromiter((o.timestamp for o in outcomes), np.int64, n)),
            "label": _numbers(np.fromiter((o.label for o in outcomes), np.int8, n)),
            "pnl": _numbers(pnl),  # unknown -> null
            "feature_version": _strings([feature_version] * n),
            "received_at": _numbers(np.full(n, now, np.int64)),
        }
        for name in names:
            # a feature an outcome lacks is stored as null; readers leave such rows out
            columns[name] = _numbers(
                np.fromiter((o.features.get(name, np.nan) for o in outcomes), np.float32, n)
            )
        table = pa.Table.from_arrays(list(columns.values()), names=list(columns))
        path = self.folder / f"part-{now:013d}-{os.getpid()}-{next(self._seq):06d}.parquet"
        atomic_write_table(table, path, compression="zstd")
        with self._lock:
            self._size += len(outcomes)
        return path

    def read(self) -> pd.DataFrame:
        """Every complete part, concatenated (for tests and the trainer; loads pandas)."""
        import pandas as pd

        parts = self.parts()
        if not parts:
            return pd.DataFrame(columns=sorted(RESERVED))
        return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)

    def tail_features(self, limit: int, names: Sequence[str]) -> list[dict[str, float]]:
        """Up to ``limit`` newest feature rows holding all of ``names`` (canary rows)."""
        rows: list[dict[str, float]] = []
        for part in reversed(self.parts()):
            matrix = _read_matrix(part, list(names))
            if matrix is None:
                continue  # a part from another feature set
            keys = [str(name) for name in names]
            for values in matrix[::-1].tolist():
                rows.append(dict(zip(keys, values, strict=True)))
            if len(rows) >= limit:
                break
        return rows[:limit]

    def labelled_rows(self, names: Sequence[str]) -> Iterator[tuple[dict[str, float], int]]:
        """Every stored outcome holding all of ``names``, oldest first, as (features, label)."""
        keys = [str(name) for name in names]
        for part in self.parts():
            matrix = _read_matrix(part, [*names, "label"])
            if matrix is None:
                continue
            for values in matrix.tolist():
                yield dict(zip(keys, values[:-1], strict=True)), int(values[-1])

    def timed_rows(self, names: Sequence[str]) -> Iterator[tuple[int, dict[str, float], int]]:
        """Every stored outcome holding all of ``names``, oldest part first, as
        ``(timestamp ms, features, label)``."""
        keys = [str(name) for name in names]
        for part in self.parts():
            matrix = _read_matrix(part, ["timestamp", *names, "label"])
            if matrix is None:
                continue
            for values in matrix.tolist():
                yield int(values[0]), dict(zip(keys, values[1:-1], strict=True)), int(values[-1])

    @property
    def retrain_requested(self) -> bool:
        return (self.folder / RETRAIN_MARKER).exists()

    def request_retrain(self, reason: str) -> None:
        """Leave the marker the continuous trainer picks up (atomic; idempotent)."""
        payload = {"requested_at": wall_ms(), "buffer_size": self._size, "reason": reason}
        atomic_write_bytes(self.folder / RETRAIN_MARKER, json.dumps(payload).encode())
        logger.info("batch retrain requested: %s samples in the feedback buffer", self._size)


# Arrow arrays are built from and read into numpy buffers directly: pyarrow's ``pa.array``,
# ``to_numpy`` and ``fill_null`` import pandas whenever it is installed, which would load it
# into the model server on its first ``/retrain``.
_NUMPY_TYPES: dict[str, np.dtype[Any]] = {
    "int8": np.dtype(np.int8),
    "int16": np.dtype(np.int16),
    "int32": np.dtype(np.int32),
    "int64": np.dtype(np.int64),
    "float": np.dtype(np.float32),
    "double": np.dtype(np.float64),
}


def _numbers(values: npt.NDArray[Any]) -> pa.Array:
    """An Arrow array of ``values`` (int or float), NaN stored as null."""
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    arrow_type = pa.from_numpy_dtype(values.dtype)
    validity = None
    nulls = 0
    if values.dtype.kind == "f":
        valid = ~np.isnan(values)
        nulls = int(len(values) - valid.sum())
        if nulls:
            validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(arrow_type, len(values), [validity, pa.py_buffer(values)], null_count=nulls)


def _strings(values: Sequence[str]) -> pa.Array:
    """An Arrow string array of ``values``."""
    import pyarrow as pa

    encoded = [value.encode() for value in values]
    offsets = np.zeros(len(encoded) + 1, np.int32)
    offsets[1:] = np.cumsum([len(e) for e in encoded], dtype=np.int64)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(pa.string(), len(encoded), buffers)


def _floats(column: pa.ChunkedArray) -> npt.NDArray[np.float64]:
    """A numeric Arrow column as float64, null as NaN."""
    parts: list[npt.NDArray[np.float64]] = []
    for chunk in column.chunks:
        dtype = _NUMPY_TYPES.get(str(chunk.type))
        if dtype is None:
            raise ValueError(f"column of type {chunk.type} is not numeric")
        validity, data = chunk.buffers()[:2]
        start, n = chunk.offset, len(chunk)
        values = (
            np.frombuffer(data, dtype, count=start + n)[start:].astype(np.float64)
            if n
            else (np.empty(0, np.float64))
        )
        if validity is not None and chunk.null_count:
            bits = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")[start : start + n]
            values[bits == 0] = np.nan
        parts.append(values)
    return np.concatenate(parts) if parts else np.empty(0, np.float64)


def _read_matrix(part: Path, columns: list[str]) -> npt.NDArray[np.float64] | None:
    """The rows of ``part`` with a value in every one of ``columns`` (float64, one column each, in
    file order); None when the part cannot be read or lacks one of the columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(part).read(columns=columns)
        matrix: npt.NDArray[np.float64] = np.column_stack([_floats(table.column(name)) for name in columns])
    except (KeyError, ValueError, OSError, pa.ArrowException):
        return None
    # a null (e.g. from another feature set) is NaN here; such rows are left out
    return matrix[~np.isnan(matrix).any(axis=1)]
