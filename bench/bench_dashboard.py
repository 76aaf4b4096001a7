"""Benchmark of the dashboard in Debian's Chromium: bundle size, beat-to-DOM latency, 10,000-point chart.

Run: ``python bench/bench_dashboard.py [--beats 150] [--interval-ms 100] [--renders 7]``.

The committed build (``coordinator/dashboard_dist``) is served by a small aiohttp server on
127.0.0.1 that plays the coordinator's part of the feed: ``/ws`` sends a snapshot on connect, then
the beats this script pushes, each stamped with the server's wall clock. Chromium (headless,
driven by Playwright, no browser download) loads the page; an init script wraps ``WebSocket`` to
note when each message reaches the page (``performance.now()``, before the app's handler), and a
MutationObserver notes when the decision row of each beat enters the DOM, then the next animation
frame (the paint after it).

Printed:
- the gzipped size of the JavaScript and CSS (gzip -9; goal: JavaScript ≤ 250 kB);
- beat → DOM: per beat, message received in the page → its decision row in the DOM, and → the
  next frame; also server send → DOM (wall clocks of one machine); p50 / p95 / max over
  ``--beats`` beats every ``--interval-ms`` (goal: p95 ≤ 100 ms);
- rendering 10,000 equity points: the message carrying them received → the equity chart drawn
  with all of them counted (``data-points``) → the next frame; median and max over ``--renders``
  page loads, once with the points in one beat to a loaded page (the chart's own cost), once in a
  fresh page's snapshot (the page's whole first render included); goal ≤ 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import socket
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parent.parent
DIST = REPO / "coordinator" / "dashboard_dist"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
TOKEN = "bench-token"
MODELS = ("lgbm", "onnx", "river")
T0 = 1_715_000_000_000  # replay time of the first beat (ms)
BEAT_MS = 300_000

# Stamps message arrival (before the app's own handler) and each decision row's entry into the DOM.
PROBE = """
(() => {
  const recv = {}, dom = {}, frame = {}, sent = {};
  window.__bench = { recv, dom, frame, sent, snapshot: null, bigBeat: null, chart: null, chartFrame: null };
  const Native = window.WebSocket;
  window.WebSocket = function (url, protocols) {
    const ws = new Native(url, protocols);
    ws.addEventListener('message', (event) => {
      const now = performance.now();
      if (event.data.length > 100000) { // the big messages: not parsed here, so as not to be timed
        if (event.data.startsWith('{"type": "snapshot"')) window.__bench.snapshot = now;
        else window.__bench.bigBeat = now;
        return;
      }
      const msg = JSON.parse(event.data);
      if (msg.type === 'snapshot') window.__bench.snapshot = now;
      const points = msg.type === 'beat' ? (msg.equity ?? []).length : 0;
      if (points >= window.__expectPoints) window.__bench.bigBeat = now;
      if (msg.type === 'beat') for (const d of msg.decisions ?? []) {
        const key = `${d.timestamp_ms}|${d.symbol ?? ''}`;
        recv[key] = now;
        sent[key] = msg.sent_epoch_ms;
      }
    });
    return ws;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
  new MutationObserver((records) => {
    const now = performance.now();
    for (const r of records) for (const node of r.addedNodes) {
      if (node.nodeType !== 1) continue;
      const rows = node.matches('[data-testid=decision-row]') ? [node]
        : node.querySelectorAll('[data-testid=decision-row]');
      for (const row of rows) {
        const key = row.dataset.key;
        if (dom[key] === undefined) {
          dom[key] = now;
          requestAnimationFrame(() => { frame[key] = performance.now(); });
        }
      }
    }
    const chart = document.querySelector('[data-testid=equity-chart]');
    if (window.__bench.chart === null && chart && Number(chart.dataset.points) >= window.__expectPoints
        && chart.querySelector('[data-testid=equity-line]')) {
      window.__bench.chart = now;
      requestAnimationFrame(() => { window.__bench.chartFrame = performance.now(); });
    }
  }).observe(document, { childList: true, subtree: true, attributes: true });
})();
"""


# ---------------------------------------------------------------------- the feed server


def _decision(i: int) -> dict[str, Any]:
    prob = 0.5 + 0.04 * ((i * 7919) % 11 - 5) / 5
    return {
        "timestamp_ms": T0 + i * BEAT_MS, "symbol": "BTCUSDT", "action": "HOLD" if i % 5 else "LONG",
        "probability": prob, "confidence": abs(prob - 0.5) * 2, "expected_value_bps": (prob - 0.5) * 100 - 4,
        "size_fraction": 0.0, "stop_loss": None, "take_profit": None,
        "votes": [{"model_id": m, "prob_raw": prob, "prob": prob, "weight": 0.3} for m in MODELS],
        "reasons": ["LOW_EDGE"] if i % 5 else [], "disagreement": 0.01, "source": "ensemble",
        "risk": None if i % 5 else "approved",
    }  # fmt: skip


def _equity(i: int) -> dict[str, Any]:
    return {"ts": T0 + i * BEAT_MS, "equity_usd": 10_000 + 50 * ((i % 97) - 48) / 48 + i * 0.01}


def _state(equity_points: int) -> dict[str, Any]:
    return {
        "system": {"venue": "paper", "base_url": "http://127.0.0.1", "symbols": ["BTCUSDT"],
                   "beat_interval_ms": 1500, "controls_enabled": False, "version": "bench", "started_ms": T0},
        "account": {"equity_usd": 10_000.0, "daily_pnl_usd": 12.5, "daily_loss_limit_usd": 300.0,
                    "trading_enabled": True},
        "models": [{"server_id": m, "up": True, "backend": m, "latency_p50_ms": 2.0, "latency_p99_ms": 6.0}
                   for m in ("lgbm", "onnx", "river")],
        "breakers": {"drawdown": False, "losses": False},
        "equity": [_equity(i - equity_points) for i in range(equity_points)],
    }  # fmt: skip


class FeedServer:
    """The built page and a scripted ``/ws`` on 127.0.0.1, in a thread with its own event loop."""

    def __init__(self) -> None:
        self.snapshot_points = 0
        self._loop = asyncio.new_event_loop()
        self._clients: set[web.WebSocketResponse] = set()
        self._ready = threading.Event()
        self.port = _free_port()
        self._thread = threading.Thread(target=self._run, name="feed-server", daemon=True)

    def __enter__(self) -> FeedServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the bench's feed server did not start")
        return self

    def __exit__(self, *_exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def push(self, message: dict[str, Any]) -> None:
        """Send ``message`` to every connected page (stamped with the wall clock at sending)."""
        asyncio.run_coroutine_threadsafe(self._send(message), self._loop).result(10)

    def clients(self) -> int:
        return len(self._clients)

    async def _send(self, message: dict[str, Any]) -> None:
        text = json.dumps({**message, "sent_epoch_ms": time.time() * 1000})
        for ws in list(self._clients):
            await ws.send_str(text)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/", self._index)
        app.router.add_static("/assets", DIST / "assets")
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    async def _index(self, _request: web.Request) -> web.FileResponse:
        return web.FileResponse(DIST / "index.html")

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if request.query.get("token") != TOKEN:
            await ws.close(code=4401, message=b"unauthorized")
            return ws
        await ws.send_str(json.dumps({"type": "snapshot", "ts": T0, **_state(self.snapshot_points)}))
        self._clients.add(ws)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and msg.data == "ping":
                    await ws.send_str(json.dumps({"type": "pong", "ts": T0}))
        finally:
            self._clients.discard(ws)
        return ws


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ---------------------------------------------------------------------- measurements


def bundle_sizes() -> dict[str, int]:
    """Gzipped bytes (level 9) of the build's JavaScript and CSS."""
    sizes = {"js": 0, "css": 0}
    for path in (DIST / "assets").iterdir():
        kind = path.suffix.lstrip(".")
        if kind in sizes:
            sizes[kind] += len(gzip.compress(path.read_bytes(), 9))
    return sizes


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.01)


def beat_latency(server: FeedServer, page: Any, beats: int, interval_ms: float) -> dict[str, list[float]]:
    """Push ``beats`` beats; per beat: receipt→DOM, receipt→frame and send→DOM in milliseconds."""
    server.snapshot_points = 500
    page.goto(f"{server.url}/?token={TOKEN}")
    _wait(lambda: server.clients() == 1, 20, "the page's WebSocket")
    page.wait_for_selector("[data-testid=connection][data-state=open]")
    for i in range(beats):
        ts = T0 + i * BEAT_MS
        log = {"ts": ts, "level": "INFO", "logger": "bench", "message": f"beat {i}"}
        beat = {"type": "beat", "ts": ts, **_state(0), "equity": [_equity(i)], "decisions": [_decision(i)]}
        server.push({**beat, "logs": [log]})
        time.sleep(interval_ms / 1000)
    page.wait_for_function(f"Object.keys(window.__bench.frame).length >= {beats}", timeout=20_000)
    data = page.evaluate("""() => { const b = window.__bench;
        return Object.keys(b.recv).map(k => [b.recv[k], b.dom[k], b.frame[k], b.sent[k],
                                              performance.timeOrigin + b.dom[k]]); }""")
    return {
        "receipt_dom": [dom - recv for recv, dom, _f, _s, _w in data],
        "receipt_frame": [frame - recv for recv, _d, frame, _s, _w in data],
        "send_dom": [wall - sent for _r, _d, _f, sent, wall in data],
    }


def chart_render(server: FeedServer, page: Any, points: int, in_snapshot: bool) -> tuple[float, float]:
    """One page load; ``points`` equity points arrive in its snapshot (``in_snapshot``: the page's
    first render includes them) or in one beat once the page shows its (empty) snapshot. Returns
    message received -> chart drawn with all of them, and -> the next frame (ms)."""
    server.snapshot_points = points if in_snapshot else 0
    page.add_init_script(f"window.__expectPoints = {points};")
    page.goto(f"{server.url}/?token={TOKEN}")
    if not in_snapshot:
        page.wait_for_selector("[data-testid=connection][data-state=open]")
        _wait(lambda: server.clients() == 1, 20, "the page's WebSocket")
        equity = [_equity(i) for i in range(points)]
        server.push({"type": "beat", "ts": T0, **_state(0), "equity": equity})
    page.wait_for_function("window.__bench.chartFrame !== null", timeout=30_000)
    start = "snapshot" if in_snapshot else "bigBeat"
    drawn, frame, received = page.evaluate(
        f"() => [window.__bench.chart, window.__bench.chartFrame, window.__bench.{start}]"
    )
    return drawn - received, frame - received


def _summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"p50 {statistics.median(ordered):6.1f}  p95 {p95:6.1f}  max {ordered[-1]:6.1f} ms (n={len(ordered)})"
    )


def main() -> None:
    """Parse the arguments, run the three measurements, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beats", type=int, default=150)
    parser.add_argument("--interval-ms", type=float, default=100.0)
    parser.add_argument("--renders", type=int, default=7)
    parser.add_argument("--points", type=int, default=10_000)
    args = parser.parse_args()

    sizes = bundle_sizes()
    print(f"dashboard bundle (gzip -9): JavaScript {sizes['js'] / 1000:.1f} kB (goal ≤ 250 kB), "
          f"CSS {sizes['css'] / 1000:.1f} kB")  # fmt: skip
    with FeedServer() as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.add_init_script("window.__expectPoints = Infinity;")
            page.add_init_script(PROBE)
            figures = beat_latency(server, page, args.beats, args.interval_ms)
            page.close()
            print(f"beat -> DOM, {args.beats} beats every {args.interval_ms:g} ms (goal p95 ≤ 100 ms):")
            print(f"  message received -> decision row in the DOM: {_summary(figures['receipt_dom'])}")
            print(f"  message received -> next frame:              {_summary(figures['receipt_frame'])}")
            print(f"  server send      -> decision row in the DOM: {_summary(figures['send_dom'])}")
            for in_snapshot in (False, True):
                renders: list[tuple[float, float]] = []
                for _ in range(args.renders):
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    page.add_init_script(PROBE)
                    renders.append(chart_render(server, page, args.points, in_snapshot))
                    page.close()
                drawn = [r[0] for r in renders]
                framed = [r[1] for r in renders]
                how = (
                    "a fresh page's snapshot (its first render)"
                    if in_snapshot
                    else "one beat to a loaded page"
                )
                print(f"rendering {args.points:,} equity points arriving in {how}; goal ≤ 200 ms:")
                for what, values in (("chart drawn", drawn), ("next frame ", framed)):
                    median, worst = statistics.median(values), max(values)
                    print(
                        f"  received -> {what}: median {median:6.1f}  max {worst:6.1f} ms (n={len(values)})"
                    )
        finally:
            browser.close()


if __name__ == "__main__":
    main()
