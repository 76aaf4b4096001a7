"""``xylen risk status|reset``: show the risk manager's persisted state; resume after a halt.

Both read ``<home>/xylen.db`` and exit 1 when it does not exist (nothing is created).  ``reset`` is
the only way to resume after an emergency halt: it clears the halted flag and every circuit
breaker, and logs who (user@host, or ``--by``) and when in the ``risk_events`` table.  The daily
loss limit is not lifted by a reset; it ends at 00:00 UTC.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import socket
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from xylen.errors import XylenError
from xylen.paths import Home

if TYPE_CHECKING:  # the coordinator is imported lazily, as the other service commands do
    from coordinator.risk.state import RiskStore

logger = logging.getLogger(__name__)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("risk", help="risk state: status, reset after a halt")
    inner = parser.add_subparsers(dest="risk_command", metavar="ACTION", required=True)
    status = inner.add_parser("status", help="print the persisted risk state (halt, daily PnL, breakers)")
    status.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    status.set_defaults(func=run_status)
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
        info = status_dict(store, int(time.time() * 1000))
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

    store = _open(args)
    actor = args.by or f"{getpass.getuser()}@{socket.gethostname()}"
    now_ms = int(time.time() * 1000)
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
