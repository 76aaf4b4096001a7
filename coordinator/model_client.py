"""The coordinator's client for the model servers: one parallel fan-out per heartbeat.

:class:`ModelClients` keeps ONE aiohttp ``ClientSession`` (keep-alive, a connection limit per host)
and asks every enabled server ``POST /predict`` at once.  Each request has the server's own
``timeout_ms``; the beat as a whole has a deadline, and a server still running when it passes is
cancelled and reported as ``deadline`` for that beat.  Results come back as ensemble
:class:`~coordinator.ensemble.types.Vote` objects plus one :class:`ServerResult` per server.

A server that refuses connections, or fails ``failures_before_backoff`` beats in a row, goes into
backoff (exponential with full jitter, capped): it is not asked again until a ``GET /health`` probe
succeeds, then it rejoins.  Probes run as tracked background tasks started by the beat, so a dead
server never costs the beat any time.  A 409 (the server's model serves another
``feature_version``) is reported as ``feature_mismatch`` and does not put the server in backoff: it is
alive, and answering the wrong question is a configuration problem the operator must see each beat.

**Routing by symbol.** Each server's ``/health`` names the symbols its model answers for (empty:
any), its interval and its label (``horizon_bars``, ``label_band``).  The client learns them from
:meth:`ModelClients.discover` (at start), from every health probe, and in the background for a
server it knows nothing of yet (asked meanwhile, as a server too old to name its symbols always
is).  A server whose symbols do not include the request's symbol (or, when its
``model_servers[].symbols`` is configured, not in that list either) is left out of the fan-out; a
409 answer (e.g. a new model for other symbols) makes the client learn the server's symbols again.

``retrain_all`` posts observed outcomes to every live server's ``/retrain`` (or to the servers
named); it logs failures and never raises into the beat.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

import aiohttp
from pydantic import SecretStr, ValidationError

from coordinator.ensemble.types import Action, Vote, fingerprint
from xylen.config.schema import ModelServerConfig
from xylen.contract import HealthResponse, Outcome, PredictRequest, PredictResponse, RetrainRequest
from xylen.labels import LabelSpec

logger = logging.getLogger(__name__)

MAX_RETRAIN_BATCH = 10_000  # RetrainRequest.outcomes max_length
DISCOVERY_RETRY_S = 5.0  # a failed background /health (symbols unknown) is retried no sooner
_DETAIL_CHARS = 200


class VoteStatus(str, Enum):
    """What happened to one server's request in one beat."""

    OK = "ok"
    TIMEOUT = "timeout"  # the server's own timeout_ms passed
    DEADLINE = "deadline"  # still running when the beat's deadline passed: cancelled
    ERROR = "error"  # connection refused/reset, non-2xx answer (``http_status`` says which), bad body
    FEATURE_MISMATCH = "feature_mismatch"  # 409: the model serves another feature_version/timeframe
    BACKOFF = "backoff"  # not asked: the server is in backoff until a health probe succeeds


_FAILURES = {VoteStatus.TIMEOUT, VoteStatus.DEADLINE, VoteStatus.ERROR}


@dataclass(frozen=True, slots=True)
class ServerResult:
    """One server's part in a fan-out.  ``latency_ms`` is measured here (0 when not asked)."""

    server_id: str
    status: VoteStatus
    latency_ms: float = 0.0
    http_status: int | None = None
    detail: str = ""
    response: PredictResponse | None = None
    connect_failed: bool = False  # no connection at all (refused, unreachable): backoff at once


@dataclass(frozen=True, slots=True)
class FanOut:
    """All answers of one beat: usable votes (in server order) and every server's result."""

    votes: tuple[Vote, ...]
    results: tuple[ServerResult, ...]
    duration_s: float

    def count(self, status: VoteStatus) -> int:
        """How many servers ended the beat with ``status``."""
        return sum(1 for r in self.results if r.status is status)

    def result(self, server_id: str) -> ServerResult:
        """The result of server ``server_id`` (KeyError when it was not part of the fan-out)."""
        for r in self.results:
            if r.server_id == server_id:
                return r
        raise KeyError(server_id)


@dataclass(frozen=True, slots=True)
class RetrainResult:
    """One server's answer to a ``/retrain`` post (``ok`` False: logged, nothing else happens)."""

    server_id: str
    ok: bool
    samples_sent: int
    http_status: int | None = None
    detail: str = ""


@dataclass(slots=True)
class ServerState:
    """Liveness bookkeeping of one server (mutable, owned by :class:`ModelClients`)."""

    config: ModelServerConfig
    consecutive_failures: int = 0
    in_backoff: bool = False
    backoff_attempt: int = 0
    next_probe_at: float = 0.0  # time.monotonic()
    last_status: VoteStatus | None = None
    last_latency_ms: float = 0.0
    last_model_version: str | None = None
    probing: bool = field(default=False)
    # What the server's /health said its model answers for: None until learned, empty for any.
    served_symbols: tuple[str, ...] | None = None
    label: LabelSpec | None = None  # its label definition (None: not learned, or not told)
    discovering: bool = False
    next_discovery_at: float = 0.0  # time.monotonic()

    @property
    def up(self) -> bool:
        """Asked in the next beat (enabled and not in backoff)."""
        return self.config.enabled and not self.in_backoff

    def covers(self, symbol: str) -> bool:
        """Whether the server is asked about ``symbol``: its model answers for it (or its symbols are
        not known yet) and the configured ``symbols``, if any, include it."""
        if self.config.symbols is not None and symbol not in self.config.symbols:
            return False
        return not self.served_symbols or symbol in self.served_symbols

    def learn(self, health: HealthResponse) -> None:
        """Take the symbols and the label definition from a ``/health`` answer."""
        if not health.model_loaded:
            return
        self.served_symbols = tuple(health.symbols or ())
        self.label = None
        if health.horizon_bars is not None and health.interval is not None:
            try:
                self.label = LabelSpec(health.horizon_bars, health.interval, health.label_band or 0.0)
            except ValueError as exc:
                logger.warning("model server %s: unusable label definition: %s", self.config.id, exc)


class ModelClients:
    """Parallel ``/predict`` fan-out, ``/retrain`` posts and health probes for the model servers.

    ``token`` is ``XYLEN_MODEL_TOKEN`` (sent as a bearer token; ``None`` sends none).  ``session``
    may be given (it is then not closed here); otherwise one is created on first use with a
    ``TCPConnector(limit_per_host=...)`` and closed by :meth:`close`.
    """

    def __init__(
        self,
        servers: Sequence[ModelServerConfig],
        token: SecretStr | str | None,
        session: aiohttp.ClientSession | None = None,
        *,
        failures_before_backoff: int = 3,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 60.0,
        probe_timeout_s: float = 2.0,
        retrain_timeout_s: float = 10.0,
        limit_per_host: int = 8,
        rng: random.Random | None = None,
    ) -> None:
        ids = [s.id for s in servers]
        if len(set(ids)) != len(ids):
            raise ValueError(f"model server ids must be unique: {ids}")
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        self._headers = {"Content-Type": "application/json"}
        if secret:
            self._headers["Authorization"] = f"Bearer {secret}"
        self._states = {s.id: ServerState(s) for s in servers}
        self._session = session
        self._owns_session = session is None
        self._failures_before_backoff = max(1, failures_before_backoff)
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._probe_timeout_s = probe_timeout_s
        self._retrain_timeout_s = retrain_timeout_s
        self._limit_per_host = limit_per_host
        self._rng = rng or random.Random()  # nosec B311 # probe jitter, not a secret
        self._probes: set[asyncio.Task[None]] = set()
        self._closed = False

    # ------------------------------------------------------------------ session and lifecycle

    def _client(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("ModelClients is closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=self._limit_per_host, keepalive_timeout=75
            )
            self._session = aiohttp.ClientSession(connector=connector, json_serialize=_no_json)
        return self._session

    async def close(self, timeout_s: float = 5.0) -> None:
        """Cancel running probes (awaited up to ``timeout_s``) and close the session if it is ours."""
        self._closed = True
        probes = list(self._probes)
        for task in probes:
            task.cancel()
        if probes:
            _, pending = await asyncio.wait(probes, timeout=timeout_s)
            for task in pending:
                logger.warning("health probe %s did not stop within %.1f s", task.get_name(), timeout_s)
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> ModelClients:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ state views

    def states(self) -> list[ServerState]:
        """Each configured server's liveness state, in configuration order (read-only use)."""
        return list(self._states.values())

    def is_up(self, server_id: str) -> bool:
        """True when ``server_id`` will be asked in the next beat."""
        return self._states[server_id].up

    def targets(self, symbol: str) -> list[ServerState]:
        """Enabled servers whose model covers ``symbol`` (see :meth:`ServerState.covers`)."""
        return [s for s in self._states.values() if s.config.enabled and s.covers(symbol)]

    async def discover(self) -> None:
        """Learn every enabled server's symbols and label from its ``/health`` (in parallel)."""
        await self.health_all()

    def _maybe_discover(self, state: ServerState) -> None:
        """Learn an unknown server's symbols in a tracked background task (the beat never waits)."""
        if state.discovering or self._closed or time.monotonic() < state.next_discovery_at:
            return
        state.discovering = True
        task = asyncio.create_task(self._discover_one(state), name=f"discover:{state.config.id}")
        self._probes.add(task)
        task.add_done_callback(self._probe_done)

    async def _discover_one(self, state: ServerState) -> None:
        try:
            health = await self._health(state.config)
            if health is None:
                state.next_discovery_at = time.monotonic() + DISCOVERY_RETRY_S
            else:
                state.learn(health)
        finally:
            state.discovering = False

    # ------------------------------------------------------------------ predict

    async def predict_all(self, request: PredictRequest, deadline_s: float) -> FanOut:
        """Ask every enabled server not in backoff, in parallel; wait at most ``deadline_s``.

        Never raises for a server's failure: each one is a :class:`ServerResult`.  Servers in backoff
        whose probe time has come get a background health probe (the beat does not wait for it).
        """
        started = time.perf_counter()
        body = request.model_dump_json().encode()
        session = self._client()
        tasks: dict[str, asyncio.Task[ServerResult]] = {}
        skipped: dict[str, ServerResult] = {}
        asked = {s.config.id for s in self.targets(request.symbol)}
        for sid, state in self._states.items():
            if sid not in asked:
                continue
            if state.served_symbols is None and not state.in_backoff:
                self._maybe_discover(state)
            if state.in_backoff:
                skipped[sid] = ServerResult(
                    sid, VoteStatus.BACKOFF, detail="in backoff until a probe succeeds"
                )
                self._maybe_probe(state)
                continue
            tasks[sid] = asyncio.create_task(
                self._predict_one(session, state.config, body), name=f"predict:{sid}"
            )
        done: set[asyncio.Task[ServerResult]] = set()
        if tasks:
            try:
                done, _ = await asyncio.wait(tasks.values(), timeout=max(0.0, deadline_s))
            except asyncio.CancelledError:
                for task in tasks.values():
                    task.cancel()
                raise
        pending = [t for t in tasks.values() if t not in done]
        for task in pending:
            task.cancel()
        if pending:
            # cancelling an aiohttp request is immediate; bound the wait all the same
            await asyncio.wait(pending, timeout=0.5)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        results: list[ServerResult] = []
        votes: list[Vote] = []
        for sid, state in self._states.items():
            if sid not in asked:
                continue
            if sid in skipped:
                result = skipped[sid]
            elif tasks[sid] in done and not tasks[sid].cancelled() and tasks[sid].exception() is None:
                result = tasks[sid].result()
            elif tasks[sid] in done:
                exc = None if tasks[sid].cancelled() else tasks[sid].exception()
                result = ServerResult(sid, VoteStatus.ERROR, elapsed_ms, detail=_short(repr(exc)))
            else:
                result = ServerResult(
                    sid, VoteStatus.DEADLINE, elapsed_ms, detail=f"beat deadline {deadline_s:.3f} s passed"
                )
            results.append(result)
            if result.status is not VoteStatus.BACKOFF:
                self._record(state, result)
            if result.status is VoteStatus.FEATURE_MISMATCH:  # perhaps a new model: learn it again
                state.served_symbols = None
            if result.status is VoteStatus.OK and result.response is not None:
                resp = result.response
                votes.append(
                    Vote(
                        model_id=sid,
                        prob_up=resp.prob_up,
                        action=Action(resp.action),
                        stop_loss=resp.stop_loss,
                        take_profit=resp.take_profit,
                        latency_ms=result.latency_ms,
                        fingerprint=fingerprint(str(resp.backend), resp.model_version),
                    )
                )
        return FanOut(tuple(votes), tuple(results), time.perf_counter() - started)

    async def _predict_one(
        self, session: aiohttp.ClientSession, server: ModelServerConfig, body: bytes
    ) -> ServerResult:
        t0 = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=server.timeout_ms / 1000.0)

        def ms() -> float:
            return (time.perf_counter() - t0) * 1000.0

        try:
            async with session.post(
                f"{server.url}/predict", data=body, headers=self._headers, timeout=timeout
            ) as resp:
                raw = await resp.read()
                if resp.status == 200:
                    try:
                        parsed = PredictResponse.model_validate_json(raw)
                    except ValidationError as exc:
                        return ServerResult(
                            server.id, VoteStatus.ERROR, ms(), 200, _short(f"bad /predict body: {exc}")
                        )
                    return ServerResult(server.id, VoteStatus.OK, ms(), 200, response=parsed)
                status = VoteStatus.FEATURE_MISMATCH if resp.status == 409 else VoteStatus.ERROR
                return ServerResult(
                    server.id, status, ms(), resp.status, _short(raw.decode(errors="replace"))
                )
        except asyncio.TimeoutError:
            return ServerResult(server.id, VoteStatus.TIMEOUT, ms(), detail=f"timeout_ms {server.timeout_ms}")
        except aiohttp.ClientConnectorError as exc:
            return ServerResult(
                server.id, VoteStatus.ERROR, ms(), detail=_short(f"connect: {exc}"), connect_failed=True
            )
        except (aiohttp.ClientError, OSError) as exc:
            return ServerResult(
                server.id, VoteStatus.ERROR, ms(), detail=_short(f"{type(exc).__name__}: {exc}")
            )

    # ------------------------------------------------------------------ liveness and backoff

    def _record(self, state: ServerState, result: ServerResult) -> None:
        state.last_status = result.status
        state.last_latency_ms = result.latency_ms
        if result.response is not None:
            state.last_model_version = result.response.model_version
        if result.status not in _FAILURES:
            state.consecutive_failures = 0
            return
        state.consecutive_failures += 1
        if result.connect_failed or state.consecutive_failures >= self._failures_before_backoff:
            self._enter_backoff(state, result.detail)

    def _backoff_delay(self, attempt: int) -> float:
        """Full jitter in [cap/2, cap] of ``base * 2**attempt`` capped at ``backoff_cap_s``."""
        ceiling = min(self._backoff_cap_s, self._backoff_base_s * (2.0 ** min(attempt, 30)))
        return ceiling * (0.5 + 0.5 * self._rng.random())

    def _enter_backoff(self, state: ServerState, reason: str) -> None:
        delay = self._backoff_delay(state.backoff_attempt)
        if not state.in_backoff:
            logger.warning(
                "model server %s in backoff (%s); next health probe in %.2f s", state.config.id, reason, delay
            )
        state.in_backoff = True
        state.backoff_attempt += 1
        state.next_probe_at = time.monotonic() + delay

    def _maybe_probe(self, state: ServerState) -> None:
        if state.probing or time.monotonic() < state.next_probe_at or self._closed:
            return
        state.probing = True
        task = asyncio.create_task(self._probe(state), name=f"probe:{state.config.id}")
        self._probes.add(task)
        task.add_done_callback(self._probe_done)

    def _probe_done(self, task: asyncio.Task[None]) -> None:
        self._probes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("health probe %s crashed", task.get_name(), exc_info=task.exception())

    async def probe_due(self) -> None:
        """Start probes for every server in backoff whose time has come and wait for all probes."""
        for state in self._states.values():
            if state.config.enabled and state.in_backoff:
                self._maybe_probe(state)
        if self._probes:
            await asyncio.wait(list(self._probes), timeout=self._probe_timeout_s + 1.0)

    async def _probe(self, state: ServerState) -> None:
        """``GET /health``: 200 with a loaded model ends the backoff; anything else extends it."""
        sid = state.config.id
        try:
            ok, why = await self._health_ok(state.config)
            if ok:
                logger.info("model server %s passed its health probe and rejoins", sid)
                state.in_backoff = False
                state.backoff_attempt = 0
                state.consecutive_failures = 0
            else:
                self._enter_backoff(state, why)
        finally:
            state.probing = False

    async def _health_ok(self, server: ModelServerConfig) -> tuple[bool, str]:
        timeout = aiohttp.ClientTimeout(total=self._probe_timeout_s)
        try:
            async with self._client().get(f"{server.url}/health", timeout=timeout) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    return False, f"/health answered {resp.status}"
                health = HealthResponse.model_validate_json(raw)
                self._states[server.id].learn(health)
                return (
                    health.model_loaded,
                    f"/health status {health.status}, model_loaded {health.model_loaded}",
                )
        except asyncio.TimeoutError:
            return False, "/health timed out"
        except (aiohttp.ClientError, OSError, ValidationError) as exc:
            return False, _short(f"/health: {type(exc).__name__}: {exc}")

    async def _health(self, server: ModelServerConfig) -> HealthResponse | None:
        """One ``GET /health`` (None when it did not answer 200 with a valid body in time)."""
        timeout = aiohttp.ClientTimeout(total=self._probe_timeout_s)
        try:
            async with self._client().get(f"{server.url}/health", timeout=timeout) as resp:
                if resp.status != 200:
                    return None
                return HealthResponse.model_validate_json(await resp.read())
        except (asyncio.TimeoutError, aiohttp.ClientError, OSError, ValidationError):
            return None

    async def health_all(self) -> dict[str, HealthResponse | None]:
        """``GET /health`` of every enabled server in parallel (None for a server that did not answer);
        each answer also teaches the client the server's symbols and label."""
        enabled = [s.config for s in self._states.values() if s.config.enabled]
        answers = await asyncio.gather(*(self._health(s) for s in enabled))
        for server, answer in zip(enabled, answers, strict=True):
            if answer is not None:
                self._states[server.id].learn(answer)
        return {s.id: a for s, a in zip(enabled, answers, strict=True)}

    # ------------------------------------------------------------------ retrain

    async def retrain_all(
        self, outcomes: Sequence[Outcome], feature_version: str, server_ids: Sequence[str] | None = None
    ) -> list[RetrainResult]:
        """Post ``outcomes`` (in batches of at most 10,000) to every live server's ``/retrain``, or to
        the live ones of ``server_ids``.

        Servers are posted to in parallel; failures are logged and returned, never raised.
        """
        if not outcomes:
            return []
        batches = [
            RetrainRequest(
                outcomes=list(outcomes[i : i + MAX_RETRAIN_BATCH]), feature_version=feature_version
            )
            .model_dump_json()
            .encode()
            for i in range(0, len(outcomes), MAX_RETRAIN_BATCH)
        ]
        live = [
            s.config
            for s in self._states.values()
            if s.up and (server_ids is None or s.config.id in server_ids)
        ]
        try:
            results = await asyncio.gather(*(self._retrain_one(s, batches, len(outcomes)) for s in live))
        except asyncio.CancelledError:
            raise
        except Exception:  # defensive: _retrain_one catches its own errors
            logger.exception("retrain fan-out failed")
            return []
        return list(results)

    async def _retrain_one(
        self, server: ModelServerConfig, batches: list[bytes], total: int
    ) -> RetrainResult:
        timeout = aiohttp.ClientTimeout(total=self._retrain_timeout_s)
        try:
            for body in batches:
                async with self._client().post(
                    f"{server.url}/retrain", data=body, headers=self._headers, timeout=timeout
                ) as resp:
                    raw = await resp.read()
                    if resp.status != 200:
                        detail = _short(raw.decode(errors="replace"))
                        logger.warning("retrain on %s answered %s: %s", server.id, resp.status, detail)
                        return RetrainResult(server.id, False, total, resp.status, detail)
            return RetrainResult(server.id, True, total, 200)
        except asyncio.TimeoutError:
            logger.warning("retrain on %s timed out after %.1f s", server.id, self._retrain_timeout_s)
            return RetrainResult(server.id, False, total, detail="timeout")
        except (aiohttp.ClientError, OSError) as exc:
            logger.warning("retrain on %s failed: %s", server.id, exc)
            return RetrainResult(server.id, False, total, detail=_short(str(exc)))


def _short(text: str) -> str:
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 1] + "…"


def _no_json(obj: object) -> str:
    """The session never serializes JSON itself: bodies are pydantic ``model_dump_json`` bytes."""
    raise TypeError("ModelClients sends pre-serialized bytes only")
