"""Hardware profiles: one ``xylen train --profile`` instead of one training script per machine.

A profile sets LightGBM's threads, histogram resolution (``max_bin``), subsampling
(``bagging_fraction``, ``feature_fraction``) and a row limit (the newest ``max_rows`` candles, plus
warm-up and horizon; about 63 % of them survive as labelled rows on BTC 5m),
so that the peak resident memory of a training run stays inside ``memory_budget_mb``:

========  ===========================================  ========  =======  =======  ==========
profile   host                                          budget    threads  max_bin  max_rows
========  ===========================================  ========  =======  =======  ==========
8gb       8 GB x86 model-server host, shared with the   2 GB      2        63       300,000
          server, collector and OS
16gb      16 GB x86 host                                6 GB      4        255      1,500,000
m1        Apple M1, 8 GB unified memory, 4 P-cores      3 GB      4        127      500,000
m4        Apple M4, 16 GB unified memory, 4 P-cores     8 GB      4        255      2,000,000
========  ===========================================  ========  =======  =======  ==========

Threads stay at the performance-core count (efficiency cores slow LightGBM's synchronised
histogram passes).  The model defaults (15 leaves, 2,000 rows per leaf, learning rate 0.02, 200
rounds) are deliberately strong regularisation: on BTC 5m the signal is weak (out-of-fold AUC about
0.56) and looser settings give an over-confident model (out-of-fold log-loss above 0.69).
300,000 rows of 5m candles are about 2.9 years.  ``bench/bench_training.py``
measures the peak RSS of each profile in its own process and checks it against the budget.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profile:
    """Resource limits and LightGBM defaults of one host type."""

    name: str
    description: str
    memory_budget_mb: int
    num_threads: int
    max_bin: int
    bagging_fraction: float
    feature_fraction: float
    max_rows: int
    num_leaves: int = 15
    min_data_in_leaf: int = 2000
    learning_rate: float = 0.02
    num_boost_round: int = 200

    def lgb_params(self, seed: int = 42) -> dict[str, Any]:
        """LightGBM parameters of this profile (binary objective, deterministic given ``seed``)."""
        return {
            "objective": "binary",
            "metric": "binary_logloss",
            "verbose": -1,
            "seed": seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "max_bin": self.max_bin,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1 if self.bagging_fraction < 1.0 else 0,
            "feature_fraction": self.feature_fraction,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "learning_rate": self.learning_rate,
            "lambda_l2": 1.0,
        }


PROFILES: Final[dict[str, Profile]] = {
    p.name: p
    for p in (
        Profile("8gb", "8 GB host shared with serving", 2048, 2, 63, 0.7, 0.8, 300_000),
        Profile("16gb", "16 GB x86 host", 6144, 4, 255, 0.8, 0.9, 1_500_000),
        Profile("m1", "Apple M1, 8 GB unified memory", 3072, 4, 127, 0.7, 0.8, 500_000),
        Profile("m4", "Apple M4, 16 GB unified memory", 8192, 4, 255, 0.8, 0.9, 2_000_000),
    )
}
DEFAULT_PROFILE: Final = "8gb"


def get_profile(name: str) -> Profile:
    """The profile called ``name``; ``KeyError`` naming the choices otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r} (choose from {', '.join(PROFILES)})") from None
