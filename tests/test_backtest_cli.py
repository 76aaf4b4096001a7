"""`xylen backtest` end to end on two days of the shipped BTCUSDT 5m candles, as a user runs it.

Two small LightGBM model directories are trained on the candles before the span (``xylen train``'s
library function); the command runs the ensemble over them and the EMA 9/21 reference beside it
and writes the report.  Checked: exit status 0, every report file (report.html embedding its PNGs,
summary.json, trades.parquet/.csv, decisions.parquet), the same summary.json byte for byte on a
second run, the reference strategy alone with its log in the report folder and a chosen window for
the price plot, a config of two symbols running its first and saying so, exit status 2 with a
message naming the problem for bad arguments and a bad config, a candle file with a gap reported as
such, and Ctrl-C stopping at once without leaving scratch folders.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from backtest import settings
from backtest.data import load_candles, shipped_candle_file
from backtest.tests.ctrl_c import interrupted, wait_for
from backtest.votes import TrainSettings, train_dir
from xylen.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
SYMBOL = "BTCUSDT"
SPAN = ("--from", "2024-03-05", "--to", "2024-03-07")
PNGS = (
    "equity_drawdown.png",
    "monthly_returns.png",
    "trade_pnl.png",
    "exposure.png",
    "reliability.png",
    "trades_window.png",
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two model directories trained on the candles before the span, comma-separated."""
    candles, _ = load_candles(SYMBOL)
    cut = int(pd.Timestamp(SPAN[1], tz="UTC").value // 1_000_000) - 3_600_000
    before = candles[candles["open_time"] < cut].reset_index(drop=True)
    root = tmp_path_factory.mktemp("models")
    small = TrainSettings(rounds=20, folds=2, max_rows=8_000)
    dirs = [train_dir(before, SYMBOL, root / f"m{seed}", small, seed, cut, interval="5m") for seed in (1, 2)]
    return ",".join(str(d) for d in dirs)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Zero costs and no minimum edge so that two days trade (as ``xylen demo --show-trades``)."""
    data = settings.default_config_data(SYMBOL)
    data["ensemble"] = {"quorum": 1, "min_edge": 0.0, "max_disagreement": 0.5}
    data["risk"].update(sizing="fixed_fraction", fixed_fraction=0.01, cooldown_after_loss_seconds=0.0)
    data["trading"] = {"horizon_minutes": 30, "entry": "market", "taker_fee_bps": 0.0, "slippage_bps": 0.0}
    path = tmp_path_factory.mktemp("config") / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def xylen(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "xylen", "--log-level", "WARNING", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
    )


@pytest.fixture(scope="module")
def reports(models: str, config_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("reports")
    out = []
    for name in ("a", "b"):
        done = xylen(
            "backtest", "--config", str(config_file), *SPAN, "--models", models, "--report", str(root / name)
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "report:" in done.stdout
        out.append(root / name)
    return out[0], out[1]


def test_the_report_files_are_written(reports: tuple[Path, Path]) -> None:
    out, _ = reports
    for name in ("report.html", "summary.json", "trades.parquet", "trades.csv", "decisions.parquet", *PNGS):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    html = (out / "report.html").read_text()
    for name in PNGS:  # self-contained: each plot embedded, nothing fetched
        png = base64.b64encode((out / name).read_bytes()).decode()
        assert png in html, name
    assert "http://" not in html and "https://" not in html
    trades = pd.read_parquet(out / "trades.parquet")
    decisions = pd.read_parquet(out / "decisions.parquet")
    assert len(trades) >= 3 and len(decisions) == 2 * 288
    assert set(trades["model_version"]) and all(trades["model_version"].str.count("=") == 2)
    pd.testing.assert_frame_equal(pd.read_csv(out / "trades.csv"), trades, check_dtype=False)
    summary = json.loads((out / "summary.json").read_text())
    assert "ema_cross_9_21" in json.dumps(summary)  # the reference beside the ensemble


def test_a_second_run_gives_a_byte_identical_summary(reports: tuple[Path, Path]) -> None:
    a, b = reports
    assert (a / "summary.json").read_bytes() == (b / "summary.json").read_bytes()


def test_the_reference_strategy_alone(tmp_path: Path) -> None:
    done = xylen(
        "backtest", *SPAN, "--strategy", "ema_cross", "--report", str(tmp_path),
        "--plot-window", "2024-03-06", "2024-03-06 12:00",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    trades = pd.read_parquet(tmp_path / "trades.parquet")
    assert len(trades) >= 5 and set(trades["entry_style"]) == {"taker"}
    html = (tmp_path / "report.html").read_text()
    assert "Price with entries and exits, 2024-03-06 00:00 UTC to 2024-03-06 12:00 UTC" in html
    assert '<a href="backtest.log">' in html
    # the run's records are in the report folder, stamped with market time, not on the terminal
    lines = (tmp_path / "backtest.log").read_text().splitlines()
    stamped = [line for line in lines if not line.startswith("-")]
    assert stamped and all(line.split()[1] == "ema_cross_9_21" for line in stamped)
    times = sorted(line.split()[0] for line in stamped)
    assert times[0] >= "2024-03-05T00:00:00Z" and times[-1] <= "2024-03-07T00:00:00Z"
    warnings = sum(line.split()[2] == "WARNING" for line in stamped)
    errors = sum(line.split()[2] in ("ERROR", "CRITICAL") for line in stamped)
    assert warnings > 0  # two days of 5m crossovers trip the consecutive-losses breaker
    assert f"log: {tmp_path / 'backtest.log'} ({warnings} warnings, {errors} errors)" in done.stdout
    assert "coordinator." not in done.stderr and "paper_exchange." not in done.stderr


def test_a_config_of_several_symbols_runs_its_first_and_says_so(tmp_path: Path) -> None:
    data = settings.default_config_data(SYMBOL)
    data["market"]["symbols"] = [SYMBOL, "ETHUSDT"]
    config = tmp_path / "two.yaml"
    config.write_text(yaml.safe_dump(data))
    done = xylen(
        "backtest", "--from", "2024-03-05", "--to", "2024-03-06", "--strategy", "ema_cross",
        "--config", str(config), "--report", str(tmp_path / "r"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "note: the config trades BTCUSDT, ETHUSDT; this run backtests BTCUSDT alone" in done.stdout
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["symbol"] == SYMBOL
    chosen = xylen(
        "backtest", "--from", "2024-03-05", "--to", "2024-03-06", "--strategy", "ema_cross",
        "--config", str(config), "--symbol", "ETHUSDT", "--report", str(tmp_path / "e"),
    )  # fmt: skip
    assert chosen.returncode == 0, chosen.stderr[-3000:]
    assert "note: the config trades" not in chosen.stdout
    assert json.loads((tmp_path / "e" / "summary.json").read_text())["symbol"] == "ETHUSDT"


def test_a_candle_file_with_a_gap_runs_and_the_report_says_so(tmp_path: Path) -> None:
    shipped = pd.read_feather(shipped_candle_file(SYMBOL))
    day = shipped["date"] >= pd.Timestamp("2024-03-05 06:00", tz="UTC")
    hole = day & (shipped["date"] < pd.Timestamp("2024-03-05 08:30", tz="UTC"))  # 30 candles
    data = tmp_path / "BTC_USDT_USDT-5m-futures.feather"
    shipped[~hole].reset_index(drop=True).to_feather(data)
    done = xylen(
        "backtest", *SPAN, "--strategy", "ema_cross", "--data", str(data), "--report", str(tmp_path / "r"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "note: the span's candles have 1 issue(s), 30 candle(s) missing in 1 gap(s)" in done.stdout
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["data_quality"]["lines"] == [
        "gap: 30 missing candle(s) from 2024-03-05 06:00 to 2024-03-05 08:25 UTC"
    ]
    assert "30 missing candle(s) from 2024-03-05 06:00" in (tmp_path / "r" / "report.html").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "2024-03-07", "--to", "2024-03-05"), "--from must be before --to"),
        (("--from", "March", "--to", "2024-03-05"), "--from 'March'"),
        ((*SPAN, "--retrain-every", "monthly"), "--retrain-every 'monthly'"),
        ((*SPAN, "--ema-quantity", "-1"), "--ema-quantity"),
        ((*SPAN, "--models", "/nonexistent/model"), "--models"),
        ((*SPAN, "--fidelity", "http"), "--fidelity http needs --config"),
        ((*SPAN, "--models", "m", "--walk-forward"), "--models and --walk-forward exclude each other"),
        ((*SPAN, "--walk-forward", "--strategy", "ema_cross"), "--walk-forward: --strategy ema_cross"),
        ((*SPAN, "--config", "/nonexistent/config.yaml"), "--config"),
        (("--from", "2030-01-01", "--to", "2030-02-01"), "fewer than 2 candles"),
        ((*SPAN, "--symbol", "DOGEUSDT"), "DOGEUSDT"),
        ((*SPAN, "--plot-window", "2024-03-06", "2024-03-05"), "--plot-window: FROM must be before TO"),
        ((*SPAN, "--plot-window", "2024-04-01", "2024-04-02"), "--plot-window: the window is outside"),
        ((*SPAN, "--plot-window", "today", "2024-03-06"), "--plot-window 'today'"),
        ((*SPAN, "--interval", "1h"), "--interval 1h: feature set"),
        ((*SPAN, "--interval", "5x"), "--interval 5x: unknown interval"),
    ],
)
def test_bad_arguments_exit_2_naming_the_problem(
    args: tuple[str, ...], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backtest", *args, "--report", str(tmp_path / "r")]) == 2
    assert message in capsys.readouterr().err


def test_a_report_path_that_is_a_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = tmp_path / "out"
    taken.write_text("someone's notes")
    assert main(["backtest", *SPAN, "--strategy", "ema_cross", "--report", str(taken)]) == 2
    assert f"--report {taken}: a file is there, not a folder" in capsys.readouterr().err
    assert taken.read_text() == "someone's notes"


def test_a_bad_config_exits_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = settings.default_config_data(SYMBOL)
    data["risk"]["max_leverage_typo"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert main(["backtest", *SPAN, "--config", str(bad), "--report", str(tmp_path / "r")]) == 2
    assert "max_leverage_typo" in capsys.readouterr().err


def test_http_fidelity_refuses_to_run_when_a_model_server_does_not_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without the server's votes every decision would be a HOLD for want of quorum: the command
    fails at once naming the server, and writes no report."""
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = settings.default_config_data(SYMBOL)
    data["model_servers"] = [{"id": "m1", "url": f"http://127.0.0.1:{port}"}]
    config = tmp_path / "servers.yaml"
    config.write_text(yaml.safe_dump(data))
    args = ["backtest", *SPAN, "--fidelity", "http", "--config", str(config), "--report", str(tmp_path / "r")]
    assert main(args) == 1
    assert f"no answer to /health from m1 (http://127.0.0.1:{port})" in capsys.readouterr().err
    assert not (tmp_path / "r" / "report.html").exists()
    data["model_servers"] = [{"id": "m1", "url": f"http://127.0.0.1:{port}", "enabled": False}]
    config.write_text(yaml.safe_dump(data))
    assert main(args) == 2  # with none enabled the config itself is refused
    assert "ensemble.quorum: is 1 but only 0 model server(s) are enabled" in capsys.readouterr().err


def test_a_latency_beyond_the_candle_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = settings.default_config_data(SYMBOL)
    data["trading"] = {"latency_ms": 60_000}
    slow = tmp_path / "slow.yaml"
    slow.write_text(yaml.safe_dump(data))
    args = ["backtest", *SPAN, "--interval", "1m", "--config", str(slow), "--report", str(tmp_path / "r")]
    assert main(args) == 2
    assert "trading.latency_ms: 60000 ms does not end within a 1m candle" in capsys.readouterr().err


def _run_database(pid: int) -> Path | None:
    """The run's scratch database the process holds open (Linux: its file descriptors)."""
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = Path(os.readlink(fd))
        except OSError:
            continue
        if target.name == "xylen.db" and target.parent.name.startswith("xylen-backtest-"):
            return target
    return None


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads the process's open files in /proc")
@pytest.mark.parametrize("phase", ["training", "candles"])
def test_ctrl_c_stops_at_once_and_leaves_no_scratch(phase: str, tmp_path: Path) -> None:
    """Ctrl-C while the models train or while the candles run: exit 130 within seconds (not at the
    end of the phase), the run's scratch databases and the trained models' folder removed, no report
    written."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    report = tmp_path / "r"
    # each phase alone takes half a minute or more: walk-forward models every week of the quarter,
    # the reference's 26,000 candles
    args = ["backtest", "--from", "2024-01-01", "--to", "2024-04-01", "--report", str(report)]
    if phase == "training":
        args += ["--walk-forward", "--retrain-every", "7d"]
    else:
        args += ["--strategy", "ema_cross"]

    def held(proc: subprocess.Popen[str]) -> Path:
        if phase == "training":
            return wait_for(lambda: next(scratch.glob("xylen-backtest-models-*/*"), None), proc, "a model")
        return wait_for(lambda: _run_database(proc.pid), proc, "the run's database")

    proc, database, _out, err = interrupted(
        ["--log-level", "WARNING", *args], cwd=ROOT, tmpdir=scratch, ready=held
    )
    assert proc.returncode == 130, err[-3000:]
    assert "xylen: interrupted" in err
    assert not database.exists() and not database.parent.exists()
    assert list(scratch.iterdir()) == []
    assert not (report / "report.html").exists()
