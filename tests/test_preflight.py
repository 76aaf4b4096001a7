"""``xylen preflight`` (and ``scripts/preflight_check.py``) against real services.

A real paper exchange replaying the shipped BTCUSDT candles, a second one whose clock reads 5 s
ahead (its fault injection's ``clock_skew_ms``), and a real River model server, each a process
started as ``xylen demo`` starts them; a journal and a backup made with ``xylen db``; secrets in a
mode-600 file.  Each case runs the command as a process and reads its PASS/WARN/FAIL lines.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from coordinator.tests.test_exchange_support import candles  # noqa: F401 - fixture
from xylen.demo_services import (
    Children,
    free_port,
    health_ok,
    start_model_server,
    start_paper_exchange,
    wait_ready,
)
from xylen.paths import Home

REPO = Path(__file__).resolve().parents[1]
SYMBOL = "BTCUSDT"
MODEL_TOKEN = "preflight-model-token"
SKEW_MS = 5000


@dataclass
class Stack:
    home: Home
    exchange_port: int
    skewed_port: int
    model_port: int
    secrets: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, candles: Path) -> Iterator[Stack]:  # noqa: F811 - fixture
    root = tmp_path_factory.mktemp("preflight")
    home = Home(root / "home")
    home.root.mkdir()
    (home.root / "candles").symlink_to(candles, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("XYLEN_") and k != "NOTIFY_SOCKET"}
    env.update(XYLEN_MODEL_TOKEN=MODEL_TOKEN, TRAINING_INTERVAL="0", PYTHONUNBUFFERED="1")
    faults = root / "faults.yaml"
    faults.write_text(f"clock_skew_ms: {SKEW_MS}\n")
    children = Children(home, env)
    try:
        exchange, exchange_port = start_paper_exchange(children, SYMBOL, 200.0, None)
        skewed, skewed_port = start_paper_exchange(
            children, SYMBOL, 200.0, None, "--faults", str(faults), "--db", str(root / "skewed.db")
        )
        model, model_port = start_model_server(children, "river", "river")
        for child, port in ((exchange, exchange_port), (skewed, skewed_port)):
            wait_ready(child, f"http://127.0.0.1:{port}/fapi/v1/ping", 90, lambda s, _b: s == 200)
        wait_ready(model, f"http://127.0.0.1:{model_port}/health", 90, health_ok)
        xylen = [sys.executable, "-m", "xylen", "--home", str(home.root)]
        subprocess.run([*xylen, "db", "migrate"], check=True, capture_output=True, timeout=120, env=env)
        subprocess.run([*xylen, "db", "backup"], check=True, capture_output=True, timeout=120, env=env)
        secrets = root / "secrets.env"
        secrets.write_text(f"XYLEN_MODEL_TOKEN={MODEL_TOKEN}\nXYLEN_DASHBOARD_TOKEN=preflight-dashboard\n")
        secrets.chmod(0o600)
        yield Stack(home, exchange_port, skewed_port, model_port, secrets)
    finally:
        children.stop_all()


def write_config(
    stack: Stack, path: Path, exchange_port: int | None = None, extra_server: bool = False
) -> Path:
    servers = [{"id": "river", "url": f"http://127.0.0.1:{stack.model_port}", "timeout_ms": 2000}]
    if extra_server:
        servers.append({"id": "gone", "url": f"http://127.0.0.1:{free_port()}", "timeout_ms": 500})
    config = {
        "exchange": {
            "mode": "paper",
            "paper_url": f"http://127.0.0.1:{exchange_port or stack.exchange_port}",
        },
        "market": {"symbols": [SYMBOL]},
        "model_servers": servers,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def preflight(
    stack: Stack, config: Path, secrets: Path | None = None, script: bool = False
) -> tuple[int, dict[str, str]]:
    """Exit status and ``{check name: status}`` of one run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("XYLEN_")}
    env["XYLEN_SECRETS_FILE"] = str(secrets or stack.secrets)
    head = (
        [sys.executable, str(REPO / "scripts" / "preflight_check.py")]
        if script
        else [sys.executable, "-m", "xylen"]
    )
    command = [
        *head,
        "--home",
        str(stack.home.root),
        *([] if script else ["preflight"]),
        "--config",
        str(config),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    print(done.stdout)  # shown with -s or on failure
    statuses: dict[str, str] = {}
    for line in done.stdout.splitlines():
        status, _, rest = line.partition("  ")
        if status in {"PASS", "WARN", "FAIL"}:
            statuses[rest[:22].strip()] = status
    assert done.stdout.splitlines()[-1].startswith("preflight: "), done.stdout + done.stderr
    assert MODEL_TOKEN not in done.stdout + done.stderr
    return done.returncode, statuses


@pytest.mark.slow
def test_a_healthy_paper_setup_passes(stack: Stack, tmp_path: Path) -> None:
    code, checks = preflight(stack, write_config(stack, tmp_path / "config.yaml"))
    assert code == 0, checks
    assert checks["secrets file"] == "PASS"
    assert checks["exchange keys"] == "PASS"
    assert checks["model token"] == "PASS" and checks["dashboard token"] == "PASS"
    assert checks["clock skew"] == "PASS"
    assert checks["position mode"] == "PASS"
    assert checks["margin mode"] in {"PASS", "WARN"}  # the coordinator sets it at start
    assert checks["venue leverage"] in {"PASS", "WARN"}
    assert checks["risk vs balance"] == "PASS"  # 10,000 USDT, default limits
    assert checks["model river"] == "PASS" and checks["model quorum"] == "PASS"
    assert checks["backups"] == "PASS" and checks["free disk"] == "PASS"
    assert checks["run history"] == "WARN"  # a journal without beats: paper mode only warns
    assert "FAIL" not in checks.values()


@pytest.mark.slow
def test_a_secrets_file_readable_by_others_fails(stack: Stack, tmp_path: Path) -> None:
    loose = tmp_path / "secrets.env"
    loose.write_text(stack.secrets.read_text())
    loose.chmod(0o644)
    code, checks = preflight(stack, write_config(stack, tmp_path / "config.yaml"), secrets=loose, script=True)
    assert code == 1
    assert checks["secrets file"] == "FAIL"
    assert checks["model token"] == "WARN"  # the refused file's token was not read


@pytest.mark.slow
def test_a_down_model_server_fails(stack: Stack, tmp_path: Path) -> None:
    code, checks = preflight(stack, write_config(stack, tmp_path / "config.yaml", extra_server=True))
    assert code == 1
    assert checks["model gone"] == "FAIL" and checks["model river"] == "PASS"


@pytest.mark.slow
def test_a_skewed_venue_clock_fails(stack: Stack, tmp_path: Path) -> None:
    code, checks = preflight(stack, write_config(stack, tmp_path / "config.yaml", stack.skewed_port))
    assert code == 1
    assert checks["clock skew"] == "FAIL"
    assert checks["position mode"] == "PASS"  # the rest of the venue was still read


def test_bad_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("exchange:\n  mode: paper\n  leverage: 0\n")
    done = subprocess.run(
        [sys.executable, "-m", "xylen", "--home", str(tmp_path), "preflight", "--config", str(bad)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2 and "exchange.leverage" in done.stderr
