"""``nginx/``: the site config under Debian's nginx, and ``setup-letsencrypt.sh``.

The config is rendered the way its header says (plain string substitution of the TEMPLATE values)
onto loopback high ports, a self-signed certificate made here by openssl, and pid, log and temp
paths in the test's folder; nginx runs as a plain process with ``-p DIR -c nginx.conf``.  The
whole-stack test puts it in front of a running ``xylen demo`` and speaks HTTPS and wss to it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.demo_support import Demo, running_demo

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "nginx" / "xylen-api.conf"
LETSENCRYPT = REPO / "nginx" / "setup-letsencrypt.sh"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
METRICS_USER, METRICS_PASSWORD = "prometheus", "scrape-pass-7c1"
TIMEOUT = aiohttp.ClientTimeout(total=20)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Upstreams:
    dashboard: str = "127.0.0.1:8765"
    metrics: str = "127.0.0.1:9108"
    model: str = "127.0.0.1:8001"


@dataclass
class Site:
    """A rendered site under ``root``: its ports and files."""

    root: Path
    http_port: int
    https_port: int
    cert: Path

    @property
    def conf(self) -> Path:
        return self.root / "nginx.conf"

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


def self_signed(folder: Path) -> Path:
    """fullchain.pem / privkey.pem for localhost and 127.0.0.1 (one day)."""
    folder.mkdir(parents=True)
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(folder / "privkey.pem"), "-out", str(folder / "fullchain.pem"),
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return folder / "fullchain.pem"


def htpasswd_line(user: str, password: str) -> str:
    hashed = subprocess.run(
        ["openssl", "passwd", "-apr1", password], check=True, capture_output=True, text=True, timeout=30
    ).stdout.strip()
    return f"{user}:{hashed}\n"


def render(root: Path, upstreams: Upstreams) -> Site:
    """The site config rendered as its header documents, plus a main nginx.conf including it."""
    root.mkdir(parents=True, exist_ok=True)
    cert = self_signed(root / "tls")
    (root / "htpasswd").write_text(htpasswd_line(METRICS_USER, METRICS_PASSWORD))
    (root / "logs").mkdir()
    (root / "webroot").mkdir()
    http_port, https_port = free_port(), free_port()
    text = SITE.read_text()
    for old, new in [
        ("/etc/letsencrypt/live/xylen.example.com/", f"{root}/tls/"),
        ("xylen.example.com", "localhost"),
        ("listen [::]:80;", ""),
        ("listen [::]:443 ssl http2;", ""),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
        ("127.0.0.1:8765", upstreams.dashboard),
        ("127.0.0.1:9108", upstreams.metrics),
        ("127.0.0.1:8001", upstreams.model),
        ("/etc/nginx/xylen-metrics.htpasswd", f"{root}/htpasswd"),
        ("/var/www/letsencrypt", f"{root}/webroot"),
        ("/var/log/nginx/", f"{root}/logs/"),
    ]:
        assert old in text, f"template value {old!r} missing from {SITE.name}"
        text = text.replace(old, new)
    (root / "xylen-api.conf").write_text(text)
    temp = "\n".join(
        f"    {kind}_temp_path {root}/tmp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the test's private folder
    (root / "nginx.conf").write_text(
        f"{user}worker_processes 1;\ndaemon off;\npid {root}/nginx.pid;\n"
        f"error_log {root}/logs/error.log info;\n"
        f"events {{ worker_connections 256; }}\n"
        f"http {{\n    default_type application/octet-stream;\n{temp}\n"
        f"    access_log {root}/logs/main-access.log;\n    include {root}/xylen-api.conf;\n}}\n"
    )
    return Site(root, http_port, https_port, cert)


def nginx_args(site: Site) -> list[str]:
    return [NGINX, "-p", str(site.root), "-c", str(site.conf), "-e", str(site.root / "logs" / "error.log")]


@contextlib.contextmanager
def running_nginx(site: Site) -> Iterator[subprocess.Popen[bytes]]:
    """nginx in the foreground on the rendered site, stopped with SIGQUIT (graceful), then killed."""
    (site.root / "tmp").mkdir(exist_ok=True)
    proc = subprocess.Popen(nginx_args(site), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        end = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                raise AssertionError("nginx exited:\n" + (site.root / "logs" / "error.log").read_text())
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", site.https_port), 0.2):
                break
            assert time.monotonic() < end, "nginx did not listen"
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def test_config_passes_nginx_t(tmp_path: Path) -> None:
    site = render(tmp_path / "site", Upstreams())
    (site.root / "tmp").mkdir()
    done = subprocess.run([*nginx_args(site), "-t"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr and "test is successful" in done.stderr


def test_broken_config_fails_nginx_t(tmp_path: Path) -> None:
    """The check above can fail: the same site with an unknown directive is refused."""
    site = render(tmp_path / "site", Upstreams())
    (site.root / "tmp").mkdir()
    conf = site.root / "xylen-api.conf"
    conf.write_text(conf.read_text().replace("server_tokens off;", "server_tokens off; proxy_bogus on;"))
    done = subprocess.run([*nginx_args(site), "-t"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "proxy_bogus" in done.stderr


def test_letsencrypt_script_is_clean_and_dry_runs() -> None:
    subprocess.run(["sh", "-n", str(LETSENCRYPT)], check=True, timeout=30)
    lint = subprocess.run(["shellcheck", str(LETSENCRYPT)], capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout
    helped = subprocess.run([str(LETSENCRYPT), "--help"], capture_output=True, text=True, timeout=30)
    assert helped.returncode == 0 and "--staging" in helped.stdout and "--dry-run" in helped.stdout
    done = subprocess.run(
        [str(LETSENCRYPT), "--domain", "xylen.example.org", "--email", "ops@example.org",
         "--staging", "--dry-run"],
        capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    certbot = [line for line in lines if line.startswith("+ certbot ")]
    assert certbot == [
        "+ certbot certonly --webroot -w /var/www/letsencrypt -d xylen.example.org --email ops@example.org "
        "--agree-tos --non-interactive --keep-until-expiring --staging"
    ]
    assert "+ systemctl enable --now xylen-certbot-renew.timer" in lines
    assert any("OnCalendar=" in line for line in lines)
    missing = subprocess.run([str(LETSENCRYPT), "--dry-run"], capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2 and "--domain is required" in missing.stderr


def test_letsencrypt_timer_units_verify(tmp_path: Path) -> None:
    """The renew service and timer the script writes are valid systemd units."""
    done = subprocess.run(
        [str(LETSENCRYPT), "--domain", "xylen.example.org", "--email", "ops@example.org", "--dry-run"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    units: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in done.stdout.splitlines():
        if line.startswith("+ write "):
            current = units.setdefault(Path(line[len("+ write ") : -1]).name, [])
        elif line.startswith("+ "):
            current = None
        elif current is not None:
            current.append(line[4:])
    assert set(units) == {"xylen-certbot-renew.service", "xylen-certbot-renew.timer"}
    for name, body in units.items():
        (tmp_path / name).write_text("\n".join(body) + "\n")
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / "xylen-certbot-renew.timer")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    assert "xylen-certbot-renew" not in verify.stderr, verify.stderr


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def _check_stack(site: Site, demo: Demo) -> None:
    ctx = site.ssl_context()
    auth = basic(METRICS_USER, METRICS_PASSWORD)
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        # HTTP -> HTTPS, the ACME webroot excepted
        async with session.get(f"http://127.0.0.1:{site.http_port}/api/x?y=1", allow_redirects=False) as r:
            assert r.status == 301 and r.headers["Location"].startswith("https://127.0.0.1/api/x?y=1")
        (site.root / "webroot" / ".well-known" / "acme-challenge").mkdir(parents=True)
        (site.root / "webroot" / ".well-known" / "acme-challenge" / "tok").write_text("challenge-ok")
        async with session.get(f"http://127.0.0.1:{site.http_port}/.well-known/acme-challenge/tok") as r:
            assert r.status == 200 and await r.text() == "challenge-ok"

        # the page over HTTPS, with the security headers (whatever the coordinator serves at /)
        async with session.get(f"{site.base}/?token={demo.token}", ssl=ctx) as r:
            assert r.status in (200, 404), r.status  # 502/504 would mean the proxy did not reach it
            if r.status == 200:
                assert r.headers["Content-Type"].startswith("text/html")
            headers = r.headers
        assert headers["Strict-Transport-Security"].startswith("max-age=")
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "wss://" in headers["Content-Security-Policy"]
        assert "Server" not in headers or "/" not in headers["Server"]  # no version
        async with session.get(f"{site.base}/api/decisions?limit=5&token={demo.token}", ssl=ctx) as r:
            assert r.status == 200, await r.text()
            assert "decisions" in await r.json()
        async with session.get(f"{site.base}/api/decisions?limit=5", ssl=ctx) as r:
            assert r.status == 401  # the coordinator's own auth still applies behind the proxy

        # the feed upgrades and streams over wss
        async with session.ws_connect(
            f"wss://127.0.0.1:{site.https_port}/ws?token={demo.token}", ssl=ctx
        ) as ws:
            types: list[str] = []
            end = time.monotonic() + 30
            while "beat" not in types and time.monotonic() < end:
                msg = await ws.receive(timeout=15)
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                types.append(json.loads(msg.data)["type"])
            assert types[0] == "snapshot" and "beat" in types, types

        # metrics behind basic auth
        for path in ("/metrics", "/metrics/model-server"):
            async with session.get(f"{site.base}{path}", ssl=ctx) as r:
                assert r.status == 401 and "Basic" in r.headers["WWW-Authenticate"]
            async with session.get(f"{site.base}{path}", ssl=ctx, headers=basic(METRICS_USER, "x")) as r:
                assert r.status == 401
            async with session.get(f"{site.base}{path}", ssl=ctx, headers=auth) as r:
                assert r.status == 200
                assert "# TYPE" in await r.text()

        # a burst on the API gets 429 (10 r/s, burst 20)
        async def one() -> int:
            async with session.get(f"{site.base}/api/equity?limit=1&token={demo.token}", ssl=ctx) as r:
                await r.read()
                return r.status

        statuses = await asyncio.gather(*(one() for _ in range(60)))
        assert statuses.count(429) >= 20 and statuses.count(200) >= 10, statuses

    # the token never reaches the access log
    log = (site.root / "logs" / "xylen-access.log").read_text()
    assert "/api/decisions" in log and demo.token not in log


@pytest.mark.slow
def test_nginx_in_front_of_a_running_demo(tmp_path: Path, shared_data: Path) -> None:
    with running_demo(tmp_path / "home", shared_data) as demo:
        model = demo.model_urls["lightgbm"].removeprefix("http://")
        upstreams = Upstreams(
            dashboard=f"127.0.0.1:{demo.dashboard_port}",
            metrics=demo.metrics_url.removeprefix("http://"),
            model=model,
        )
        site = render(tmp_path / "site", upstreams)
        with running_nginx(site):
            asyncio.run(_check_stack(site, demo))
