"""The systemd units (``deploy/systemd/``) and ``scripts/install_services.sh``, checked with Debian's systemd.

``systemd-analyze verify`` (systemd 252) loads a unit as the manager would and refuses one whose
``ExecStart=`` binary does not exist, so the units cannot be verified where they point
(``/opt/xylen/venv/bin/python``).  The test installs them with ``install_services.sh --prefix`` into
a temporary tree (the script renders the units with that prefix and creates the virtualenv there,
without packages), then verifies the installed units: the same files a host gets, with the
temporary paths.  ``systemd-analyze security --offline=yes`` scores each unit's sandbox; each must
be at most 3.0 (the figures are printed).  The MemoryDenyWriteExecute= the units set is checked on
this kernel with ``prctl(PR_SET_MDWE)``, the same refusal of writable-and-executable memory, around
training, ONNX Runtime, TA-Lib, River and uvloop.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNITS_DIR = REPO / "deploy" / "systemd"
SCRIPT = REPO / "scripts" / "install_services.sh"
SERVICES = ("xylen-model-server", "xylen-data-collector", "xylen-continuous-trainer", "xylen-coordinator")
NOTIFY = {"xylen-model-server", "xylen-coordinator"}  # the services that speak sd_notify
MAX_EXPOSURE = 3.0
HARDENING = {
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
}


def unit_entries(path: Path) -> dict[str, list[tuple[str, str]]]:
    """``{section: [(key, value), ...]}`` in file order (systemd allows a key several times)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def values(path: Path, section: str, key: str) -> list[str]:
    return [v for k, v in unit_entries(path).get(section, []) if k == key]


def install(prefix: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--prefix", str(prefix), "--role", "all", "--skip-pip",
         "--python", sys.executable, *extra],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    prefix = tmp_path_factory.mktemp("systemd") / "opt-xylen"
    done = install(prefix)
    assert done.returncode == 0, done.stderr + done.stdout
    return prefix


def unit_files(folder: Path) -> list[Path]:
    return sorted([*folder.glob("*.service"), *folder.glob("*.timer")])


def test_every_service_has_a_unit_with_its_rules() -> None:
    for name in SERVICES:
        path = UNITS_DIR / f"{name}.service"
        svc = dict(unit_entries(path)["Service"])
        if name in NOTIFY:
            assert svc["Type"] == "notify" and int(svc["WatchdogSec"]) > 0, name
        else:
            assert svc["Type"] in {"exec", "oneshot"} and "WatchdogSec" not in svc, name
        if svc["Type"] != "oneshot":
            assert svc["Restart"] == "on-failure", name
        assert svc["User"] == "xylen" and svc["Group"] == "xylen", name
        assert values(path, "Service", "EnvironmentFile"), name
        assert svc["ReadWritePaths"] == "/opt/xylen/home", name
        memory_max = svc["MemoryMax"]
        mib = int(memory_max[:-1]) * (1024 if memory_max.endswith("G") else 1)
        assert 256 <= mib <= 4096, f"{name}: MemoryMax={memory_max} does not fit an 8 GB host"
        for key, value in HARDENING.items():
            assert svc.get(key) == value, f"{name}: {key}={svc.get(key)!r}, want {value!r}"
        assert "@system-service" in values(path, "Service", "SystemCallFilter"), name
        assert "RestrictAddressFamilies" in svc, name
    timer = dict(unit_entries(UNITS_DIR / "xylen-continuous-trainer.timer")["Timer"])
    assert timer["OnUnitActiveSec"] and timer["Persistent"] == "yes"
    trainer = dict(unit_entries(UNITS_DIR / "xylen-continuous-trainer.service")["Service"])
    assert trainer["Type"] == "oneshot" and "Install" not in unit_entries(
        UNITS_DIR / "xylen-continuous-trainer.service"
    )


def test_secrets_come_from_a_file_systemd_reads_and_the_models_env_example_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from model_server.settings import load_settings
    from xylen.errors import ConfigError

    for name in ("xylen-model-server", "xylen-continuous-trainer", "xylen-coordinator"):
        assert values(UNITS_DIR / f"{name}.service", "Service", "EnvironmentFile") == [
            "/opt/xylen/etc/secrets.env"
        ]
    lines = (UNITS_DIR / "secrets.env.example").read_text().splitlines()
    secret_names = {line.split("=")[0] for line in lines if line and not line.startswith("#")}
    assert secret_names == {
        "XYLEN_MODEL_TOKEN",
        "XYLEN_DASHBOARD_TOKEN",
        "BINANCE_API_KEY",
        "BINANCE_API_SECRET",
    }
    example = UNITS_DIR / "models.env.example"
    for key in ("HOST", "PORT", "MODEL_PATH", "MODEL_TYPE", "XYLEN_MODEL_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match="XYLEN_MODEL_TOKEN"):  # listening beyond loopback needs the token
        load_settings(env_file=example)
    monkeypatch.setenv("XYLEN_MODEL_TOKEN", "t0ken")
    settings = load_settings(env_file=example)
    assert (settings.host, settings.port, settings.keep_versions, settings.min_free_memory_mb) == (
        "0.0.0.0", 8001, 2, 768,
    )  # fmt: skip


def test_install_script_builds_the_tree_and_a_second_run_changes_nothing(installed: Path) -> None:
    etc = installed / "etc"
    assert (installed / "venv" / "bin" / "python").exists()
    app = installed / "app"  # the sources the venv installs editable, with their data files
    assert (app / "pyproject.toml").is_file() and (app / "model_server" / "app.py").is_file()
    assert sorted((app / "coordinator" / "storage" / "migrations").glob("*.sql"))
    assert not list(app.rglob("tests")) and not list(app.rglob("__pycache__"))
    assert (installed / "home" / "models").is_dir() and (installed / "home" / "logs").is_dir()
    assert {p.name for p in etc.iterdir()} == {"models.env", "xylen.env", "config.yaml", "secrets.env"}
    assert (etc / "secrets.env").stat().st_mode & 0o777 == 0o600
    assert {p.name for p in (installed / "systemd").iterdir()} == {p.name for p in unit_files(UNITS_DIR)}
    unit = (installed / "systemd" / "xylen-model-server.service").read_text()
    assert "/opt/xylen" not in unit and f"ExecStart={installed}/venv/bin/python -m model_server" in unit

    (etc / "models.env").write_text("PORT=8011\n")  # an operator's edit
    before = {p: p.stat().st_mtime_ns for p in installed.rglob("*") if p.is_file() and "venv" not in p.parts}
    again = install(installed)
    assert again.returncode == 0, again.stderr + again.stdout
    after = {p: p.stat().st_mtime_ns for p in installed.rglob("*") if p.is_file() and "venv" not in p.parts}
    assert after == before, "a second run rewrote files"
    assert (etc / "models.env").read_text() == "PORT=8011\n"
    assert "written" not in again.stdout and again.stdout.count("unit ") == len(unit_files(UNITS_DIR))
    assert again.stdout.count("unchanged") == len(unit_files(UNITS_DIR)) + 1  # the units and the sources
    assert "useradd" in again.stdout and "skipped (prefix install)" in again.stdout


def test_install_script_dry_run_help_and_bad_usage(tmp_path: Path) -> None:
    dry = install(tmp_path / "nothing", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would run:" in dry.stdout and "would write:" in dry.stdout
    assert not (tmp_path / "nothing").exists()
    help_ = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, check=False)
    assert help_.returncode == 0 and "--prefix DIR" in help_.stdout and "--dry-run" in help_.stdout
    for bad in (["--role", "trader"], ["--frobnicate"], ["--prefix", "relative/dir"]):
        done = subprocess.run(["bash", str(SCRIPT), *bad], capture_output=True, text=True, check=False)
        assert done.returncode == 2 and "see --help" in done.stderr, bad


def test_systemd_analyze_verify_is_clean_for_every_installed_unit(installed: Path) -> None:
    units = unit_files(installed / "systemd")
    done = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), (
        done.stderr + done.stdout
    )
    # the check bites: an unknown key is reported, a missing executable fails
    bad = installed / "bad.service"
    for old, new, expected in (("Restart=", "Restartt=", "Unknown key 'Restartt'"),
                               (f"{installed}/venv", "/absent", "is not executable")):  # fmt: skip
        bad.write_text(
            (installed / "systemd" / "xylen-model-server.service").read_text().replace(old, new, 1)
        )
        broken = subprocess.run(
            ["systemd-analyze", "verify", str(bad)], capture_output=True, text=True, check=False
        )
        assert expected in broken.stderr, broken.stderr
    bad.unlink()


def test_systemd_analyze_security_exposure_at_most_3(installed: Path) -> None:
    figures: dict[str, float] = {}
    for unit in (installed / "systemd").glob("*.service"):
        done = subprocess.run(
            ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
        assert found, done.stdout + done.stderr
        figures[unit.name] = float(found.group(1))
    print("\nsystemd-analyze security --offline=yes exposure:")
    for name, exposure in sorted(figures.items()):
        print(f"  {name}: {exposure:.1f}")
    assert set(figures) == {f"{name}.service" for name in SERVICES}
    assert all(exposure <= MAX_EXPOSURE for exposure in figures.values()), figures


MDWE_PROBE = r"""
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    print("no-mdwe"); sys.exit(0)
import asyncio, numpy as np, lightgbm as lgb, onnxruntime as ort, talib, uvloop
from river import linear_model
from model_server.tests.server_support import to_onnx_bytes
rng = np.random.default_rng(0)
x = rng.random((2000, 8)); y = (x[:, 0] > 0.5).astype(int)
booster = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 2}, lgb.Dataset(x, y), 20)
session = ort.InferenceSession(to_onnx_bytes(booster), providers=["CPUExecutionProvider"])
onnx_p = session.run(None, {"input": x[:5].astype(np.float32)})[1][:, 1]
assert np.allclose(onnx_p, booster.predict(x[:5]), atol=1e-5)
assert np.isfinite(talib.RSI(x[:, 0])[-1])
linear_model.LogisticRegression().learn_one({"a": 1.0}, True)
async def main(): return 1
assert uvloop.run(main()) == 1
try:
    import mmap
    m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("wx-allowed")
except OSError:
    print("ok")
"""


@pytest.mark.slow
def test_memory_deny_write_execute_suits_the_libraries_the_services_run() -> None:
    """The kernel's W^X refusal (what MemoryDenyWriteExecute= enforces) around every native library."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", MDWE_PROBE], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    if done.stdout.strip() == "no-mdwe":
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3)")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "ok", done.stdout  # and W+X memory really is refused


def test_install_script_is_shellcheck_clean() -> None:
    assert shutil.which("shellcheck"), "shellcheck is needed (make test installs it)"
    done = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout
