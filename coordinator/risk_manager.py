"""The risk manager's public API under the path the issue names; it lives in :mod:`coordinator.risk`."""

from __future__ import annotations

from coordinator.risk import *  # noqa: F403
from coordinator.risk import __all__ as __all__
