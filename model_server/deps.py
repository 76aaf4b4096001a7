"""The server's shared state and the ``Annotated`` dependencies routes declare.

``StateDep`` gives the :class:`ServerState` built by the lifespan; ``Authorized`` checks the
bearer token (``XYLEN_MODEL_TOKEN``) with a constant-time compare and answers 401 otherwise.
Dependencies are ``async def``: FastAPI would run plain ``def`` ones in a thread pool.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from model_server.feedback import FeedbackBuffer
from model_server.guards import MemoryGuard
from model_server.metrics import ServerMetrics
from model_server.recalibration import ServedRecalibration
from model_server.registry import ModelRegistry
from model_server.settings import ServerSettings

logger = logging.getLogger(__name__)


@dataclass
class ServerState:
    """Everything the routes share; built once by the app's lifespan."""

    settings: ServerSettings
    metrics: ServerMetrics
    memory: MemoryGuard
    feedback: FeedbackBuffer
    registry: ModelRegistry
    recent: deque[Mapping[str, float]]
    token: bytes | None
    model_id: str
    recalibration: ServedRecalibration = field(default_factory=ServedRecalibration)
    started_at: float = field(default_factory=time.monotonic)
    last_retrain_request: float = float("-inf")

    def retrain_due(self) -> bool:
        """Whether a batch retrain should be requested now (buffer full, memory fine, interval over)."""
        s = self.settings
        return (
            self.feedback.size >= s.retrain_min_samples
            and not self.memory.low
            and not self.feedback.retrain_requested
            and time.monotonic() - self.last_retrain_request >= s.training_interval
        )

    def request_retrain_if_due(self) -> bool:
        """Leave the retrain marker when due (blocking file write: call it off the event loop)."""
        if not self.retrain_due():
            return self.feedback.retrain_requested
        self.last_retrain_request = time.monotonic()
        self.feedback.request_retrain(f"{self.feedback.size} samples >= RETRAIN_MIN_SAMPLES")
        self.metrics.retrain_scheduled.inc()
        return True


async def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.xylen
    return state


StateDep = Annotated[ServerState, Depends(get_state)]

_bearer = HTTPBearer(auto_error=False, description="XYLEN_MODEL_TOKEN")


async def require_token(
    state: StateDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """401 unless the request carries the server's bearer token (no token set: loopback only)."""
    if state.token is None:
        return
    given = credentials.credentials.encode() if credentials is not None else b""
    if not hmac.compare_digest(given, state.token):
        raise HTTPException(
            status_code=401, detail="missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


Authorized = Annotated[None, Depends(require_token)]
