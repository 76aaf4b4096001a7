"""Settings (env file, environment, flags) and the small pure parts: rate limiter, feedback buffer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from model_server.feedback import FeedbackBuffer
from model_server.guards import RateLimiter
from model_server.settings import load_settings
from model_server.tests.server_support import REPO
from xylen.contract import Outcome
from xylen.errors import ConfigError

EXAMPLE = REPO / "model_server" / "models.env.example"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key in {"HOST", "PORT", "MODEL_PATH", "MODEL_TYPE", "XYLEN_MODEL_TOKEN", "MAX_QUEUE_DEPTH"}:
            monkeypatch.delenv(key)


def test_the_example_file_validates() -> None:
    settings = load_settings(EXAMPLE)
    assert settings.port == 8001 and settings.model_type == "lightgbm" and settings.token is None
    text = EXAMPLE.read_text()
    for key in type(settings).model_fields:
        assert f"{key.upper()}=" in text, f"{key.upper()} is not documented in models.env.example"


def test_flags_beat_environment_beat_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "m.env"
    env_file.write_text("PORT=9001\nMAX_QUEUE_DEPTH=7\nLONG_THRESHOLD=0.6\n")
    monkeypatch.setenv("PORT", "9002")
    settings = load_settings(env_file, host="127.0.0.1")
    assert (settings.port, settings.max_queue_depth, settings.long_threshold) == (9002, 7, 0.6)
    assert load_settings(env_file, port=9003).port == 9003


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("MAX_QUEUE_DEPTH=lots", "MAX_QUEUE_DEPTH"),
        ("PORT=70000", "PORT"),
        ("MODEL_TYPE=xgboost", "MODEL_TYPE"),
        ("SHORT_THRESHOLD=0.7", "SHORT_THRESHOLD"),
        ("MAX_QUEUE_DPETH=5", "MAX_QUEUE_DPETH"),
        ("MODEL_PATH=/no/such/dir", "MODEL_PATH"),
        ("HOST=0.0.0.0", "XYLEN_MODEL_TOKEN"),
    ],
)
def test_a_bad_value_names_its_key(tmp_path: Path, line: str, key: str) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_text(line + "\n")
    with pytest.raises(ConfigError) as info:
        load_settings(env_file)
    assert info.value.key == key


@pytest.mark.parametrize("entry", [["-m", "model_server"], ["-m", "xylen", "model-server"]])
def test_command_line_exits_2_with_one_line(tmp_path: Path, entry: list[str]) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_text("MIN_FREE_MEMORY_MB=-5\n")
    env = {k: v for k, v in os.environ.items() if k not in {"PORT", "HOST"}}
    done = subprocess.run(
        [sys.executable, *entry, "--env-file", str(env_file)],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "MIN_FREE_MEMORY_MB" in lines[0], done.stderr


def test_rate_limiter_refills() -> None:
    limiter = RateLimiter(rate=2.0, burst=3)
    assert [limiter.allow("a", now=0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b", now=0.0)  # buckets are per client
    assert limiter.allow("a", now=0.5) and not limiter.allow("a", now=0.5)


def test_feedback_buffer_counts_parts_and_drops_stale_temp_files(tmp_path: Path) -> None:
    buffer = FeedbackBuffer(tmp_path)
    rows = [Outcome(request_id=f"r{i}", timestamp=i, features={"a": float(i)}, label=i % 2) for i in range(5)]
    first = buffer.append(rows, "f2")
    buffer.append(rows[:2], "f2")
    (tmp_path / ".tmp-part-x.parquet.999999999.abcd").write_bytes(b"torn")
    again = FeedbackBuffer(tmp_path)
    assert again.size == buffer.size == 7 and len(again.parts()) == 2 and again.parts()[0] == first
    assert not list(tmp_path.glob(".tmp-*"))
    frame = again.read()
    assert frame["a"].tolist() == [0, 1, 2, 3, 4, 0, 1] and frame["pnl"].isna().all()
    assert again.tail_features(3, ["a"]) == [{"a": 1.0}, {"a": 0.0}, {"a": 4.0}]
    with pytest.raises(ValueError, match="clash"):
        buffer.append([Outcome(request_id="x", timestamp=1, features={"label": 1.0}, label=1)], "f2")
