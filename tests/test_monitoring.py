"""monitoring/ checked by the real tools: promtool, a real Prometheus scraping a running demo, compose.

- ``promtool check config`` / ``check rules`` are clean and ``promtool test rules`` passes, with a
  unit test that fires and one that stays silent for every alert (checked from the test files).
- The Grafana dashboards' JSON: datasource uids that the provisioning defines, unique panel ids,
  units from Grafana's list, template variables defined before use, the provider path mounted by
  monitoring/docker-compose.yml (which ``docker-compose config`` accepts).
- Live: ``xylen demo --show-trades`` (so that orders exist) is scraped every second by Debian's
  ``prometheus`` with the committed scrape jobs and alert rules; once every target is up, every
  panel expression, variable query and alert expression is evaluated through ``/api/v1/query``, and
  every metric name in them must have a series or, for counters that only count events the demo
  does not produce, be declared by a scraped target (``/api/v1/targets/metadata``). A typo'd name
  has neither. Prometheus itself must report every loaded rule healthy.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.demo_support import Demo, running_demo

REPO = Path(__file__).resolve().parent.parent
MON = REPO / "monitoring"
RULE_FILES = sorted((MON / "rules").glob("*.yml"))
TEST_FILES = sorted((MON / "tests").glob("*.yml"))
DASHBOARDS = sorted((MON / "grafana" / "dashboards").glob("*.json"))

# Metrics the alert rules need that no running service exports yet; their alerts stay silent until
# then and panels never use them. Empty now: every metric a rule or a panel names is exported.
PENDING_METRICS: set[str] = set()

# Counters with labels that get a series only at their first event (an exchange error, a refused
# request, a retrain), which a healthy demo may never produce: enough that a scraped target declares
# them (HELP/TYPE), which a misspelt name never is.
EVENT_COUNTERS = {
    "xylen_exchange_errors_total",
    "xylen_model_rejected_requests_total",
    "xylen_model_retrain_requests_total",
}

# Grafana units the dashboards may use (a subset of Grafana's unit ids).
VALID_UNITS = {
    "none", "short", "percent", "percentunit", "s", "ms", "µs", "ns", "bytes", "decbytes",
    "currencyUSD", "reqps", "ops", "cps", "bool", "dateTimeAsIso",
}  # fmt: skip

# Grafana's built-in interval variables, replaced the way Grafana would with a 1 s scrape interval.
BUILTINS = {"$__rate_interval": "1m", "$__interval": "5s", "$__range": "5m"}
_METRIC = re.compile(r"\b(xylen_[a-z0-9_]+|process_[a-z0-9_]+|up)\b(?!\s*\()")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACES = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_VARIABLE = re.compile(r"\$(\w+)")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (label names, strings and groupings left out)."""
    bare = _GROUPING.sub(" ", _BRACES.sub(" ", _STRINGS.sub('""', expr)))
    return set(_METRIC.findall(bare))


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        pytest.fail(f"{name} not found: `make system-deps` installs Debian's prometheus package")
    return path


def _run(*cmd: str, cwd: Path = MON, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120, check=False, env=env)


def _rules() -> list[dict[str, Any]]:
    return [rule for f in RULE_FILES for g in yaml.safe_load(f.read_text())["groups"] for rule in g["rules"]]


def _alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for r in _rules() if "alert" in r}


def _dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in DASHBOARDS}


def _panel_queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) of every panel target and every query variable of a dashboard."""
    found = [
        (f"panel {p['id']} {p['title']!r} {t['refId']}", t["expr"])
        for p in board["panels"]
        for t in p["targets"]
    ]
    for var in board["templating"]["list"]:
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        if m := re.fullmatch(r"label_values\((.+),\s*\w+\)", query):
            found.append((f"variable {var['name']}", m.group(1)))
    return found


def _substitute(expr: str) -> str:
    for name, value in BUILTINS.items():
        expr = expr.replace(name, value)
    return _VARIABLE.sub(".*", expr)


# ---------------------------------------------------------------- promtool


def test_promtool_checks_the_config_and_the_rules() -> None:
    promtool = _tool("promtool")
    config = _run(promtool, "check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    assert f"{len(RULE_FILES)} rule files found" in config.stdout + config.stderr
    rules = _run(promtool, "check", "rules", *(str(f) for f in RULE_FILES))
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_promtool_unit_tests_pass() -> None:
    result = _run(_tool("promtool"), "test", "rules", *(f.name for f in TEST_FILES), cwd=MON / "tests")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).count("SUCCESS") == len(TEST_FILES)


def test_promtool_unit_tests_catch_a_wrong_expectation(tmp_path: Path) -> None:
    """The unit tests do compare: a test expecting the wrong severity fails."""
    (tmp_path / "tests").mkdir()
    shutil.copytree(MON / "rules", tmp_path / "rules")
    text = (MON / "tests" / "trading.yml").read_text()
    planted = text.replace(
        "{severity: critical, job: xylen-coordinator", "{severity: warning, job: xylen-coordinator", 1
    )
    assert planted != text
    (tmp_path / "tests" / "trading.yml").write_text(planted)
    result = _run(_tool("promtool"), "test", "rules", "trading.yml", cwd=tmp_path / "tests")
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check["exp_alerts"] else silent).add(check["alertname"])
    alerts = set(_alerts())
    assert alerts - fires == set(), "alerts no unit test fires"
    assert alerts - silent == set(), "alerts no unit test keeps silent"
    assert (fires | silent) - alerts == set(), "unit tests of alerts that do not exist"


def test_every_alert_says_what_to_do() -> None:
    for name, rule in _alerts().items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert len(rule["annotations"]["summary"]) > 15, name
        assert len(rule["annotations"]["description"]) > 80, name


def test_pending_metrics_are_used_by_alerts_only() -> None:
    in_rules = set().union(*(metric_names(r["expr"]) for r in _rules()))
    assert in_rules >= PENDING_METRICS, "a pending metric no rule uses: drop it from PENDING_METRICS"
    for board in _dashboards().values():
        for where, expr in _panel_queries(board):
            assert not metric_names(expr) & PENDING_METRICS, f"{board['uid']} {where} uses a pending metric"


def test_metric_names_are_found_in_expressions() -> None:
    expr = 'sum by (instance, code) (increase(xylen_exchange_errors_total{code=~"429|up"}[5m])) > 0 and up'
    assert metric_names(expr) == {"xylen_exchange_errors_total", "up"}
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(xylen_beat_duration_seconds_bucket{instance=~"$i"}[1m])))'
    )
    assert metric_names(expr) == {"xylen_beat_duration_seconds_bucket"}


# ---------------------------------------------------------------- dashboards and compose


def _provisioned_datasource_uids() -> set[str]:
    docs = [yaml.safe_load(p.read_text()) for p in (MON / "grafana/provisioning/datasources").glob("*.yml")]
    return {ds["uid"] for doc in docs for ds in doc["datasources"]}


def test_dashboards_are_well_formed() -> None:
    uids = _provisioned_datasource_uids()
    assert uids == {"xylen-prometheus"}
    boards = _dashboards()
    assert {b["uid"] for b in boards.values()} == {
        "xylen-trading",
        "xylen-models",
        "xylen-exchange",
        "xylen-hosts",
    }
    for name, board in boards.items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: panel ids not unique"
        variables = {v["name"] for v in board["templating"]["list"]}
        for var in board["templating"]["list"]:
            assert var["datasource"]["uid"] in uids, f"{name} variable {var['name']}"
        for panel in board["panels"]:
            where = f"{name} panel {panel['id']} {panel['title']!r}"
            assert panel["datasource"]["uid"] in uids, where
            assert panel["fieldConfig"]["defaults"]["unit"] in VALID_UNITS, where
            assert {"h", "w", "x", "y"} <= panel["gridPos"].keys() and panel["gridPos"]["x"] + panel[
                "gridPos"
            ]["w"] <= 24
            refs = [t["refId"] for t in panel["targets"]]
            assert refs and len(refs) == len(set(refs)), where
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in uids, where
                used = set(_VARIABLE.findall(target["expr"])) - {b[1:] for b in BUILTINS}
                assert used <= variables, f"{where}: undefined variables {used - variables}"


def test_dashboard_provider_reads_the_folder_compose_mounts() -> None:
    provider = yaml.safe_load((MON / "grafana/provisioning/dashboards/xylen.yml").read_text())["providers"][0]
    compose = yaml.safe_load((MON / "docker-compose.yml").read_text())
    grafana_volumes = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in grafana_volumes
    datasource = yaml.safe_load((MON / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]


def test_compose_file_is_valid_and_needs_the_grafana_password() -> None:
    compose = _tool("docker-compose")
    env = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    ok = _run(compose, "-f", "docker-compose.yml", "config", "-q", env={**env, "GRAFANA_ADMIN_PASSWORD": "x"})
    assert ok.returncode == 0, ok.stderr
    missing = _run(compose, "-f", "docker-compose.yml", "config", "-q", env=env)
    assert missing.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in missing.stderr


def test_model_server_targets_carry_the_server_id() -> None:
    for group in yaml.safe_load((MON / "targets/model_servers.yml").read_text()):
        assert group["labels"]["server"] and group["labels"]["host"], group


# ---------------------------------------------------------------- a real Prometheus on a running demo


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def netloc(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


def _live_config(demo: Demo, work: Path) -> Path:
    """monitoring/prometheus.yml with 1 s intervals, absolute rule paths and the demo's targets."""
    config = yaml.safe_load((MON / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(f) for f in RULE_FILES]
    demo_config = yaml.safe_load((demo.home / "demo-config.yaml").read_text())
    servers = {s["url"].rstrip("/"): s["id"] for s in demo_config["model_servers"]}
    assert set(servers) == set(demo.model_urls.values())
    targets = {
        "xylen-coordinator": [{"targets": [netloc(demo.metrics_url)], "labels": {"host": "demo"}}],
        "xylen-model-servers": [
            {"targets": [netloc(url)], "labels": {"server": sid, "host": f"model-{sid}"}}
            for url, sid in servers.items()
        ],
        "xylen-paper-exchange": [{"targets": [netloc(demo.exchange_url)], "labels": {"host": "demo"}}],
    }
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == set(targets)
    for job in config["scrape_configs"]:
        path = work / f"{job['job_name']}.yml"
        path.write_text(yaml.safe_dump(targets[job["job_name"]]))
        job["file_sd_configs"] = [{"files": [str(path)], "refresh_interval": "1s"}]
    path = work / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.contextmanager
def _prometheus(config: Path, work: Path) -> Iterator[str]:
    port = _free_port()
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            _tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
        ],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def _wait(what: str, check: Any, timeout_s: float, work: Path) -> None:
    end = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < end:
        with contextlib.suppress(OSError, ValueError):
            last = check()
            if last is True:
                return
        time.sleep(0.5)
    log = (work / "prometheus.log").read_text()[-2000:] if (work / "prometheus.log").exists() else ""
    pytest.fail(f"timed out waiting for {what}: {last!r}\n{log}")


def _query(base: str, expr: str) -> list[Any]:
    answer = _get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert answer["status"] == "success", (expr, answer)
    result: list[Any] = answer["data"]["result"]
    return result


def _declared(base: str, name: str) -> bool:
    """A scraped target declares the family of ``name`` (HELP/TYPE), samples or not."""
    family = re.sub(r"_(bucket|count|sum)$", "", name)
    for candidate in {name, family}:
        answer = _get(f"{base}/api/v1/targets/metadata?" + urllib.parse.urlencode({"metric": candidate}))
        if answer["status"] == "success" and answer["data"]:
            return True
    return False


def _missing_series(base: str, names: dict[str, str]) -> list[str]:
    """Names (with where they are used) that have no series and are not allowed to lack one."""
    missing = []
    for name, where in sorted(names.items()):
        if name in PENDING_METRICS or _query(base, f"count({name})"):
            continue
        if name in EVENT_COUNTERS and _declared(base, name):
            continue
        missing.append(f"{name} (in {where})")
    return missing


@pytest.mark.slow
def test_prometheus_scrapes_the_demo_and_every_expression_has_data(tmp_path: Path, shared_data: Path) -> None:
    work = tmp_path / "prometheus"
    work.mkdir()
    with running_demo(tmp_path / "home", shared_data, "--show-trades") as demo:
        config = _live_config(demo, work)
        expected = sum(
            len(g["targets"]) for f in work.glob("xylen-*.yml") for g in yaml.safe_load(f.read_text())
        )
        with _prometheus(config, work) as base:

            def targets_up() -> bool | list[str]:
                active = _get(f"{base}/api/v1/targets")["data"]["activeTargets"]
                if len(active) == expected and all(t["health"] == "up" for t in active):
                    return True
                return [f"{t['scrapeUrl']}: {t['health']} {t['lastError']}" for t in active] or [
                    "no target yet"
                ]

            _wait("every target up", targets_up, 60, work)
            # Two beats scraped: rates and increases have two samples to work from.
            _wait(
                "two beats scraped",
                lambda: bool(_query(base, "changes(xylen_beat_duration_seconds_count[1m]) >= 2")),
                60,
                work,
            )

            queries = [
                (f"{name} {where}", expr)
                for name, b in _dashboards().items()
                for where, expr in _panel_queries(b)
            ]
            queries += [(f"alert {r['alert']}", r["expr"]) for r in _rules() if "alert" in r]
            names: dict[str, str] = {}
            for where, expr in queries:
                _query(base, _substitute(expr))  # valid PromQL, evaluated by this Prometheus
                names.update(dict.fromkeys(metric_names(expr), where))
            assert len(names) > 40

            # The ensemble's quality gauges appear once its first outcomes are labelled, a few beats in.
            def every_name_has_data() -> bool | list[str]:
                return _missing_series(base, names) or True

            _wait("a series for every metric name", every_name_has_data, 60, work)

            def rules_evaluated() -> bool | list[str]:
                rules = [r for g in _get(f"{base}/api/v1/rules")["data"]["groups"] for r in g["rules"]]
                if len(rules) == len(_rules()) and not any(
                    r["lastEvaluation"].startswith("0001-") for r in rules
                ):
                    return True
                return [r["name"] for r in rules if r["lastEvaluation"].startswith("0001-")] or [
                    "no rules yet"
                ]

            _wait("every rule evaluated", rules_evaluated, 30, work)
            groups = _get(f"{base}/api/v1/rules")["data"]["groups"]
            unhealthy = [
                (r["name"], r["lastError"]) for g in groups for r in g["rules"] if r["health"] != "ok"
            ]
            assert unhealthy == []
