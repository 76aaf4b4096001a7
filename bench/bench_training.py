"""Peak memory (RSS) and time of ``train_model`` + ``write_model_dir`` per hardware profile.

Run: ``python bench/bench_training.py [--profiles 8gb,16gb,m1,m4] [--rows-cap N] [--folds K]``.

Each profile runs in its own fresh Python process (``resource.getrusage(RUSAGE_SELF).ru_maxrss``
is a high-water mark per process), on as many candles as the profile may use (its ``max_rows``
plus the feature warm-up and horizon), built from the 143,900 real BTCUSDT 5m candles tiled end
to end with a continuous price path (each copy rescaled so that its first open equals the
previous copy's last close; open times continue).  The run is the real one: features, labels,
walk-forward validation (K folds), the final fit, ONNX conversion with its parity check and the
atomic write of the model directory.  The table gives the peak RSS against the profile's budget.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from model_server.training import PROFILES, TrainConfig, get_profile, train_model, write_model_dir  # noqa: E402
from xylen.data.importers import read_freqtrade_feather  # noqa: E402
from xylen.features import max_warmup  # noqa: E402
from xylen.paths import SHARED_BTC_5M, shared_data_dir  # noqa: E402


def tiled_candles(rows: int) -> pd.DataFrame:
    """``rows`` candles: the real BTC series repeated with a continuous price path."""
    base = read_freqtrade_feather(shared_data_dir() / SHARED_BTC_5M)
    n = len(base)
    step = 300_000
    parts: list[pd.DataFrame] = []
    scale, k, total = 1.0, 0, 0
    while total < rows:
        part = base.copy()
        for col in ("open", "high", "low", "close"):
            part[col] = part[col] * scale
        part["open_time"] = part["open_time"] + k * n * step
        parts.append(part)
        total += n
        scale = float(part["close"].iloc[-1]) / float(base["open"].iloc[0])
        k += 1
    return pd.concat(parts, ignore_index=True).iloc[:rows].reset_index(drop=True)


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def child(profile_name: str, rows_cap: int | None, folds: int) -> None:
    """Run one profile in this process and print one JSON line."""
    profile = get_profile(profile_name)
    rows = profile.max_rows + max_warmup("5m") + 12
    if rows_cap is not None:
        rows = min(rows, rows_cap)
    started = time.perf_counter()
    candles = tiled_candles(rows)
    model = train_model(candles, TrainConfig(profile=profile_name, n_folds=folds))
    with tempfile.TemporaryDirectory() as tmp:
        write_model_dir(model, Path(tmp) / "model")
    print(
        json.dumps(
            {
                "profile": profile_name,
                "candles": rows,
                "labelled_rows": int((model.metadata.model_extra or {})["label"]["rows"]),
                "seconds": round(time.perf_counter() - started, 1),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "oof_auc": round(model.walk_forward.pooled.auc, 4),
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--rows-cap", type=int, default=None, help="cap candles per profile (quick runs)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rows_cap, args.folds)
        return 0
    head = ("profile", "candles", "rows", "threads", "budget MB", "peak MB", "s")
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, (8, 10, 10, 7, 9, 8, 7), strict=True)) + "  ok")
    failed = False
    for name in args.profiles.split(","):
        cmd = [sys.executable, __file__, "--child", name, "--folds", str(args.folds)]
        if args.rows_cap is not None:
            cmd += ["--rows-cap", str(args.rows_cap)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"{name:>8} failed:\n{proc.stderr[-2000:]}")
            failed = True
            continue
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        profile = PROFILES[name]
        ok = result["peak_rss_mb"] <= profile.memory_budget_mb
        failed |= not ok
        print(
            f"{name:>8} {result['candles']:>10,} {result['labelled_rows']:>10,} {profile.num_threads:>7} "
            f"{profile.memory_budget_mb:>9,} {result['peak_rss_mb']:>8,.0f} {result['seconds']:>7.1f}  "
            f"{'yes' if ok else 'NO'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
