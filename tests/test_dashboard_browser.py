"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against a running demo.

One demo (``xylen demo --show-trades``, so trades happen within a minute or two) serves the built
page from the coordinator's dashboard port. In order, the test checks that:

- the page loads with no console error and removes the token from the address bar;
- beats arrive: the decisions table and the equity chart grow, the three models are listed;
- a trade appears in TradesList and, while it is open, its position with its stop and take-profit
  in Positions;
- every text has WCAG AA contrast against its background;
- the controls act with the admin token (pause shows ENTRIES PAUSED, resume clears it);
- a wrong token: the page asks for a token and shows no data (the API answers 401); the right
  token typed into that prompt brings the data;
- the coordinator restarted: the page reconnects, catches up and shows no row twice; then halt and
  flatten from the page (after typing FLATTEN) shows HALTED and the action in the logs.

Screenshots at 1280 and 390 px go to the test's tmp folder, and to ``docs/screenshots/`` when
``XYLEN_UPDATE_SCREENSHOTS=1``.

The demo stops all its services when its coordinator exits, so to restart only the coordinator
the test pauses the demo's own process (SIGSTOP; its services keep running), stops the coordinator,
starts ``xylen run`` on the demo's config itself, and at the end stops that coordinator and lets
the demo go on (SIGCONT) to be stopped as usual.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.demo_support import Demo, running_demo

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
READ_TOKEN = "read-token-for-the-browser-test"
ADMIN_TOKEN = "admin-token-for-the-browser-test"
MODEL_TOKEN = "model-token-for-the-browser-test"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
_COORDINATOR = re.compile(r"^coordinator: pid (\d+), config (\S+),")


def test_dashboard_in_chromium_against_a_running_demo(tmp_path: Path, shared_data: Path) -> None:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Debian's Chromium is missing at {CHROMIUM} (apt-get install chromium)")
    env = {
        "XYLEN_DASHBOARD_TOKEN": READ_TOKEN,
        "XYLEN_DASHBOARD_ADMIN_TOKEN": ADMIN_TOKEN,
        "XYLEN_MODEL_TOKEN": MODEL_TOKEN,
    }
    home = tmp_path / "home"
    with running_demo(home, shared_data, "--show-trades", env=env) as demo, sync_playwright() as pw:
        assert demo.token == READ_TOKEN, "the demo did not keep the preset dashboard token"
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page, errors = _open(browser, f"{demo.dashboard_url}/?token={READ_TOKEN}", 1280)
            _beats_arrive(page)
            assert errors == [], errors
            _a_trade_shows_with_its_bracket(page, demo)
            _screenshots(browser, page, demo, tmp_path)
            assert page.evaluate(CONTRAST) == [], "text below WCAG AA contrast"
            _controls_act(page)
            assert errors == [], errors
            _wrong_token_shows_no_data(browser, demo)
            _coordinator_restart_is_caught_up(page, demo, env)
        finally:
            browser.close()


# ---------------------------------------------------------------------- phases


def _open(browser: Browser, url: str, width: int) -> tuple[Page, list[str]]:
    """A page at ``url`` (``width`` px wide), collecting its console errors and page errors."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.goto(url)
    return page, errors


def _beats_arrive(page: Page) -> None:
    page.wait_for_selector("[data-testid=connection][data-state=open]", timeout=20_000)
    address = page.evaluate("location.href")
    assert "token=" not in address, f"the token stayed in the address bar: {address}"
    assert page.locator("[data-testid=venue]").inner_text().strip().lower() == "paper"
    page.wait_for_function("document.querySelectorAll('[data-testid=model-row]').length >= 3", timeout=20_000)
    rows0, points0 = _decision_rows(page), _equity_points(page)
    grown = f"""() => document.querySelectorAll('[data-testid=decision-row]').length >= {rows0 + 2}
        && Number(document.querySelector('[data-testid=equity-chart]').dataset.points) >= {points0 + 2}"""
    page.wait_for_function(grown, timeout=30_000)
    assert page.locator("[data-testid=equity-chart] svg [data-testid=equity-line]").count() >= 1
    # a click on a beat opens its breakdown: every model's vote
    page.locator("[data-testid=decision-row]").first.click()
    detail = page.locator("[data-testid=decision-detail]")
    detail.wait_for(timeout=5_000)
    assert "pooled P(up)" in detail.inner_text()
    page.locator("[data-testid=decision-row]").first.click()


# Every visible text's colour against the first opaque background behind it (a gradient counts as
# its darker #5C0000..#8B0000 end, the lighter one for contrast with white): WCAG AA asks 4.5:1,
# 3:1 for large text (24 px, or 18.66 px bold). Disabled controls and transparent text are exempt.
CONTRAST = """() => {
  const rgb = (c) => {
    const m = c.match(/[\\d.]+/g).map(Number);
    return { r: m[0], g: m[1], b: m[2], a: m.length > 3 ? m[3] : 1 };
  };
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const lum = ({ r, g, b }) => 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  const ratio = (a, b) => {
    const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const style = getComputedStyle(e);
      if (style.backgroundImage.includes('gradient')) return rgb('rgb(139, 0, 0)');
      const c = rgb(style.backgroundColor);
      if (c.a >= 0.99) return c;
    }
    return rgb('rgb(0, 0, 0)');
  };
  const failures = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim() !== '');
    if (!own || el.closest('[disabled], .sr-only, option')) continue;
    const style = getComputedStyle(el);
    const fg = rgb(style.color);
    if (fg.a < 0.5 || style.visibility === 'hidden' || el.getClientRects().length === 0) continue;
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    const r = ratio(fg, background(el));
    const text = el.textContent.trim().slice(0, 30);
    if (r < (large ? 3 : 4.5)) failures.push(`${r.toFixed(2)} ${style.color} "${text}"`);
  }
  return failures;
}"""


def _a_trade_shows_with_its_bracket(page: Page, demo: Demo) -> None:
    """Within a few minutes of --show-trades: a position with its stop and take-profit, then its trade."""
    bracket = """() => [...document.querySelectorAll('[data-testid=position-row] [data-testid=bracket]')]
        .some(cell => (cell.innerText.match(/\\d/g) || []).length >= 4 && !cell.innerText.includes('—'))"""
    _wait(page, bracket, demo, 180, "an open position with its stop and take-profit in Positions")
    _wait(page, "document.querySelectorAll('[data-testid=trade-row]').length >= 1", demo, 60, "a trade row")


def _screenshots(browser: Browser, page: Page, demo: Demo, tmp_path: Path) -> None:
    wide = tmp_path / "dashboard-1280.png"
    page.screenshot(path=str(wide), full_page=True)
    phone_page, phone_errors = _open(browser, f"{demo.dashboard_url}/?token={READ_TOKEN}", 390)
    phone_page.wait_for_function("document.querySelectorAll('[data-testid=decision-row]').length >= 1")
    width = phone_page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px phone"
    phone = tmp_path / "dashboard-390.png"
    phone_page.screenshot(path=str(phone), full_page=True)
    phone_page.close()
    assert phone_errors == [], phone_errors
    if os.environ.get("XYLEN_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for shot in (wide, phone):
            shutil.copyfile(shot, SCREENSHOTS / shot.name)


def _controls_act(page: Page) -> None:
    controls = page.locator("[data-testid=controls]")
    controls.wait_for(timeout=10_000)
    controls.locator("input[type=password]").fill(ADMIN_TOKEN)
    controls.get_by_role("button", name="Pause entries").click()
    page.wait_for_function(
        "document.querySelector('[data-testid=trading-state]').innerText.includes('PAUSED')", timeout=20_000
    )
    controls.get_by_role("button", name="Resume entries").click()
    page.wait_for_function(
        "document.querySelector('[data-testid=trading-state]').innerText.includes('ENABLED')", timeout=20_000
    )
    assert "Halt + flatten" in controls.inner_text()
    assert controls.get_by_role("button", name="Halt + flatten").is_disabled()  # until FLATTEN is typed


def _coordinator_restart_is_caught_up(page: Page, demo: Demo, env: dict[str, str]) -> None:
    pid, config = _coordinator(demo)
    newest = page.locator("[data-testid=decision-row]").first.get_attribute("data-key")
    demo.proc.send_signal(signal.SIGSTOP)  # the demo would stop every service on its coordinator's exit
    coordinator: subprocess.Popen[bytes] | None = None
    try:
        os.kill(pid, signal.SIGTERM)
        _wait_gone(pid, 30)
        page.wait_for_selector("[data-testid=connection][data-state=reconnecting]", timeout=10_000)
        coordinator = subprocess.Popen(
            [sys.executable, "-m", "xylen", "--home", str(demo.home), "run", "--config", config],
            env={**_without_home(os.environ), **env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        page.wait_for_selector("[data-testid=connection][data-state=open]", timeout=60_000)
        # caught up: a beat newer than the newest before the restart
        page.wait_for_function(
            f"""() => {{ const row = document.querySelector('[data-testid=decision-row]');
                return row !== null && row.dataset.key !== {newest!r}
                    && Number(row.dataset.key.split('|')[0]) > Number({newest!r}.split('|')[0]); }}""",
            timeout=60_000,
        )
        for kind, attribute in (("decision-row", "data-key"), ("trade-row", "data-trade-id")):
            keys = page.eval_on_selector_all(
                f"[data-testid={kind}]", f"rows => rows.map(r => r.getAttribute('{attribute}'))"
            )
            assert len(keys) == len(set(keys)), f"duplicated {kind}s after the reconnect: {keys}"
        _halt_and_flatten(page)  # last, on the coordinator this test started and is about to stop
    finally:
        if coordinator is not None:
            coordinator.send_signal(signal.SIGTERM)
            try:
                coordinator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                coordinator.kill()
                coordinator.wait(timeout=10)
        demo.proc.send_signal(signal.SIGCONT)


def _halt_and_flatten(page: Page) -> None:
    controls = page.locator("[data-testid=controls]")
    controls.locator("input[type=password]").fill(ADMIN_TOKEN)
    flatten = controls.get_by_role("button", name="Halt + flatten")
    controls.get_by_label("Type FLATTEN to close every position").fill("flatten")
    assert flatten.is_disabled()  # the confirmation is exact
    controls.get_by_label("Type FLATTEN to close every position").fill("FLATTEN")
    flatten.click()
    page.wait_for_function(
        "document.querySelector('[data-testid=trading-state]').innerText.includes('HALTED')", timeout=20_000
    )
    page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=log-line]')]"
        ".some(l => /dashboard control: halt/.test(l.innerText))",
        timeout=20_000,
    )


def _wrong_token_shows_no_data(browser: Browser, demo: Demo) -> None:
    with contextlib.closing(browser.new_page(viewport={"width": 1280, "height": 900})) as page:
        page.goto(f"{demo.dashboard_url}/?token=not-the-token")
        page.wait_for_selector("[data-testid=token-prompt]", timeout=15_000)
        assert page.locator("[data-testid=decision-row]").count() == 0
        assert page.locator("[data-testid=equity]").count() == 0
        assert "token=" not in page.evaluate("location.href")
        page.fill("#token", READ_TOKEN)  # the right token typed into the prompt: the data comes
        page.get_by_role("button", name="Connect").click()
        page.wait_for_selector("[data-testid=decision-row]", timeout=20_000)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{demo.dashboard_url}/api/trades?token=not-the-token", timeout=10)
    assert refused.value.code == 401
    assert json.loads(refused.value.read()) == {"error": "unauthorized"}


# ---------------------------------------------------------------------- helpers


def _decision_rows(page: Page) -> int:
    return page.locator("[data-testid=decision-row]").count()


def _equity_points(page: Page) -> int:
    return int(page.locator("[data-testid=equity-chart]").get_attribute("data-points") or 0)


def _wait(page: Page, predicate: str, demo: Demo, timeout_s: float, what: str) -> None:
    """Wait for ``predicate`` in the page, reading the demo's output meanwhile (its pipe never fills)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if page.evaluate(predicate if predicate.startswith("()") else f"() => {predicate}"):
            return
        demo.read_lines(0.5)
    tail = "\n".join(demo.lines[-30:])
    raise AssertionError(f"no {what} within {timeout_s:g} s; the demo's last lines:\n{tail}")


def _coordinator(demo: Demo) -> tuple[int, str]:
    for line in demo.lines:
        if m := _COORDINATOR.match(line):
            return int(m.group(1)), m.group(2)
    raise AssertionError("the demo printed no coordinator line")


def _wait_gone(pid: int, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return
        time.sleep(0.2)
    raise AssertionError(f"the coordinator (pid {pid}) did not stop within {timeout_s:g} s")


def _without_home(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k != "XYLEN_HOME"}
