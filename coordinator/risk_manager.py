"""The risk manager's public API as ``coordinator.risk_manager``; it lives in :mod:`coordinator.risk`."""

from __future__ import annotations

from coordinator.risk import *  # noqa: F403
from coordinator.risk import __all__ as __all__
