"""Peak memory per Dask worker and wall time of ``xylen train --dask local:N`` for 1 and 2 workers.

Run: ``python bench/bench_dask_training.py [--workers 1,2] [--copies K] [--folds 5] [--rounds R]``.

The shipped 143,900 BTCUSDT 5m candles (``--copies K``: tiled K times end to end with a continuous
price path, as in ``bench_training.py``) are imported into a temporary candle store.  Each
configuration runs in its own fresh Python process (peak RSS is a per-process high-water mark):
``local`` is the ordinary run (no Dask), ``N`` starts a LocalCluster of N worker processes with one
thread each, reads and featurises the months on the workers, trains (walk-forward folds, final fit,
calibration, report) and writes the model directory with its ONNX parity check.

Printed per configuration: wall time of the whole training (dataset + folds + final fit + model
directory), the client process's peak RSS, and each worker's peak RSS
(:func:`xylen.peak_memory.peak_rss_kib` via ``client.run``), before any data (idle) and at the
end, and the out-of-fold AUC.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def _make_store(root: Path, copies: int) -> int:
    from xylen.data.importers import read_freqtrade_feather
    from xylen.data.store import CandleStore
    from xylen.paths import SHARED_BTC_5M, shared_data_dir

    if copies > 1:
        from bench_training import tiled_candles

        base = read_freqtrade_feather(shared_data_dir() / SHARED_BTC_5M)
        candles = tiled_candles(len(base) * copies)
    else:
        candles = read_freqtrade_feather(shared_data_dir() / SHARED_BTC_5M)
    CandleStore(root / "candles", compression="zstd").write("um", "BTCUSDT", "5m", candles)
    return len(candles)


def _config(args: argparse.Namespace) -> Any:
    from model_server.training import TrainConfig

    return TrainConfig(n_folds=args.folds, num_boost_round=args.rounds, num_threads=1, max_rows=10**9)


def _run_one(args: argparse.Namespace) -> dict[str, Any]:
    """One configuration, in this (fresh) process."""
    from model_server.training import train_model, write_model_dir
    from xylen.data.store import CandleStore
    from xylen.peak_memory import peak_rss_mb

    home = Path(args.home)
    config = _config(args)
    out: dict[str, Any] = {"config": args.one}
    started = time.perf_counter()
    if args.one == "local":
        candles = CandleStore(home / "candles").read("um", "BTCUSDT", "5m")
        model = train_model(candles, config, now_ms=0)
        write_model_dir(model, home / "models" / "local")
        out["workers_idle_mb"] = out["workers_peak_mb"] = []
    else:
        from model_server.training.dask_train import (
            dask_session,
            load_dask_dataset,
            parse_dask_target,
            worker_peak_rss_mb,
        )

        with dask_session(parse_dask_target(f"local:{args.one}")) as session:
            started = time.perf_counter()  # the cluster's start-up is not training
            idle = worker_peak_rss_mb(session)
            data = load_dask_dataset(
                session, home / "candles", "BTCUSDT", "5m", config.horizon_bars, config.cost
            )
            model = train_model(
                None, config, now_ms=0, dataset=data.dataset, fit=data.fit, metadata_extra=data.info
            )
            write_model_dir(model, home / "models" / f"dask-{args.one}")
            peak = worker_peak_rss_mb(session)
            out["workers_idle_mb"] = [idle[w] for w in sorted(idle)]
            out["workers_peak_mb"] = [peak[w] for w in sorted(peak)]
            out["months_per_worker"] = [len(v) for v in data.placement.values()]
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["client_peak_mb"] = round(peak_rss_mb(), 1)
    out["rows"] = int((model.metadata.model_extra or {}).get("label", {}).get("rows", 0))
    out["oof_auc"] = round(model.walk_forward.pooled.auc, 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--no-local", action="store_true", help="skip the run without Dask")
    parser.add_argument("--copies", type=int, default=1, help="tile the shipped candles K times")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--home", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(_run_one(args)))
        return
    configs = ([] if args.no_local else ["local"]) + [w.strip() for w in args.workers.split(",") if w.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-dask-") as tmp:
        candles = _make_store(Path(tmp), args.copies)
        print(
            f"{candles:,} BTCUSDT 5m candles in the store; {args.folds} folds, {args.rounds} rounds, "
            "1 thread per worker"
        )
        results = []
        for config in configs:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                config,
                "--home",
                tmp,
                "--folds",
                str(args.folds),
                "--rounds",
                str(args.rounds),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=3600)
            if proc.returncode != 0:
                print(f"{config}: failed\n{proc.stderr[-3000:]}")
                continue
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    head = (
        f"{'workers':>7} {'rows':>8} {'wall s':>7} {'client MB':>10} {'worker idle MB':>16} "
        f"{'worker peak MB':>16} {'months/worker':>14} {'OOF AUC':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        idle = "/".join(f"{v:.0f}" for v in r["workers_idle_mb"]) or "-"
        peak = "/".join(f"{v:.0f}" for v in r["workers_peak_mb"]) or "-"
        months = "/".join(str(v) for v in r.get("months_per_worker", [])) or "-"
        print(
            f"{r['config']:>7} {r['rows']:>8,} {r['seconds']:>7.1f} {r['client_peak_mb']:>10.0f} "
            f"{idle:>16} {peak:>16} {months:>14} {r['oof_auc']:>8.4f}"
        )


if __name__ == "__main__":
    main()
