"""Coordinator storage: one SQLite file, schema versioned by numbered migrations."""

from coordinator.storage.db import MIGRATIONS_DIR, init_db, latest_version, migrate

__all__ = ["MIGRATIONS_DIR", "init_db", "latest_version", "migrate"]
