"""The committed dashboard build (``coordinator/dashboard_dist``) is the build of the current sources.

``npm run build`` writes ``build-info.json`` beside the built files: a sha256 over the dashboard's
sources (``dashboard/scripts/build-info.mjs`` says which files and how). This test computes the same
digest in Python; a source edited without rebuilding (``make dashboard``) and committing the build
fails here, so a machine without Node always serves the page of the sources it has.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

from pydantic import BaseModel

import coordinator
from coordinator import feed_models

DIST = Path(coordinator.__file__).resolve().parent / "dashboard_dist"
SOURCES = Path(coordinator.__file__).resolve().parent.parent / "dashboard"
_TOP = re.compile(
    r"^(index\.html|package\.json|package-lock\.json|tsconfig.*\.json|.*\.config\.(js|mjs|cjs|ts))$"
)
JS_GZIP_BUDGET = 250_000


def source_files(root: Path) -> list[str]:
    """The files the digest covers, as sorted POSIX paths relative to ``root``."""
    top = [p for p in root.iterdir() if p.is_file() and _TOP.match(p.name)]
    nested = [p for sub in ("src", "scripts") for p in (root / sub).rglob("*") if p.is_file()]
    return sorted(p.relative_to(root).as_posix() for p in top + nested)


def sources_digest(root: Path) -> str:
    """sha256 over ``<path>\\0<sha256 hex of the file>\\n`` for each source file, in path order."""
    digest = hashlib.sha256()
    for path in source_files(root):
        file_hash = hashlib.sha256((root / path).read_bytes()).hexdigest()
        digest.update(f"{path}\0{file_hash}\n".encode())
    return digest.hexdigest()


def test_committed_build_is_the_build_of_the_current_sources() -> None:
    info = json.loads((DIST / "build-info.json").read_text())
    files = source_files(SOURCES)
    assert "src/main.tsx" in files and "package-lock.json" in files and "index.html" in files
    rebuild = "coordinator/dashboard_dist is not the build of dashboard/: run `make dashboard`, commit it"
    assert info["files"] == len(files), rebuild
    assert info["sources_sha256"] == sources_digest(SOURCES), rebuild


def test_digest_changes_with_any_source_byte(tmp_path: Path) -> None:
    for name in ("index.html", "package.json", "package-lock.json", "vite.config.ts"):
        (tmp_path / name).write_text(name)
    (tmp_path / "src" / "components").mkdir(parents=True)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "src" / "components" / "A.tsx").write_text("a")
    (tmp_path / "scripts" / "b.mjs").write_text("b")
    (tmp_path / "README.md").write_text("not a source")
    before = sources_digest(tmp_path)
    assert source_files(tmp_path) == [
        "index.html", "package-lock.json", "package.json",
        "scripts/b.mjs", "src/components/A.tsx", "vite.config.ts",
    ]  # fmt: skip
    (tmp_path / "README.md").write_text("still not a source")
    assert sources_digest(tmp_path) == before
    (tmp_path / "src" / "components" / "A.tsx").write_text("a ")
    assert sources_digest(tmp_path) != before


def test_index_html_references_built_assets_that_exist() -> None:
    html = (DIST / "index.html").read_text()
    assets = re.findall(r'(?:src|href)="/(assets/[^"]+)"', html)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets), html
    for asset in assets:
        assert (DIST / asset).is_file(), f"index.html references a missing {asset}"
    assert 'id="root"' in html


def test_javascript_within_its_gzip_budget() -> None:
    total = sum(len(gzip.compress(p.read_bytes(), 9)) for p in (DIST / "assets").glob("*.js"))
    assert 0 < total <= JS_GZIP_BUDGET, f"{total} bytes of gzipped JavaScript (budget {JS_GZIP_BUDGET})"


def test_build_holds_no_token() -> None:
    """The page is served without a token: nothing in it may be a credential or a machine path."""
    for path in DIST.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "XYLEN_DASHBOARD_ADMIN_TOKEN=" not in text and "/home/" not in text, path


# The page's TypeScript view of the feed (dashboard/src/types.ts) names exactly the fields of the
# server's message models: a field renamed, added or dropped on either side fails here.
TS_MODELS: dict[str, type[BaseModel]] = {
    "PositionRow": feed_models.PositionRow,
    "TradeView": feed_models.TradeView,
    "VoteView": feed_models.VoteView,
    "DecisionView": feed_models.DecisionView,
    "ReliabilityBin": feed_models.ReliabilityBin,
    "EnsembleQualityView": feed_models.EnsembleQualityView,
    "ModelStatusView": feed_models.ModelStatusView,
    "EquityPoint": feed_models.EquityPoint,
    "LogLine": feed_models.LogLine,
    "RiskStateView": feed_models.RiskStateView,
    "SystemView": feed_models.SystemView,
    "AccountView": feed_models.AccountView,
    "OrderRow": feed_models.OrderRow,
    "ReconciliationView": feed_models.ReconciliationView,
    "BreakerView": feed_models.BreakerView,
    "StateFields": feed_models.BeatMessage,
    "LogMessage": feed_models.LogMessage,
    "RiskMessage": feed_models.RiskMessage,
    "PongMessage": feed_models.PongMessage,
}
_INTERFACE = re.compile(r"^export interface (\w+)(?: extends (\w+))? \{\n(.*?)^\}", re.M | re.S)
_FIELD = re.compile(r"^  (\w+)\??:", re.M)


def ts_interfaces(source: str) -> dict[str, set[str]]:
    """Each exported interface's field names (with those of the interface it extends)."""
    found = {m.group(1): (m.group(2), set(_FIELD.findall(m.group(3)))) for m in _INTERFACE.finditer(source)}

    def fields(name: str) -> set[str]:
        parent, own = found[name]
        return own | (fields(parent) if parent else set())

    return {name: fields(name) for name in found}


def test_typescript_feed_types_name_the_models_fields() -> None:
    interfaces = ts_interfaces((SOURCES / "src" / "types.ts").read_text())
    for name, model in TS_MODELS.items():
        expected = set(model.model_fields) - ({"type"} if name == "StateFields" else set())
        assert interfaces[name] == expected, (
            f"{name}: only in TS {interfaces[name] - expected}, only in Python {expected - interfaces[name]}"
        )


def test_ts_interfaces_parses_fields_and_inheritance() -> None:
    source = (
        "export interface A {\n  x: number;\n  /** doc */\n  y?: string | null;\n}\n\n"
        "export interface B extends A {\n  z: boolean;\n}\n"
    )
    assert ts_interfaces(source) == {"A": {"x", "y"}, "B": {"x", "y", "z"}}
