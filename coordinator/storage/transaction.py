"""One SQLite write transaction that nests: the outermost ``with`` commits, inner ones are savepoints.

Connections are in autocommit mode (``isolation_level=None``, see :mod:`coordinator.storage.db`),
so a transaction is explicit: ``BEGIN IMMEDIATE`` takes the write lock at once (no upgrade deadlock
with another process), and every error rolls back.  Inside a caller's transaction the same call is a
savepoint: its error undoes only its own writes and propagates, and nothing is committed before the
outermost block ends.  This is how several writers sharing a connection (the journal and the risk
store) commit together or not at all.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from collections.abc import Iterator


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on any error); a savepoint when already inside one."""
    if conn.in_transaction:
        name = f"sp_{secrets.token_hex(4)}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
            raise
        conn.execute(f"RELEASE {name}")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
