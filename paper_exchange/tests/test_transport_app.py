"""The app's life cycle and command line: replay clock task, shutdown, signals, argument checks.

Uses ``FakeService``, a fake at the seam (``test_transport_support``), in place of the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import cast

import aiohttp
import pytest

from paper_exchange.__main__ import main as module_main
from paper_exchange.app import create_app
from paper_exchange.protocol import ExchangeService
from paper_exchange.tests.test_transport_support import FakeService, running_app, settings
from xylen.cli.paper_exchange import build_settings, parse_start, register
from xylen.errors import ConfigError, UsageError

REPO = Path(__file__).resolve().parents[2]


def test_clock_ticks_survives_errors_and_closes_the_service(caplog: pytest.LogCaptureFixture) -> None:
    service = FakeService()

    async def scenario() -> None:
        async with running_app(service, settings(tick_ms=10)) as (url, _app):
            await asyncio.sleep(0.2)
            assert service.advances >= 5
            service.advance_error = RuntimeError("replay broke")
            before = service.advances
            await asyncio.sleep(0.2)
            assert service.advances >= before + 5  # logged and continued
            async with aiohttp.ClientSession() as s, s.get(f"{url}/fapi/v1/ping") as resp:
                assert resp.status == 200  # the server keeps serving
        assert service.closed

    with caplog.at_level(logging.ERROR, logger="paper_exchange.app"):
        asyncio.run(scenario())
    failures = [r for r in caplog.records if "advance() failed" in r.getMessage()]
    assert len(failures) == 1  # throttled: one log line per minute, not one per tick
    assert service.callbacks  # the app subscribed to user-data events


def test_create_app_refuses_a_service_missing_a_method() -> None:
    class Partial(FakeService):
        klines = None  # type: ignore[assignment]

    with pytest.raises(TypeError, match="klines"):
        create_app(cast(ExchangeService, Partial()), settings())


def test_parse_start() -> None:
    assert parse_start(None) is None
    assert parse_start("2024-01") == 1704067200000
    assert parse_start("2024-01-02") == 1704153600000
    assert parse_start("2024-01-02T00:00:00Z") == 1704153600000
    assert parse_start("1704067200000") == 1704067200000
    with pytest.raises(UsageError):
        parse_start("January")


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["paper-exchange", *argv])


def test_cli_settings_and_bad_fault_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XYLEN_PAPER_API_KEY", "env-key")
    monkeypatch.setenv("XYLEN_PAPER_API_SECRET", "env-secret")
    built = build_settings(_args("--port", "9100"))
    assert built.port == 9100 and dict(built.api_keys) == {"env-key": "env-secret"}
    built = build_settings(_args("--api-key", "k", "--api-secret", "s"))
    assert dict(built.api_keys) == {"k": "s"} and built.host == "127.0.0.1"
    with pytest.raises(UsageError):
        build_settings(_args("--port", "70000"))
    bad = tmp_path / "faults.yaml"
    bad.write_text("error_rate: {rate: 3}\n")
    from xylen.cli.paper_exchange import run

    with pytest.raises(ConfigError, match=r"error_rate\.rate"):
        run(_args("--faults", str(bad)))
    assert module_main(["--faults", str(bad), "--port", "0"]) == 2


SERVER_SCRIPT = textwrap.dedent(
    """
    import asyncio, logging, sys
    from paper_exchange.app import create_app, serve
    from paper_exchange.tests.test_transport_support import FakeService, settings
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    service = FakeService()
    asyncio.run(serve(create_app(service, settings()), "127.0.0.1", 0))
    print("closed" if service.closed else "not closed", flush=True)
    """
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_shuts_down_gracefully_on_signals(sig: signal.Signals) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if "listening on http://127.0.0.1:" in line or not line:
                break
        assert "listening on" in line, line
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, err
    assert out.strip() == "closed"
