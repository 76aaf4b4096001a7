"""The import rules of DOCUMENTATION.md's "Architecture" section, checked on the source tree.

* ``coordinator``, ``model_server`` and ``paper_exchange`` are services: none imports another, and
  the shared core ``xylen`` imports none of them, except the command line ``xylen/cli/`` (the one
  composition root) and the services' own ``__main__`` entry points;
* ``backtest/`` is a composition root like the command line: it may import the services, and
  nothing but ``xylen/cli/`` (and tests) imports it;
* library code never imports the command line: only ``xylen/cli/`` itself, the services'
  ``__main__`` modules and tests do;
* no source file names a path of one machine (a home folder, a checkout): shared data is found
  through :func:`xylen.paths.shared_data_dir`.

The rules are read from the files' syntax trees (``ast``), so an import inside a function counts.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("coordinator", "model_server", "paper_exchange")
PACKAGES = ("xylen", *SERVICES)
ROOTS = ("backtest",)  # composition roots besides xylen/cli: may import the services


def _machine_path_pattern(*folders: Path) -> re.Pattern[str]:
    """Absolute paths inside ``folders`` (this checkout's parent, the user's home), as a quote,
    backtick, bracket or space would open them in source text."""
    named = [folder for folder in folders if len(folder.parts) > 1]  # never "/" itself
    if not named:
        return re.compile(r"(?!)")  # nothing to look for
    roots = "|".join(re.escape(f"{folder.as_posix()}/") for folder in named)
    return re.compile(rf"""["'`(\s]({roots})""")


MACHINE_PATH = _machine_path_pattern(ROOT.parent, Path.home())
"""Where this checkout and its user live: a source naming a file there works on this machine only."""


def _sources() -> Iterator[Path]:
    """The library and service modules, tests left out."""
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "tests" not in path.relative_to(ROOT).parts:
                yield path


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:  # ``from xylen import cli``
                yield node.lineno, f"{node.module}.{alias.name}"


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def _is_entry_point(rel: Path) -> bool:
    return rel.parts[:2] == ("xylen", "cli") or rel.name == "__main__.py"


def test_services_import_no_other_service_and_the_core_imports_none() -> None:
    found = []
    for path in _sources():
        rel = path.relative_to(ROOT)
        if _is_entry_point(rel):
            continue
        owner = rel.parts[0]
        for line, module in _imports(path):
            target = _top(module)
            if target in SERVICES and target != owner:
                found.append(f"{rel}:{line} imports {module}")
    assert found == [], "imports across service boundaries:\n" + "\n".join(found)


def test_library_code_never_imports_the_command_line() -> None:
    found = []
    for path in _sources():
        rel = path.relative_to(ROOT)
        if _is_entry_point(rel):
            continue
        for line, module in _imports(path):
            if module == "xylen.cli" or module.startswith("xylen.cli."):
                found.append(f"{rel}:{line} imports {module}")
    assert found == [], "library modules importing xylen.cli:\n" + "\n".join(found)


def test_nothing_but_the_command_line_imports_the_backtest() -> None:
    found = []
    for path in _sources():
        rel = path.relative_to(ROOT)
        if rel.parts[:2] == ("xylen", "cli"):
            continue
        for line, module in _imports(path):
            if _top(module) in ROOTS:
                found.append(f"{rel}:{line} imports {module}")
    assert found == [], "library modules importing a composition root:\n" + "\n".join(found)


def test_no_source_names_a_path_of_one_machine() -> None:
    found = []
    roots = [ROOT / p for p in (*PACKAGES, *ROOTS, "bench", "scripts", "tests")] + [ROOT / "conftest.py"]
    for base in roots:
        paths = [base] if base.is_file() else sorted(base.rglob("*.py"))
        for path in paths:
            for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if MACHINE_PATH.search(text) and "MACHINE_PATH" not in text:
                    found.append(f"{path.relative_to(ROOT)}:{number}: {text.strip()}")
    assert found == [], "absolute paths of one machine:\n" + "\n".join(found)


def test_the_checks_see_a_violation() -> None:
    """The scanners find what they look for (a rule that matches nothing would pass vacuously)."""
    sample = ROOT / "xylen" / "paths.py"
    assert any(module == "os" for _, module in _imports(sample))
    assert MACHINE_PATH.search(f'DATA = Path("{ROOT.parent.as_posix()}/shared/data")')
    assert MACHINE_PATH.search(f"see `{Path.home().as_posix()}/.cache`")
    assert not MACHINE_PATH.search('url = "http://127.0.0.1:8000/fapi/v1/order"')


ONE_DEFINITION = {
    "Side": "coordinator/side.py",
    "PositionView": "coordinator/risk/checks.py",
    "vwap": "coordinator/fills.py",
    "logit": "xylen/probability.py",
    "clip_probability": "xylen/probability.py",
    "wall_ms": "xylen/timeutil.py",
}


def test_shared_notions_are_defined_once() -> None:
    """The order side, the risk manager's position, VWAP, log-odds and wall time each have one home."""
    found: dict[str, list[str]] = {name: [] for name in ONE_DEFINITION}
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name.lstrip("_") in found:
                found[node.name.lstrip("_")].append(str(path.relative_to(ROOT)))
    assert found == {name: [home] for name, home in ONE_DEFINITION.items()}
