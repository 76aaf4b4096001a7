"""The one home folder that holds all of Xylen's state."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "XYLEN_HOME"
DEFAULT_HOME = Path("data")


@dataclass(frozen=True)
class Home:
    """Paths under the home folder: ``--home DIR``, else ``$XYLEN_HOME``, else ``./data``."""

    root: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None) -> Home:
        chosen = home if home is not None else os.environ.get(HOME_ENV) or DEFAULT_HOME
        return cls(Path(chosen).expanduser())

    @property
    def candles(self) -> Path:
        return self.root / "candles"

    @property
    def features(self) -> Path:
        return self.root / "features"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def feedback(self) -> Path:
        return self.root / "feedback"

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    @property
    def database(self) -> Path:
        return self.root / "xylen.db"

    @property
    def backups(self) -> Path:
        return self.root / "backups"

    @property
    def logs(self) -> Path:
        return self.root / "logs"


SHARED_DATA_ENV = "XYLEN_SHARED_DATA"
SHARED_BTC_5M = Path("freqtrade_binance_futures") / "BTC_USDT_USDT-5m-futures.feather"
"""The real BTCUSDT perpetual 5m candles, relative to :func:`shared_data_dir`."""
_CHECKOUT = Path(__file__).resolve().parents[1]


def shared_data_dir(given: str | os.PathLike[str] | None = None) -> Path:
    """The real Binance data beside a checkout: ``given``, else ``$XYLEN_SHARED_DATA``, else
    ``../shared/data`` next to the repository (tests, benchmarks and ONNX validation read it)."""
    if given:
        return Path(given)
    env = os.environ.get(SHARED_DATA_ENV)
    return Path(env) if env else _CHECKOUT.parent / "shared" / "data"
