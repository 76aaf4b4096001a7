"""The built dashboard's static files, served by the dashboard server on its own port (real HTTP).

``/`` is ``index.html`` (revalidated every time), ``/assets/*`` the hashed bundles (cached for a
year, immutable), other top-level files as they are; no token is needed for them, while the feed
and the history still need it.  Nothing outside the build is reachable, and without a build ``/``
says so.  The committed build in ``coordinator/dashboard_dist`` is what the app serves by default.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from coordinator.tests.test_ws_server import TOKEN, MemoryHistory, running
from coordinator.ws_server import DIST_DIR, IMMUTABLE, DashboardServer

TIMEOUT = aiohttp.ClientTimeout(total=10)
INDEX = "<!doctype html><title>Xylen</title><script type=module src=/assets/index-3f9a.js></script>"


def _build(root: Path) -> Path:
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(INDEX)
    (root / "assets" / "index-3f9a.js").write_text("console.log('xylen')")
    (root / "assets" / "index-77aa.css").write_text("body{background:#000}")
    (root / "favicon.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (root.parent / "secret.txt").write_text("outside the build")
    return root


def test_static_files_need_no_token_and_stay_inside_the_build(tmp_path: Path) -> None:
    dist = _build(tmp_path / "dist")

    async def go() -> None:
        server = DashboardServer(MemoryHistory(), token=TOKEN, static_dir=dist)
        async with running(server) as url, aiohttp.ClientSession(timeout=TIMEOUT) as s:
            async with s.get(f"{url}/") as resp:
                assert resp.status == 200 and await resp.text() == INDEX
                assert resp.content_type == "text/html"
                assert resp.headers["Cache-Control"] == "no-cache"
            async with s.get(f"{url}/assets/index-3f9a.js") as resp:
                assert resp.status == 200 and await resp.text() == "console.log('xylen')"
                assert "javascript" in resp.content_type
                assert resp.headers["Cache-Control"] == IMMUTABLE
            async with s.get(f"{url}/assets/index-77aa.css") as resp:
                assert resp.status == 200 and resp.content_type == "text/css"
            async with s.get(f"{url}/favicon.svg") as resp:
                assert resp.status == 200 and resp.content_type == "image/svg+xml"
            for path in (
                "/assets/missing.js",
                "/assets/../../secret.txt",
                "/assets/%2e%2e/%2e%2e/secret.txt",
                "/assets/..%2f..%2fsecret.txt",
                "/missing.png",
                "/index.html",  # only as /
            ):
                async with s.get(f"{url}{path}") as resp:
                    assert resp.status == 404, path
                    assert "outside the build" not in await resp.text()
            # the data still needs the token
            async with s.get(f"{url}/api/trades") as resp:
                assert resp.status == 401 and await resp.json() == {"error": "unauthorized"}

    asyncio.run(go())


def test_without_a_build_the_root_says_so(tmp_path: Path) -> None:
    async def go() -> None:
        for static in (tmp_path / "empty", None):
            server = DashboardServer(MemoryHistory(), token=TOKEN, static_dir=static)
            async with running(server) as url, aiohttp.ClientSession(timeout=TIMEOUT) as s:
                async with s.get(f"{url}/") as resp:
                    assert resp.status == 200 and resp.content_type == "text/html"
                    assert "not built" in await resp.text()
                async with s.get(f"{url}/assets/index.js") as resp:
                    assert resp.status == 404

    asyncio.run(go())


def test_the_app_serves_the_committed_build_by_default() -> None:
    async def go() -> None:
        server = DashboardServer(MemoryHistory(), token=TOKEN)
        async with (
            running(server) as url,
            aiohttp.ClientSession(timeout=TIMEOUT) as s,
            s.get(f"{url}/") as resp,
        ):
            page = await resp.text()
            assert resp.status == 200 and resp.content_type == "text/html"
        index = DIST_DIR / "index.html"
        if index.is_file():
            assert page == index.read_text(encoding="utf-8")
        else:
            assert "not built" in page

    asyncio.run(go())
