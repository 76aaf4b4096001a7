"""The dashboard server of a running ``xylen demo`` (real processes, no browser).

The demo keeps the tokens set in its environment, prints the dashboard's URL, serves the page at
``/`` without a token, closes a WebSocket with a wrong token with 4401, and its feed says the demo's
wall-clock beat interval (5 minutes of replay at 200x: 1.5 s) and that controls are on; the admin
token pauses entries, the read token cannot.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from coordinator.feed_models import SERVER_MESSAGE, BeatMessage, SnapshotMessage
from tests.demo_support import running_demo

READ = "read-token-for-the-feed-demo-test"
ADMIN = "admin-token-for-the-feed-demo-test"
MODEL = "model-token-for-the-feed-demo-test"


def _post(url: str, token: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url, data=b"{}", method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_demo_dashboard_server(tmp_path: Path, shared_data: Path) -> None:
    env = {"XYLEN_DASHBOARD_TOKEN": READ, "XYLEN_DASHBOARD_ADMIN_TOKEN": ADMIN, "XYLEN_MODEL_TOKEN": MODEL}
    with running_demo(tmp_path / "home", shared_data, env=env) as demo:
        assert demo.token == READ
        demo.read_lines(1.0)
        assert f"dashboard: http://127.0.0.1:{demo.dashboard_port}/?token={READ}" in demo.lines
        with urllib.request.urlopen(f"{demo.dashboard_url}/", timeout=10) as resp:
            assert resp.status == 200 and resp.headers.get_content_type() == "text/html"
        assert _post(f"{demo.dashboard_url}/api/control/pause", READ)[0] == 403

        async def feed() -> tuple[SnapshotMessage, BeatMessage, int]:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
                bad = await s.ws_connect(f"ws://127.0.0.1:{demo.dashboard_port}/ws?token=wrong")
                closed = await bad.receive(timeout=10)
                ws = await s.ws_connect(f"ws://127.0.0.1:{demo.dashboard_port}/ws?token={READ}")
                snap = SERVER_MESSAGE.validate_json((await ws.receive(timeout=10)).data)
                assert isinstance(snap, SnapshotMessage)
                while True:
                    msg = SERVER_MESSAGE.validate_json((await ws.receive(timeout=30)).data)
                    if isinstance(msg, BeatMessage):
                        await ws.close()
                        return snap, msg, int(closed.data)

        snap, beat, code = asyncio.run(feed())
        assert code == 4401
        assert snap.system is not None and snap.system.controls_enabled
        assert beat.system is not None and beat.system.beat_interval_ms == 1500
        assert beat.system.venue == "paper" and beat.account is not None and beat.models
        status, answer = _post(f"{demo.dashboard_url}/api/control/pause", ADMIN)
        assert status == 200 and answer["action"] == "pause", answer
        text = "\n".join(demo.lines)
        assert ADMIN not in text and MODEL not in text
