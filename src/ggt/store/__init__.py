"""The run store (SQLite, WAL) and the run folder around it."""

from ggt.store.db import RunStore, StoreError, dumps, now
from ggt.store.run import Run

__all__ = ["Run", "RunStore", "StoreError", "dumps", "now"]
