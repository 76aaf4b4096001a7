""":func:`xylen.preflight.models.model_checks` against real model server processes.

A LightGBM server on this build's feature version passes.  A server given a model of another
feature version refuses to load it and fails here as not loaded; a server whose model answers
another timeframe fails on the probe prediction with the server's own 409 reason; a model trained
for another symbol, and a wrong token, fail too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_server.tests.server_support import (
    TOKEN,
    ServerProcess,
    start_server,
    train_booster,
    write_model_dir,
)
from xylen.config.schema import XylenConfig
from xylen.preflight.models import model_checks
from xylen.preflight.report import Status


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, btc_5m_path: Path
) -> Iterator[dict[str, ServerProcess]]:
    booster = train_booster(btc_5m_path, rounds=20)
    root = tmp_path_factory.mktemp("preflight-models")
    started: dict[str, ServerProcess] = {}
    try:
        for name, feature_version in (("current", None), ("old", "f1")):
            models = root / name / "models"
            models.mkdir(parents=True)
            kwargs = {} if feature_version is None else {"feature_version": feature_version}
            write_model_dir(models / "20240101T000000Z", booster, "20240101T000000Z", onnx=False, **kwargs)
            started[name] = start_server(
                root / name / "home",
                env={"MODEL_PATH": str(models), "MODEL_TYPE": "lightgbm", "WATCH_INTERVAL_S": "0"},
            )
        yield started
    finally:
        for server in started.values():
            server.stop()


def config(servers: dict[str, ServerProcess], *names: str, symbols: list[str] | None = None) -> XylenConfig:
    return XylenConfig.model_validate(
        {
            "market": {"symbols": symbols or ["BTCUSDT"]},
            "model_servers": [{"id": n, "url": servers[n].url} for n in names],
        }
    )


def statuses(cfg: XylenConfig, token: str | None = TOKEN) -> dict[str, tuple[Status, str]]:
    return {c.name: (c.status, c.detail) for c in asyncio.run(model_checks(cfg, token))}


def test_matching_server_passes(servers: dict[str, ServerProcess]) -> None:
    found = statuses(config(servers, "current"))
    assert found["model current"][0] is Status.PASS, found
    assert found["model quorum"][0] is Status.PASS


def test_other_feature_version_fails(servers: dict[str, ServerProcess]) -> None:
    found = statuses(config(servers, "current", "old"))
    status, detail = found["model old"]
    assert status is Status.FAIL and "model loaded: False" in detail
    assert found["model current"][0] is Status.PASS


def test_other_timeframe_fails_on_the_probe(servers: dict[str, ServerProcess]) -> None:
    cfg = XylenConfig.model_validate(
        {
            "market": {"symbols": ["BTCUSDT"], "base_interval": "15m", "higher_intervals": ["1h"]},
            "model_servers": [{"id": "current", "url": servers["current"].url}],
        }
    )
    status, detail = statuses(cfg)["model current"]
    assert status is Status.FAIL and "409" in detail and "timeframe" in detail


def test_other_symbol_fails(servers: dict[str, ServerProcess]) -> None:
    status, detail = statuses(config(servers, "current", symbols=["ETHUSDT"]))["model current"]
    assert status is Status.FAIL and "ETHUSDT" in detail


def test_wrong_token_fails(servers: dict[str, ServerProcess]) -> None:
    found = statuses(config(servers, "current"), token="wrong")
    assert found["model current"][0] is Status.FAIL and "401" in found["model current"][1]
    assert found["model quorum"][0] is Status.FAIL
