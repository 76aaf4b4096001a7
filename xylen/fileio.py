"""Atomic file writes: write a temp file in the same folder, fsync, then ``os.replace``.

A reader (or a process restarted after a crash, even after SIGKILL mid-write) sees the old
file or the new one, never a torn one.  Temp files are named
``.tmp-<name>.<pid>.<hex>``: readers skip the ``.tmp-`` prefix, and
:func:`remove_stale_temp_files` deletes those whose writer process is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final

if TYPE_CHECKING:  # imported where used: a process that writes no Parquet never loads them
    import pandas as pd
    import pyarrow as pa

logger = logging.getLogger(__name__)

TEMP_PREFIX: Final[str] = ".tmp-"


def temp_path_for(path: Path) -> Path:
    return path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}")


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable where the OS allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(handle)`` on a temp file, fsync it, then move it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def _write_all(handle: BinaryIO, data: bytes) -> None:
    handle.write(data)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda handle: _write_all(handle, data))


def atomic_write_parquet(
    frame: pd.DataFrame, path: Path, compression: str = "gzip", metadata: dict[str, str] | None = None
) -> None:
    """Write ``frame`` (index dropped) as Parquet atomically; ``metadata`` goes into the schema."""
    import pyarrow as pa

    atomic_write_table(pa.Table.from_pandas(frame, preserve_index=False), path, compression, metadata)


def atomic_write_table(
    table: pa.Table, path: Path, compression: str = "gzip", metadata: dict[str, str] | None = None
) -> None:
    """Write an Arrow ``table`` as Parquet atomically; ``metadata`` goes into the schema."""
    import pyarrow.parquet as pq

    if metadata:
        merged = dict(table.schema.metadata or {})
        merged.update({k.encode(): v.encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(merged)
    atomic_write(path, lambda handle: pq.write_table(table, handle, compression=compression))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (another user's process counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temp_files(folder: Path) -> int:
    """Remove temp files in ``folder`` whose writer process no longer runs; returns the count."""
    removed = 0
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        parts = entry.name.rsplit(".", 2)
        pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
        if pid is not None and (pid == os.getpid() or pid_alive(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
            removed += 1
            logger.info("removed stale temporary file %s", entry)
    return removed
