"""Config loading: the example file, broken files (exit 2 naming the key), secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from xylen.cli.main import main
from xylen.config import XylenConfig, load_config, load_secrets
from xylen.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "config.yaml.example"


def _leaf_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        ann = field.annotation
        inner = getattr(ann, "__args__", (ann,))
        sub = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if sub is not None:
            keys |= _leaf_keys(sub, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def _example_keys(data: object, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, dict) or (isinstance(value, list) and value and isinstance(value[0], dict)):
                keys |= _example_keys(value, f"{prefix}{key}.")
            else:
                keys.add(prefix + key)
    elif isinstance(data, list):
        for item in data:
            keys |= _example_keys(item, prefix)
    return keys


def test_example_documents_every_key_with_its_default() -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    assert load_config(EXAMPLE) == XylenConfig()
    assert _example_keys(data) == _leaf_keys(XylenConfig)


def test_every_example_line_with_a_value_has_a_comment() -> None:
    for number, line in enumerate(EXAMPLE.read_text().splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and not stripped.endswith(":"):
            assert "#" in line, f"config.yaml.example line {number} has no comment: {line!r}"


def test_no_file_and_empty_file_give_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(None) == XylenConfig() == load_config(empty)
    assert XylenConfig().exchange.mode.value == "paper"


def test_config_is_frozen() -> None:
    config = XylenConfig()
    with pytest.raises(ValidationError):
        config.risk.max_leverage = 50  # type: ignore[misc]


BROKEN = [
    ("wrong type", "risk:\n  max_leverage: lots\n", "risk.max_leverage", "must be a number (got 'lots')"),
    ("unknown key", "risk:\n  max_levrage: 3\n", "risk.max_levrage", "unknown key"),
    ("unknown section", "riks:\n  max_leverage: 3\n", "riks", "unknown key"),
    ("missing required", "model_servers:\n  - id: a\n", "model_servers[0].url", "required value missing"),
    ("bad yaml", "risk:\n  max_leverage: [3\n", "(yaml)", "bad YAML at line"),
    ("not a mapping", "- just\n- a list\n", "(top level)", "expected a mapping"),
    ("out of range", "exchange:\n  leverage: 500\n", "exchange.leverage", "less than or equal to 125"),
    ("bad enum", "exchange:\n  mode: moon\n", "exchange.mode", "'paper', 'testnet' or 'live'"),
    ("live unconfirmed", "exchange:\n  mode: live\n", "exchange.confirm_live", "real money"),
    ("secret in file", "exchange:\n  api_secret: abc\n", "exchange.api_secret", "environment"),
    ("bad interval", "market:\n  higher_intervals: [7m]\n", "market.higher_intervals", "multiple"),
    ("deadline", "heartbeat:\n  interval_seconds: 10\n", "heartbeat.deadline_seconds", "shorter"),
    ("quorum", "ensemble:\n  quorum: 4\n", "ensemble.quorum", "only 1 model server"),
    (
        "duplicate ids",
        "model_servers:\n  - {id: a, url: 'http://h:1'}\n  - {id: a, url: 'http://h:2'}\n",
        "model_servers",
        "unique",
    ),
    (
        "duplicate section",
        "risk:\n  max_leverage: 3\nexchange:\n  leverage: 2\nrisk:\n  kelly_fraction: 0.1\n",
        "risk",
        "given twice (line 5)",
    ),
    ("duplicate key", "risk:\n  max_leverage: 3\n  max_leverage: 20\n", "risk.max_leverage", "given twice"),
    (
        "duplicate in a list item",
        "model_servers:\n  - {id: a, url: 'http://h:1', id: b}\n",
        "model_servers[0].id",
        "given twice",
    ),
    ("bool as number", "exchange:\n  leverage: true\n", "exchange.leverage", "must be a number (got True)"),
    ("quoted number", "risk:\n  max_leverage: '3'\n", "risk.max_leverage", "must be a number"),
    ("yes as bool", "exchange:\n  confirm_live: 'yes'\n", "exchange.confirm_live", "true or false"),
    ("number as bool", "trading:\n  enabled: 1\n", "trading.enabled", "true or false"),
    ("infinite limit", "risk:\n  max_leverage: .inf\n", "risk.max_leverage", "finite"),
    (
        "infinite float",
        "exchange:\n  request_timeout_seconds: .inf\n",
        "exchange.request_timeout_seconds",
        "finite",
    ),
    ("nan fraction", "risk:\n  kelly_fraction: .nan\n", "risk.kelly_fraction", "finite"),
    ("bad url", "model_servers:\n  - {id: a, url: 'ftp://h'}\n", "model_servers[0].url", "http://"),
    (
        "negative weight",
        "model_servers:\n  - {id: a, url: 'http://h', weight: -1}\n",
        "model_servers[0].weight",
        "greater than or equal to 0",
    ),
]


@pytest.mark.parametrize(("name", "text", "key", "reason"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_exits_2_naming_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, key: str, reason: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    status = main(["config", "check", "--config", str(path)])
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert len(err.splitlines()) == 1, err
    assert f": {key}: " in err, err
    assert reason in err, err


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "does not exist" in str(info.value)


def test_cli_process_exit_status(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("trading:\n  enabled: maybe\n")
    proc = subprocess.run(
        [sys.executable, "-m", "xylen", "config", "check", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "trading.enabled" in proc.stderr
    good = subprocess.run(
        [sys.executable, "-m", "xylen", "config", "check", "--config", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    assert "config OK: mode paper" in good.stdout


def test_secrets_from_env_are_hidden() -> None:
    secrets = load_secrets({"BINANCE_API_KEY": "k-123", "BINANCE_API_SECRET": "s-456"})
    assert secrets.binance_api_key is not None
    assert secrets.binance_api_key.get_secret_value() == "k-123"
    shown = repr(secrets) + str(secrets.model_dump()) + secrets.model_dump_json()
    assert "k-123" not in shown and "s-456" not in shown


def test_secrets_file_must_be_mode_600(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    path.write_text("# keys\nBINANCE_API_KEY=from-file\nXYLEN_MODEL_TOKEN='tok'\n")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="mode 600"):
        load_secrets({}, path)
    os.chmod(path, 0o600)
    secrets = load_secrets({"XYLEN_SECRETS_FILE": str(path)})
    assert secrets.binance_api_key is not None and secrets.model_token is not None
    assert secrets.binance_api_key.get_secret_value() == "from-file"
    assert secrets.model_token.get_secret_value() == "tok"
    # the environment wins over the file
    env_wins = load_secrets({"BINANCE_API_KEY": "from-env"}, path)
    assert env_wins.binance_api_key is not None
    assert env_wins.binance_api_key.get_secret_value() == "from-env"


def test_paper_keys_have_documented_defaults() -> None:
    secrets = load_secrets({})
    assert secrets.paper_api_key.get_secret_value() == "xylen-paper-key"
    assert secrets.binance_api_key is None


def test_history_default_is_the_feature_engines_tested_history() -> None:
    from xylen.features import DEFAULT_HISTORY

    assert XylenConfig().market.history_candles == DEFAULT_HISTORY
