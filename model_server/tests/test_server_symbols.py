"""A model answers only for the markets it was trained on, and says which, and its label, on /health.

A real server process on 127.0.0.1 serving a LightGBM model trained on real BTCUSDT candles.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_server.registry import default_river_metadata
from model_server.tests.server_support import (
    ServerProcess,
    feature_rows,
    metadata,
    predict_body,
    start_server,
    train_booster,
    write_model_dir,
)
from model_server.tests.test_server_http import call, run
from xylen.contract import HealthResponse, ModelMetadata

BAND = 0.0012


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, btc_5m_path: Path) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("home")
    folder = write_model_dir(home / "models" / "v1", train_booster(btc_5m_path, rounds=20), "v1")
    meta = json.loads((folder / "metadata.json").read_text())
    meta.update(symbols=["BTCUSDT"], symbol="BTCUSDT", label_band=BAND)
    (folder / "metadata.json").write_text(json.dumps(meta))
    proc = start_server(home, {"TRAINING_INTERVAL": "0"})
    yield proc
    proc.stop()


def test_health_names_symbols_interval_and_label(server: ServerProcess) -> None:
    status, body = run(call("GET", f"{server.url}/health", headers=None))
    assert status == 200, body
    health = HealthResponse.model_validate(body)
    assert health.symbols == ["BTCUSDT"] and health.interval == "5m"
    assert health.horizon_bars == 12 and health.label_band == pytest.approx(BAND)


def test_predict_refuses_a_symbol_the_model_was_not_trained_for(
    server: ServerProcess, btc_5m_path: Path
) -> None:
    row = feature_rows(btc_5m_path, 1)[0]
    status, body = run(call("POST", f"{server.url}/predict", predict_body(row, symbol="ETHUSDT")))
    assert status == 409, body
    assert "ETHUSDT" in body["detail"] and "BTCUSDT" in body["detail"]
    status, body = run(call("POST", f"{server.url}/predict", predict_body(row, symbol="BTCUSDT")))
    assert status == 200, body


def test_an_older_metadata_file_serves_only_its_symbol() -> None:
    """A metadata.json written before ``symbols`` existed names its one market in ``symbol``."""
    raw = json.loads(metadata("old").model_dump_json())
    del raw["symbols"]
    old = ModelMetadata.model_validate({**raw, "symbol": "ETHUSDT"})
    assert old.symbols == ["ETHUSDT"] and old.serves("ETHUSDT") and not old.serves("BTCUSDT")
    pooled = ModelMetadata.model_validate({**raw, "symbols": ["BTCUSDT", "ETHUSDT"]})
    assert pooled.serves("BTCUSDT") and pooled.serves("ETHUSDT") and not pooled.serves("SOLUSDT")


def test_an_online_model_started_from_nothing_answers_for_any_symbol() -> None:
    meta = default_river_metadata()
    assert meta.symbols == [] and meta.serves("ETHUSDT") and meta.serves("BTCUSDT")
