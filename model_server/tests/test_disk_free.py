"""``xylen_model_disk_free_bytes``: the memory guard's sample reads the models folder's filesystem."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from model_server.guards import MemoryGuard
from model_server.metrics import ServerMetrics

NAME = "xylen_model_disk_free_bytes"


def _exported(metrics: ServerMetrics) -> dict[str, float]:
    return {
        s.name: s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }


def _statvfs_free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_sample_exports_the_free_bytes_of_the_models_folder(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    metrics = ServerMetrics()
    guard = MemoryGuard(0.0, 5.0, metrics, disk_path=models)
    assert NAME not in _exported(metrics)  # nothing read yet: no 0 the low-disk alert would fire on
    guard.sample()
    exported = _exported(metrics)[NAME]
    assert exported == guard.disk_free_bytes
    # the same filesystem figure as statvfs (other writers on the machine move it a little)
    assert abs(exported - _statvfs_free(models)) < 256 * 1024 * 1024
    assert exported > 0


def test_a_folder_not_created_yet_reads_its_parent(tmp_path: Path) -> None:
    metrics = ServerMetrics()
    guard = MemoryGuard(0.0, 5.0, metrics, disk_path=tmp_path / "not" / "yet")
    free = guard.disk_free()
    assert free is not None and abs(free - _statvfs_free(tmp_path)) < 256 * 1024 * 1024
    assert not (tmp_path / "not").exists()


def test_without_a_path_no_disk_metric(tmp_path: Path) -> None:
    metrics = ServerMetrics()
    guard = MemoryGuard(0.0, 5.0, metrics)
    guard.sample()
    assert guard.disk_free() is None and NAME not in _exported(metrics)
    assert _exported(metrics)["xylen_model_memory_available_bytes"] > 0
