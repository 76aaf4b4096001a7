"""The demo's beat lines: one per coordinator beat, read (read-only) from its journal.

``beat <replay time> <symbol> <last price> | votes <server> <prob_up or status> ... | <decision> |
<position> | equity <USDT>``, from the ``snapshots``, ``model_predictions``, ``decisions``,
``intents`` and ``equity`` tables of ``<home>/xylen.db`` (see DOCUMENTATION.md, "The demo").  The
decision part says what became of an entry and why (:func:`_verdict`).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path


@dataclass
class BeatReader:
    """New beats from the coordinator's journal, read-only, one line each."""

    database: Path
    after_rowid: int = 0
    _conn: sqlite3.Connection | None = None

    @classmethod
    def at_end(cls, database: Path) -> BeatReader:
        reader = cls(database)
        with contextlib.suppress(sqlite3.Error):
            conn = reader.connect()
            if conn is not None:
                row = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM snapshots").fetchone()
                reader.after_rowid = int(row[0])
        return reader

    def connect(self) -> sqlite3.Connection | None:
        if self._conn is None and self.database.exists():
            self._conn = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=2.0)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def new_lines(self) -> list[str]:
        try:
            conn = self.connect()
            if conn is None:
                return []
            rows = conn.execute(
                "SELECT s.rowid, s.beat_id, s.ts_ms, s.symbol, s.price, d.action, d.hold_reasons,"
                " d.risk_approved, d.risk_reasons, d.client_order_id"
                " FROM snapshots s LEFT JOIN decisions d USING (beat_id)"
                " WHERE s.rowid > ? ORDER BY s.rowid",
                (self.after_rowid,),
            ).fetchall()
            lines = []
            for rowid, beat_id, ts_ms, symbol, price, action, reasons, approved, refusals, order in rows:
                self.after_rowid = rowid
                verdict = _verdict(action, reasons, approved, refusals, order)
                lines.append(self._line(conn, beat_id, ts_ms, symbol, price, verdict))
            return lines
        except sqlite3.Error:  # the database is being created or migrated: next time
            self.close()
            return []

    @staticmethod
    def _line(
        conn: sqlite3.Connection,
        beat_id: str,
        ts_ms: int,
        symbol: str,
        price: float,
        decision: str,
    ) -> str:
        votes = conn.execute(
            "SELECT model_id, status, prob_up FROM model_predictions WHERE beat_id = ? ORDER BY position",
            (beat_id,),
        ).fetchall()
        shown = " ".join(
            f"{m.removeprefix('demo-')} {p:.3f}"
            if s == "ok" and p is not None
            else f"{m.removeprefix('demo-')} {s}"
            for m, s, p in votes
        )
        position = conn.execute(
            "SELECT side, qty FROM intents WHERE symbol = ? AND status = 'OPEN'"
            " ORDER BY created_ms DESC LIMIT 1",
            (symbol,),
        ).fetchone()
        held = "flat" if position is None else f"{'LONG' if position[0] == 'BUY' else 'SHORT'} {position[1]}"
        equity = conn.execute("SELECT equity FROM equity ORDER BY ts_ms DESC LIMIT 1").fetchone()
        eq = "n/a" if equity is None else f"{float(equity[0]):,.2f}"
        when = datetime.fromtimestamp(ts_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")
        return f"beat {when} {symbol} {price:,.2f} | votes {shown} | {decision} | {held} | equity {eq} USDT"


def _verdict(
    action: str | None, reasons: str | None, approved: int | None, refusals: str | None, order: str | None
) -> str:
    """The decision part of a beat line: the action, its hold reasons, and what became of an entry.

    ``approved, order sent`` (an order's client id was logged), ``approved, not sent`` (approved but
    no order: trading disabled, the symbol busy, a post-only entry that would have taken),
    ``not sent (position already open)`` (one position per symbol: no add-on), or ``refused by risk``
    with the risk manager's reasons.
    """
    if action is None:
        return "no decision"
    why = json.loads(reasons or "[]")
    decision = action + (f" ({', '.join(why)})" if why else "")
    if approved is None or action == "HOLD":
        return decision
    if approved:
        return decision + (" approved, order sent" if order else " approved, not sent")
    refused = [r.get("reason", "?") for r in json.loads(refusals or "[]") if isinstance(r, dict)]
    if refused == ["position_open"]:
        return decision + " not sent (position already open)"
    return decision + f" refused by risk ({', '.join(refused) or '?'})"
