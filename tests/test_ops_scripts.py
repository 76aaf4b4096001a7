"""The operations scripts in ``scripts/``: shellcheck, ``--help``, and each run for real.

* ``convert_and_deploy.sh`` against a real model server process: a real LightGBM model (trained here
  on the shipped candles) is converted, installed, reloaded and answered by; a model the canary
  refuses is rolled back (the old version serves again, the new folder is moved aside).
* ``backup_sqlite.sh`` / ``restore_db.sh`` round-trip a real journal through ``xylen db``.
* ``rotate_logs.sh`` rotates real files, compresses and prunes them, while a writer keeps appending.
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_server.tests.server_support import (
    TOKEN,
    ServerProcess,
    metadata,
    start_server,
    train_booster,
    write_model_dir,
)

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
SHELL_SCRIPTS = ["convert_and_deploy.sh", "backup_sqlite.sh", "restore_db.sh", "rotate_logs.sh"]
XYLEN = str(Path(sys.executable).parent / "xylen")
OLD, NEW = "20240101T000000Z", "20240201T000000Z"


def run(
    script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPTS / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("script", SHELL_SCRIPTS)
def test_script_is_shellcheck_clean_and_has_help(script: str) -> None:
    lint = subprocess.run(["shellcheck", str(SCRIPTS / script)], capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout
    helped = run(script, "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("Usage: "), helped.stderr
    bad = run(script, "--no-such-option")
    assert bad.returncode == 2 and "unknown option" in bad.stderr


# -- convert_and_deploy.sh ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def booster(btc_5m_path: Path) -> object:
    return train_booster(btc_5m_path, rounds=40)


@pytest.fixture()
def server(tmp_path: Path, booster: object) -> Iterator[ServerProcess]:
    models = tmp_path / "models"
    models.mkdir()
    write_model_dir(models / OLD, booster, OLD)
    proc = start_server(
        tmp_path / "home",
        env={"MODEL_PATH": str(models), "MODEL_TYPE": "onnx", "WATCH_INTERVAL_S": "0"},
    )
    try:
        yield proc
    finally:
        proc.stop()


def health(url: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{url}/health", timeout=10) as reply:
        data: dict[str, object] = json.loads(reply.read())
        return data


def trained_dir(folder: Path, booster: object, version: str, symbols: list[str] | None = None) -> Path:
    """What ``xylen train`` leaves: model.txt and metadata.json, no ONNX yet."""
    folder.mkdir(parents=True)
    booster.save_model(str(folder / "model.txt"))  # type: ignore[attr-defined]
    meta = metadata(version)
    if symbols is not None:
        meta = meta.model_copy(update={"symbols": symbols, "symbol": symbols[0]})
    (folder / "metadata.json").write_text(meta.model_dump_json(indent=2))
    return folder


def deploy(server: ServerProcess, model: Path, models: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run(
        "convert_and_deploy.sh",
        "--model", str(model), "--models-dir", str(models), "--server", server.url,
        "--xylen", XYLEN, "--python", sys.executable, "--rows", "3000", *extra,
        env={"XYLEN_MODEL_TOKEN": TOKEN},
    )  # fmt: skip


@pytest.mark.slow
def test_convert_and_deploy_swaps_in_a_new_model(
    tmp_path: Path, server: ServerProcess, booster: object
) -> None:
    models = tmp_path / "models"
    assert health(server.url)["model_version"] == OLD
    model = trained_dir(tmp_path / "trained" / NEW, booster, NEW)
    done = deploy(server, model, models)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"deployed {NEW}" in done.stdout and "max" in done.stdout  # the parity figures were printed
    state = health(server.url)
    assert state["model_version"] == NEW and state["status"] == "ok"
    installed = models / NEW
    assert {"model.txt", "model.onnx", "metadata.json"} <= {p.name for p in installed.iterdir()}
    assert not [p for p in models.iterdir() if p.name.startswith(".")]  # no staging left behind
    assert TOKEN not in done.stdout + done.stderr
    again = deploy(server, model, models)  # the version is there already: refused, nothing touched
    assert again.returncode == 2 and "already holds" in again.stderr


@pytest.mark.slow
def test_convert_and_deploy_rolls_back_when_the_canary_fails(
    tmp_path: Path, server: ServerProcess, booster: object
) -> None:
    """The new model loads (its canary rows pass) but does not answer for the traded symbol."""
    models = tmp_path / "models"
    model = trained_dir(tmp_path / "trained" / NEW, booster, NEW, symbols=["ETHUSDT"])
    done = deploy(server, model, models, "--symbol", "BTCUSDT")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "canary prediction answered 409" in done.stderr and f"rolled back: serving {OLD}" in done.stderr
    assert health(server.url)["model_version"] == OLD
    assert not (models / NEW).exists()
    assert [p.name.startswith(f".failed-{NEW}-") for p in models.iterdir() if p.name != OLD] == [True]


@pytest.mark.slow
def test_convert_and_deploy_installs_nothing_without_a_server(tmp_path: Path, booster: object) -> None:
    models = tmp_path / "models"
    models.mkdir()
    model = trained_dir(tmp_path / "trained" / NEW, booster, NEW)
    done = run(
        "convert_and_deploy.sh",
        "--model", str(model), "--models-dir", str(models), "--server", "http://127.0.0.1:9",
        "--xylen", XYLEN, "--python", sys.executable, "--rows", "500", "--timeout", "2",
    )  # fmt: skip
    assert done.returncode == 1 and "nothing installed" in done.stderr, done.stderr
    assert list(models.iterdir()) == []


# -- backup_sqlite.sh / restore_db.sh -----------------------------------------------------------


def journal(home: Path) -> Path:
    """A real journal: ``xylen db migrate`` plus rows in one of its tables."""
    subprocess.run(
        [XYLEN, "--home", str(home), "db", "migrate"], check=True, capture_output=True, timeout=120
    )
    path = home / "xylen.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE ops_probe (n INTEGER)")
        conn.executemany("INSERT INTO ops_probe VALUES (?)", [(i,) for i in range(100)])
    return path


def probe_rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM ops_probe").fetchone()[0])


@pytest.mark.slow
def test_backup_then_restore_round_trip(tmp_path: Path) -> None:
    home = tmp_path / "home"
    db = journal(home)
    env = {"XYLEN_HOME": str(home)}
    done = run("backup_sqlite.sh", "--xylen", XYLEN, "--keep", "2", env=env)
    assert done.returncode == 0, done.stderr
    backups = sorted((home / "backups").glob("xylen-*.db"))
    assert len(backups) == 1 and f"backup written: {backups[0]}" in done.stdout

    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM ops_probe WHERE n >= 10")
    assert probe_rows(db) == 10

    refused = run("restore_db.sh", "--xylen", XYLEN, "--latest", env=env)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert probe_rows(db) == 10
    restored = run("restore_db.sh", "--xylen", XYLEN, "--latest", "--yes", env=env)
    assert restored.returncode == 0, restored.stderr
    assert probe_rows(db) == 100
    assert list(home.glob("xylen.db.before-restore-*"))


def test_restore_refuses_a_corrupt_backup(tmp_path: Path) -> None:
    home = tmp_path / "home"
    db = journal(home)
    bad = tmp_path / "xylen-bad.db"
    bad.write_bytes(db.read_bytes()[:4096])  # truncated
    done = run("restore_db.sh", "--home", str(home), "--xylen", XYLEN, "--from", str(bad), "--yes")
    assert done.returncode == 1, done.stdout
    assert probe_rows(db) == 100


def test_backup_fails_loudly_without_a_database(tmp_path: Path) -> None:
    done = run("backup_sqlite.sh", "--home", str(tmp_path / "empty"), "--xylen", XYLEN)
    assert done.returncode != 0 and done.stderr.strip()


# -- rotate_logs.sh -----------------------------------------------------------------------------


def test_rotate_logs_rotates_compresses_and_prunes(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    writer = (logs / "coordinator.log").open("a")  # a service keeps its file open (append mode)
    small = logs / "model-server.log"
    small.write_text("tiny\n")
    try:
        for generation in range(4):
            writer.write(f"generation {generation}\n" * 200)
            writer.flush()
            done = run("rotate_logs.sh", "--dir", str(logs), "--keep", "2", "--min-size", "1000")
            assert done.returncode == 0, done.stderr
        writer.write("after rotation\n")
        writer.flush()
    finally:
        writer.close()
    rotated = sorted(p.name for p in logs.glob("coordinator.log.*"))
    assert rotated == ["coordinator.log.1.gz", "coordinator.log.2.gz"]
    with gzip.open(logs / "coordinator.log.1.gz", "rt") as f:
        assert f.read() == "generation 3\n" * 200
    with gzip.open(logs / "coordinator.log.2.gz", "rt") as f:
        assert f.read() == "generation 2\n" * 200
    # the writer's next line lands at the start of the truncated file (O_APPEND), not after a hole
    assert (logs / "coordinator.log").read_text() == "after rotation\n"
    assert small.read_text() == "tiny\n" and not list(logs.glob("model-server.log.*"))  # under --min-size
