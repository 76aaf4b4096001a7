"""``xylen risk status|halt|reset``: show the risk state; halt (and flatten); resume after a halt.

All read ``<home>/xylen.db`` and exit 1 when it does not exist (nothing is created).

``halt [--flatten]`` writes a request to ``halt_requests``.  A running coordinator (its lease in the
same database renewed within 5 s) picks it up within a second; the command waits ``--wait`` seconds
for the outcome.  With no coordinator running it claims the request and acts itself against the
venue of ``--config``: it connects, reconciles the order database, persists the halt, cancels the
resting entries (``--flatten``: every order, then closes every position reduce-only at market),
and exits 0 when everything succeeded, 1 otherwise (the halt stands either way).  Without
``--flatten`` protective stops and take-profits stay on the exchange.

``reset`` is the only way to resume after a halt: it clears the halted flag and every circuit
breaker, and logs who (user@host, or ``--by``) and when in the ``risk_events`` table.  The daily
loss limit is not lifted by a reset; it ends at 00:00 UTC.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from xylen.errors import XylenError
from xylen.paths import Home
from xylen.timeutil import wall_ms

if TYPE_CHECKING:  # the coordinator is imported lazily, as the other service commands do
    from coordinator.risk.state import RiskStore

logger = logging.getLogger(__name__)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "risk", help="risk state: status, halt, reset after a halt"
    )
    inner = parser.add_subparsers(dest="risk_command", metavar="ACTION", required=True)
    status = inner.add_parser("status", help="print the persisted risk state (halt, daily PnL, breakers)")
    status.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    status.set_defaults(func=run_status)
    halt = inner.add_parser("halt", help="stop new entries now (--flatten: also close every position)")
    halt.add_argument("--flatten", action="store_true", help="cancel every order and close every position")
    halt.add_argument("--reason", default="operator halt", help="kept with the halt in risk_events")
    halt.add_argument("--by", default=None, help="who halts (default: user@host)")
    halt.add_argument("--config", default=None, help="config file (the venue, when no coordinator runs)")
    halt.add_argument("--wait", type=float, default=30.0, help="seconds to wait for a running coordinator")
    halt.set_defaults(func=run_halt)
    reset = inner.add_parser("reset", help="clear an emergency halt and the breakers (logged)")
    reset.add_argument("--by", default=None, help="who resets (default: user@host)")
    reset.add_argument("--note", default="", help="why, kept with the reset in risk_events")
    reset.set_defaults(func=run_reset)


def _open(args: argparse.Namespace) -> RiskStore:
    # imported here: `xylen --help` must not pay for the coordinator's imports
    from coordinator.risk.state import RiskStore
    from coordinator.storage.db import init_db

    path = Home.resolve(args.home).database
    if not path.is_file():
        raise XylenError(f"{path}: no database (the coordinator creates it on its first run)")
    try:
        return RiskStore(init_db(path))
    except (RuntimeError, OSError, ValueError) as exc:
        raise XylenError(f"{path}: {exc}") from exc


def _iso(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def status_dict(store: RiskStore, now_ms: int) -> dict[str, Any]:
    """The persisted state as plain JSON-able values."""
    state = store.load()
    win_rate = state.win_rate()
    return {
        "halted": state.halted,
        "halted_reason": state.halted_reason,
        "halted_at": _iso(state.halted_ms),
        "utc_day": _iso(state.day * 86_400_000)[:10] if state.day >= 0 else "-",
        "day_start_equity": str(state.day_start_equity),
        "day_realised_pnl": str(state.day_realised_pnl),
        "day_fees": str(state.day_fees),
        "daily_pnl": str(state.daily_pnl()),
        "daily_limits_reached": list(state.daily_limit_hit),
        "equity": str(state.equity),
        "peak_equity": str(state.peak_equity),
        "drawdown_pct": f"{state.drawdown_pct():.4f}",
        "trades": state.trades,
        "wins": state.wins,
        "losses": state.losses,
        "win_rate": None if win_rate is None else round(win_rate, 4),
        "breakers": {
            kind.value: {
                "blocking": b.blocking(now_ms),
                "until": _iso(b.tripped_until_ms) if b.tripped_until_ms else "-",
                "k": b.level,
                "trips": b.total_trips,
            }
            for kind, b in state.breakers.states.items()
        },
        "updated_at": _iso(state.updated_ms or None),
        "events": [
            {"at": _iso(ts), "kind": kind, "detail": detail, "by": actor}
            for ts, kind, detail, actor in store.events(5)
        ],
    }


def run_status(args: argparse.Namespace) -> int:
    store = _open(args)
    try:
        info = status_dict(store, wall_ms())
    finally:
        store.conn.close()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    halted = f"HALTED since {info['halted_at']}: {info['halted_reason']}" if info["halted"] else "not halted"
    print(f"risk: {halted}")
    limits = ",".join(info["daily_limits_reached"]) or "none"
    print(
        f"day {info['utc_day']}: start equity {info['day_start_equity']}, "
        f"realised {info['day_realised_pnl']}, fees {info['day_fees']}, daily PnL {info['daily_pnl']}, "
        f"limits reached: {limits}"
    )
    rate = "-" if info["win_rate"] is None else f"{info['win_rate']:.1%}"
    print(
        f"equity {info['equity']}, peak {info['peak_equity']}, drawdown {info['drawdown_pct']}%, "
        f"trades {info['trades']} ({info['wins']} won, {info['losses']} lost, win rate {rate})"
    )
    for name, b in info["breakers"].items():
        pause = f"BLOCKING until {b['until']}" if b["blocking"] else "clear"
        print(f"breaker {name}: {pause}, k={b['k']}, trips {b['trips']}")
    for event in info["events"]:
        print(f"event {event['at']} {event['kind']} by {event['by']}: {event['detail']}")
    return 0


def run_reset(args: argparse.Namespace) -> int:
    from coordinator.risk.state import reset_risk
    from coordinator.safety import actor_name

    store = _open(args)
    actor = args.by or actor_name()
    now_ms = wall_ms()
    try:
        was_halted = reset_risk(store.conn, actor, now_ms, args.note)
    finally:
        store.conn.close()
    logger.warning("risk reset by %s at %s (was %shalted)", actor, _iso(now_ms), "" if was_halted else "not ")
    print(
        f"risk reset by {actor} at {_iso(now_ms)}: {'halt cleared' if was_halted else 'was not halted'}, "
        "breakers cleared"
    )
    return 0


def run_halt(args: argparse.Namespace) -> int:
    import asyncio

    from coordinator.safety import HaltRequests, actor_name, execute_offline
    from coordinator.storage.home_lock import HomeLock, HomeLocked
    from xylen.config import load_config
    from xylen.config.secrets import load_secrets

    store = _open(args)
    actor = args.by or actor_name()
    halts = HaltRequests(store.conn)
    what = "halt and flatten" if args.flatten else "halt"
    # The home's lock says whether a coordinator runs (from its start to its exit, also while it
    # reconciles or flattens); holding it here keeps one from starting while we act ourselves.
    lock = HomeLock(Home.resolve(args.home).root, "xylen risk halt")
    try:
        request_id = halts.request(args.reason, flatten=args.flatten, actor=actor, now_ms=wall_ms())
        if request_id is None:  # no trigger key: never a duplicate
            raise RuntimeError("a halt request without a trigger key was not written")
        logger.warning("%s requested by %s: %s (request %d)", what, actor, args.reason, request_id)
        try:
            lock.acquire()
        except HomeLocked:
            deadline = time.monotonic() + max(args.wait, 0.0)
            while time.monotonic() < deadline:
                row = halts.get(request_id)
                if row is not None and row.status in ("done", "failed"):
                    print(f"{what} {row.status} by the running coordinator: {row.detail}")
                    return 0 if row.status == "done" else 1
                time.sleep(0.1)
            print(f"{what} requested (request {request_id}); the running coordinator has not finished it "
                  f"within {args.wait:.0f} s: see `xylen risk status`")  # fmt: skip
            return 1
    finally:
        store.conn.close()
    try:
        config = load_config(args.config)
        database = Home.resolve(args.home).database
        ok, detail = asyncio.run(
            execute_offline(config, load_secrets(), database, request_id, f"cli:{args.by or actor}")
        )
    finally:
        lock.release()
    print(f"{what} {'done' if ok else 'FAILED'} (no coordinator running; done from here): {detail}")
    return 0 if ok else 1
