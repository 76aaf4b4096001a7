"""``xylen optimize``: windows and parameters, and two worker processes on one SQLite study over a
day of the shipped BTCUSDT 5m candles (walk-forward models retrained every 12 h, trained once for
both workers)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from backtest import optimize as opt
from backtest import settings
from backtest.data import history_of, load_candles
from backtest.tests.ctrl_c import interrupted, wait_for
from backtest.votes import ModelVotes
from xylen.cli.main import main
from xylen.errors import ConfigError, UsageError

REPO = Path(__file__).resolve().parents[2]
STEP = 300_000
DAY = "2024-03-05"


def _ms(day: str) -> int:
    return int(pd.Timestamp(day, tz="UTC").value // 1_000_000)


def test_windows_split_the_span_in_sample_first() -> None:
    plan = opt.plan_windows(0, 288 * STEP, STEP, 3, 0.25)
    assert plan.in_sample == ((0, 72 * STEP), (72 * STEP, 144 * STEP), (144 * STEP, 216 * STEP))
    assert plan.out_of_sample == (216 * STEP, 288 * STEP)
    assert opt.plan_windows(0, 10 * STEP, STEP, 1, 0.0).out_of_sample is None
    for windows, holdout in ((0, 0.25), (2, 1.0), (2, -0.1), (6, 0.0)):
        with pytest.raises(UsageError):
            opt.plan_windows(0, 10 * STEP, STEP, windows, holdout)


def test_params_are_set_and_validated() -> None:
    config = settings.load(None, "BTCUSDT")
    changed = opt.apply_params(config, {"ensemble.min_edge": 0.05, "risk.sizing": "fixed_fraction"})
    assert changed.ensemble.min_edge == 0.05 and changed.risk.sizing == "fixed_fraction"
    assert changed.trading == config.trading
    with pytest.raises(UsageError, match=r"ensemble\.no_such_key"):
        opt.apply_params(config, {"ensemble.no_such_key": 1.0})
    with pytest.raises(ConfigError):
        opt.apply_params(config, {"ensemble.max_disagreement": 0.9})  # the schema's bound (<= 0.5)
    # every parameter of the search space is a real config key inside its schema bounds
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(20):
        trial = study.ask()
        opt.apply_params(config, {p.key: p.suggest(trial) for p in opt.SPACE})
        study.tell(trial, 0.0)


def test_scores_are_finite_and_log_loss_is_the_ensembles() -> None:
    decisions = pd.DataFrame({"probability": [0.9, 0.2, np.nan, 0.6], "outcome": [1.0, 0.0, 1.0, np.nan]})
    assert opt.log_loss(decisions) == pytest.approx(-(math.log(0.9) + math.log(0.8)) / 2)
    figs = dict.fromkeys(opt.FIGURES, math.nan)
    assert opt.score("sharpe", figs) == 0.0
    assert opt.score("profit_factor", figs | {"profit_factor": math.inf}) == opt.PROFIT_FACTOR_CAP
    assert opt.score("log_loss", figs) == pytest.approx(math.log(2.0))
    assert opt.OBJECTIVES["log_loss"] == "minimize"


def test_window_votes_are_the_full_span_rows(shared_data: Path) -> None:
    candles, _ = load_candles("BTCUSDT")
    full = history_of(candles, "BTCUSDT", _ms(DAY), _ms("2024-03-06"))
    probs = np.arange(len(full.candles), dtype=np.float64)
    model = ModelVotes("m", "lightgbm", probs, ["v"] * len(probs))
    market = opt.Market(candles, full, [model], opt.plan_windows(_ms(DAY), _ms("2024-03-06"), STEP, 2, 0.0))
    part, book = market.window(_ms("2024-03-05 12:00"), _ms("2024-03-06"))
    got = book.models[0].probs
    assert len(got) == len(part.candles)
    rows = np.searchsorted(full.open_time, part.open_time)
    assert np.array_equal(got, probs[rows])


@pytest.mark.slow
def test_two_worker_processes_share_one_sqlite_study(tmp_path: Path, shared_data: Path) -> None:
    home = tmp_path / "home"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = [
        sys.executable, "-m", "xylen", "--home", str(home), "optimize", "--from", DAY, "--to", "2024-03-06",
        "--trials", "2", "--seeds", "1", "--windows", "2", "--holdout", "0.25", "--objective", "log_loss",
        "--storage", storage, "--study", "two-workers", "--walk-forward", "--retrain-every", "12h",
    ]  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(REPO)}
    workers = [
        subprocess.Popen(
            [*args, "--report", str(tmp_path / f"report-{k}"), "--seed", str(k)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for k in range(2)
    ]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    for w, out in zip(workers, outputs, strict=True):
        assert w.returncode == 0, out
    study = optuna.load_study(study_name="two-workers", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert {p.key for p in opt.SPACE} == set(complete[0].params)
    # the models were trained once for both workers (the second waited and read the votes)
    cached = list((home / "optimize" / "votes").glob("votes-*.npz"))
    assert len(cached) == 1
    assert sum("training 1 models" in out for out in outputs) == 1
    # walk-forward: every voting model was trained before the candle it votes on (its version is the
    # time its window starts), and the span's two 12 h windows have their own models
    candles, _ = load_candles("BTCUSDT")
    full = history_of(candles, "BTCUSDT", _ms(DAY), _ms("2024-03-06"))
    (votes,) = opt._load_votes(cached[0])
    assert len(votes.versions) == len(full.candles)
    trained_at = {v: int(pd.Timestamp(v).value // 1_000_000) for v in set(votes.versions) if v}
    assert len(trained_at) == 2
    for open_ms, version in zip(full.open_time.tolist(), votes.versions, strict=True):
        if version:
            assert trained_at[version] <= open_ms < trained_at[version] + 12 * 3_600_000
    # the terminal shows the progress and the report; Optuna's trial lines and the runs' records are in
    # each worker's log, counted as the last line says
    for k, out in enumerate(outputs):
        assert "Trial " not in out and '"level"' not in out, out
        path = tmp_path / f"report-{k}" / "optimize.log"
        lines = path.read_text(encoding="utf-8").splitlines()
        assert sum("optuna.study.study: Trial" in line for line in lines) == 2
        warned = sum(" WARNING " in line for line in lines)
        failed = sum(" ERROR " in line for line in lines)
        assert f"log: {path} ({warned} warnings, {failed} errors)" in out
    # the worker that finished last reports all four trials, best first, out of sample beside in sample
    reports = [json.loads((tmp_path / f"report-{k}" / "report.json").read_text()) for k in range(2)]
    final = max(reports, key=lambda r: len(r["best"]))
    assert len(final["best"]) == 4 and final["trials"] == {"COMPLETE": 4}
    values = [row["value"] for row in final["best"]]
    assert values == sorted(values)  # log-loss: smaller is better
    for row in final["best"]:
        assert row["in_sample"]["log_loss"] is not None and row["out_of_sample"]["log_loss"] is not None
        assert 0.3 < row["out_of_sample"]["log_loss"] < 1.5
    assert len(final["in_sample_windows"]) == 2 and final["out_of_sample"] is not None
    assert set(final["importances"]) == {p.key for p in opt.SPACE}
    assert sum(final["importances"].values()) == pytest.approx(1.0)
    # a worker with other settings is refused: exit 2, naming the setting
    other = ["--home", str(home), "optimize", "--from", DAY, "--to", "2024-03-06", "--trials", "0"]
    assert (
        main(
            [
                *other,
                "--windows",
                "3",
                "--objective",
                "log_loss",
                "--storage",
                storage,
                "--study",
                "two-workers",
            ]
        )
        == 2
    )


def test_a_storage_password_is_never_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://trader:s3cret-pw@127.0.0.1:1/xylen"  # no driver installed, or no server there
    base = ["--home", str(tmp_path), "optimize", "--from", DAY, "--to", "2024-03-06", "--trials", "0"]
    assert main([*base, "--objective", "log_loss", "--storage", url]) in (1, 2)
    err = capsys.readouterr().err
    assert "trader:***@127.0.0.1" in err and "s3cret-pw" not in err


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    base = ["--home", str(tmp_path), "optimize", "--from", DAY, "--to", "2024-03-06"]
    assert main([*base, "--trials", "-1"]) == 2
    assert main([*base, "--timeout", "-5"]) == 2
    assert main([*base, "--objective", "sharpe"]) == 2  # daily Sharpe on windows under 2 days
    assert not (tmp_path / "optimize" / "study.db").exists()  # refused before any study was made
    assert main([*base, "--seeds", "a,b"]) == 2
    assert main([*base, "--retrain-every", "soon"]) == 2
    assert main([*base, "--interval", "1h"]) == 2  # the feature set's 15m timeframe is no multiple
    taken = tmp_path / "taken"
    taken.write_text("a file, not a folder")
    assert main([*base, "--report", str(taken)]) == 2
    assert main([*base, "--models", str(tmp_path / "missing")]) == 2
    assert main(["--home", str(tmp_path), "optimize", "--from", "2024-03-06", "--to", DAY]) == 2
    # a model whose training labels reach --from would score in sample: refused
    model = tmp_path / "late-model"
    model.mkdir()
    meta = {"train_end": _ms(DAY) - 30 * 60_000, "horizon_bars": 12, "base_interval": "5m"}
    (model / "metadata.json").write_text(json.dumps(meta))
    assert main([*base, "--models", str(model)]) == 2


@pytest.mark.slow
def test_workers_starting_together_on_a_new_sqlite_file(tmp_path: Path) -> None:
    """Three processes create the storage and the study at once: none fails on the tables' creation."""
    storage = f"sqlite:///{tmp_path / 'new.db'}"
    code = (
        "import sys; from backtest import optimize as o; "
        "o.open_study(o.storage_for(sys.argv[1]), 'race', 'sharpe', {'k': 1}, 0); print('ok')"
    )
    env = os.environ | {"PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, storage],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0 and out.strip() == "ok", err
    assert len(optuna.get_all_study_summaries(storage)) == 1


@pytest.mark.slow
def test_ctrl_c_ends_the_study_at_once(tmp_path: Path, shared_data: Path) -> None:
    """Ctrl-C in the middle of a trial: exit 130 within seconds, the terminal says so without a
    traceback (Optuna's record of the interrupted trial is in the log), no scratch folder is left."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    report = tmp_path / "r"
    args = [
        "--home", str(tmp_path / "home"), "optimize", "--from", "2024-02-01", "--to", "2024-03-15",
        "--trials", "50", "--seeds", "1", "--storage", f"sqlite:///{tmp_path / 'study.db'}",
        "--report", str(report),
    ]  # fmt: skip
    log = report / "optimize.log"

    def trial_done() -> bool | None:
        return True if log.exists() and "Trial 0 finished" in log.read_text(encoding="utf-8") else None

    def inside_the_second_trial(proc: subprocess.Popen[str]) -> None:
        wait_for(trial_done, proc, "a finished trial")
        time.sleep(0.5)

    proc, _, out, err = interrupted(args, cwd=tmp_path, tmpdir=scratch, ready=inside_the_second_trial)
    assert proc.returncode == 130, err[-3000:]
    assert "xylen: interrupted" in err
    assert "Traceback" not in out + err and "Trial " not in out + err
    assert "KeyboardInterrupt" in log.read_text(encoding="utf-8")
    assert list(scratch.iterdir()) == []
    owners = Path("/dev/shm").glob("xylen-backtest-*/owner")  # the runs' databases, when in memory
    assert all(o.read_text().strip() != str(proc.pid) for o in owners)
    assert not (report / "report.json").exists()
