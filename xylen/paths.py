"""The one home folder that holds all of Xylen's state (DESIGN §3)."""

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
