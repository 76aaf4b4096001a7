"""The install contract: pinned files agree with pyproject.toml, and CI runs `make test`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import gen_requirements  # noqa: E402


def test_service_requirements_are_generated_from_pyproject() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_requirements.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_dependency_is_pinned_and_the_pin_satisfies_pyproject() -> None:
    pins = gen_requirements.read_lock()
    for extra in ("coordinator", "model-server", "paper-exchange", "dev"):
        for spec in gen_requirements.direct_requirements(extra):
            req = Requirement(spec)
            name = gen_requirements.canonical(req.name)
            if name == "xylen":
                continue
            if req.marker is not None and not req.marker.evaluate({"python_version": "3.10"}):
                continue
            assert name in pins, f"{name} is not pinned in requirements/lock.txt"
            assert req.specifier.contains(pins[name], prereleases=True), (
                f"lock pins {name}=={pins[name]}, outside pyproject's {req.specifier}"
            )


def test_ci_runs_make_test_and_readme_shows_both_commands() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme


def test_a_wheel_carries_the_migrations_and_the_built_dashboard(tmp_path: Path) -> None:
    """Built from this checkout, the wheel holds the SQL migrations and the dashboard build, which a
    machine without Node needs (``pip install`` of the package, not an editable checkout)."""
    import shutil

    # pip builds in the source tree (a build/ folder): build a copy, never the checkout itself
    source = tmp_path / "source"
    top_level = {".git", ".venv", "data", "build", "dashboard"}  # the checkout's own, not the package's

    def skip(folder: str, names: list[str]) -> set[str]:
        here = {n for n in names if n in top_level} if Path(folder) == ROOT else set()
        return here | {n for n in names if n in {"__pycache__", "node_modules"} or n.endswith(".egg-info")}

    shutil.copytree(ROOT, source, ignore=skip, symlinks=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    import zipfile

    (wheel,) = tmp_path.glob("xylen-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    migrations = sorted((ROOT / "coordinator" / "storage" / "migrations").glob("*.sql"))
    assert migrations and all(f"coordinator/storage/migrations/{m.name}" in names for m in migrations)
    assert "coordinator/dashboard_dist/index.html" in names
    assert any(n.startswith("coordinator/dashboard_dist/assets/") and n.endswith(".js") for n in names)
