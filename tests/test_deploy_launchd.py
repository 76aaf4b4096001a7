"""The launchd agents (``model_server/mac_services/``): plists, ``install.sh`` and ``uninstall.sh``.

launchd runs only on macOS, so what can be checked here is checked with real tools: every plist
parses with ``plistlib`` (the format ``launchctl`` reads), uses only keys ``launchd.plist(5)``
documents, with the types it documents, and once ``install.sh`` has rendered it into a temporary
root (``--agents-dir`` keeps launchctl out of it) every path it names is one the script created.
Both scripts are shellcheck clean.
"""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
MAC = REPO / "model_server" / "mac_services"
INSTALL = MAC / "install.sh"
UNINSTALL = MAC / "uninstall.sh"
NAMES = ("model-server", "data-collector", "continuous-trainer", "coordinator")

# launchd.plist(5): the top-level keys and the type each takes
LAUNCHD_KEYS: dict[str, type | tuple[type, ...]] = {
    "Label": str, "Disabled": bool, "UserName": str, "GroupName": str, "inetdCompatibility": dict,
    "LimitLoadToHosts": list, "LimitLoadFromHosts": list, "LimitLoadToSessionType": (str, list),
    "LimitLoadToHardware": dict, "LimitLoadFromHardware": dict, "Program": str,
    "ProgramArguments": list, "EnableGlobbing": bool, "EnableTransactions": bool,
    "EnablePressuredExit": bool, "OnDemand": bool, "ServiceIPC": bool, "KeepAlive": (bool, dict),
    "RunAtLoad": bool, "RootDirectory": str, "WorkingDirectory": str, "EnvironmentVariables": dict,
    "Umask": (int, str), "TimeOut": int, "ExitTimeOut": int, "ThrottleInterval": int,
    "InitGroups": bool, "WatchPaths": list, "QueueDirectories": list, "StartOnMount": bool,
    "StartInterval": int, "StartCalendarInterval": (dict, list), "StandardInPath": str,
    "StandardOutPath": str, "StandardErrorPath": str, "Debug": bool, "WaitForDebugger": bool,
    "SoftResourceLimits": dict, "HardResourceLimits": dict, "Nice": int, "ProcessType": str,
    "AbandonProcessGroup": bool, "LowPriorityIO": bool, "LowPriorityBackgroundIO": bool,
    "MaterializeDatalessFiles": bool, "LaunchOnlyOnce": bool, "MachServices": dict, "Sockets": dict,
    "LaunchEvents": dict, "SessionCreate": bool, "AssociatedBundleIdentifiers": (str, list),
}  # fmt: skip
KEEP_ALIVE_KEYS = {"SuccessfulExit", "NetworkState", "PathState", "OtherJobEnabled", "Crashed"}
PROCESS_TYPES = {"Background", "Standard", "Adaptive", "Interactive"}


def load(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        data: dict[str, Any] = plistlib.load(fh)
    return data


def run_script(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script), *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("launchd")
    root, agents = base / "xylen root", base / "LaunchAgents"  # a space, as in real macOS paths
    done = run_script(
        INSTALL, "--role", "all", "--prefix", str(root), "--agents-dir", str(agents), "--skip-pip",
        "--python", sys.executable, "--exchange-url", "http://127.0.0.1:9000/?a=1&b=2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    return root, agents


def test_every_plist_parses_and_uses_only_launchd_keys() -> None:
    for name in NAMES:
        plist = load(MAC / f"com.xylen.{name}.plist")
        assert plist["Label"] == f"com.xylen.{name}"
        for key, value in plist.items():
            assert key in LAUNCHD_KEYS, f"{name}: {key} is not a launchd.plist(5) key"
            assert isinstance(value, LAUNCHD_KEYS[key]), f"{name}: {key} has type {type(value).__name__}"
        assert plist["ProcessType"] in PROCESS_TYPES
        assert all(isinstance(arg, str) for arg in plist["ProgramArguments"])
        assert all(isinstance(v, str) for v in plist["EnvironmentVariables"].values())
        if isinstance(plist.get("KeepAlive"), dict):
            assert set(plist["KeepAlive"]) <= KEEP_ALIVE_KEYS
    trainer = load(MAC / "com.xylen.continuous-trainer.plist")
    assert trainer["StartInterval"] == 3600 and "KeepAlive" not in trainer and not trainer["RunAtLoad"]
    assert "--once" in trainer["ProgramArguments"]
    for name in ("model-server", "data-collector", "coordinator"):  # restarted after a failure only
        assert load(MAC / f"com.xylen.{name}.plist")["KeepAlive"] == {"SuccessfulExit": False}


def test_installed_plists_point_at_what_install_created(installed: tuple[Path, Path]) -> None:
    root, agents = installed
    assert {p.name for p in agents.iterdir()} == {f"com.xylen.{name}.plist" for name in NAMES}
    assert (root / "etc" / "secrets.env").stat().st_mode & 0o777 == 0o600
    for name in NAMES:
        plist = load(agents / f"com.xylen.{name}.plist")  # still a valid plist after rendering
        text = (agents / f"com.xylen.{name}.plist").read_text()
        assert "@XYLEN_" not in text, f"{name}: a placeholder was left"
        args = plist["ProgramArguments"]
        assert Path(args[0]) == root / "venv" / "bin" / "python" and Path(args[0]).exists()
        assert Path(plist["WorkingDirectory"]).is_dir()
        assert Path(plist["StandardOutPath"]).parent == root / "logs" and (root / "logs").is_dir()
        env = plist["EnvironmentVariables"]
        assert Path(env["XYLEN_HOME"]) == root / "home" and Path(env["XYLEN_SECRETS_FILE"]).is_file()
        for flag in ("--home", "--env-file", "--config"):
            if flag in args:
                assert Path(args[args.index(flag) + 1]).exists(), f"{name}: {flag} names nothing"
    collector = load(agents / "com.xylen.data-collector.plist")["ProgramArguments"]
    assert collector[collector.index("--exchange-url") + 1] == "http://127.0.0.1:9000/?a=1&b=2"
    assert collector[collector.index("--symbols") + 1] == "BTCUSDT,ETHUSDT"


@pytest.mark.slow
def test_the_rendered_commands_are_ones_the_services_accept(installed: tuple[Path, Path]) -> None:
    """Each agent's arguments, run with ``--help`` appended by this checkout's Python, parse."""
    _, agents = installed
    for name in NAMES:
        args = load(agents / f"com.xylen.{name}.plist")["ProgramArguments"]
        done = subprocess.run(
            [sys.executable, *args[1:], "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            check=False,
        )
        assert done.returncode == 0, f"{name}: {done.stderr}"


def test_second_install_changes_nothing_and_uninstall_removes_the_agents(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    root, agents = installed
    before = {p: p.stat().st_mtime_ns for p in agents.iterdir()}
    again = run_script(
        INSTALL, "--role", "all", "--prefix", str(root), "--agents-dir", str(agents), "--skip-pip",
        "--exchange-url", "http://127.0.0.1:9000/?a=1&b=2",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert {p: p.stat().st_mtime_ns for p in agents.iterdir()} == before
    assert (
        again.stdout.count("unchanged") == len(NAMES) + 1 and "written" not in again.stdout
    )  # + the sources
    assert (root / "app" / "coordinator" / "storage" / "migrations").is_dir()

    copy = tmp_path / "agents"
    shutil.copytree(agents, copy)
    dry = run_script(UNINSTALL, "--prefix", str(root), "--agents-dir", str(copy), "--purge", "--dry-run")
    assert dry.returncode == 0 and len(list(copy.iterdir())) == len(NAMES) and root.is_dir()
    done = run_script(UNINSTALL, "--prefix", str(root), "--agents-dir", str(copy))
    assert done.returncode == 0, done.stderr
    assert not list(copy.iterdir()) and root.is_dir()  # data kept without --purge


def test_scripts_help_bad_usage_and_shellcheck() -> None:
    for script in (INSTALL, UNINSTALL):
        assert run_script(script, "--help").returncode == 0
        bad = run_script(script, "--frobnicate")
        assert bad.returncode == 2 and "see --help" in bad.stderr
    assert run_script(INSTALL, "--symbols", "btc; rm -rf /").returncode == 2
    assert shutil.which("shellcheck"), "shellcheck is needed (make test installs it)"
    done = subprocess.run(
        ["shellcheck", str(INSTALL), str(UNINSTALL)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout
