"""Shards: ids, spec files, result files (parquet) and the driver's idempotent commit into the store.

Layout under the storage root: `STAGE/VARIANT/SHARD/` holding `spec.pkl` (what to run), `result.parquet`
(one row per settled item: outcome, result, attempts, costs), `done` (written last by the worker) and
`committed` (written by the driver after the store transaction). A shard's id is a hash of what it does
(stage, variant, the items and the settings), so a rerun that plans the same work finds the same shard.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ggt.execute.local import Outcome, record_outcomes
from ggt.execute.storage import Storage
from ggt.store import RunStore

SPEC, RESULT, DONE, COMMITTED = "spec.pkl", "result.parquet", "done", "committed"
_COLUMNS = ("item_id", "status", "result", "reason", "message", "started_at", "ended_at", "attempts", "costs")


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
    raise TypeError(f"cannot fingerprint {type(value).__name__}")


def shard_id(*parts: Any) -> str:
    """A stable id for a unit of work: the hash of its canonical JSON."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=_jsonable)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def stage_dir(stage: str, variant: str) -> str:
    return f"{stage}/{variant or '_'}"


def write_result(
    storage: Storage,
    rel: str,
    rows: list[dict[str, Any]],
    meta: Mapping[str, Any] | None = None,
) -> None:
    """The shard's result file, then its done marker (so `done` present means the result is complete)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {c: [row.get(c) for row in rows] for c in _COLUMNS}
    schema = pa.schema(
        [(c, pa.float64() if c in ("started_at", "ended_at") else pa.string()) for c in _COLUMNS],
        metadata={"ggt": json.dumps(dict(meta or {}), default=str)},
    )
    table = pa.table(columns, schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes(f"{rel}/{RESULT}", buf.getvalue())
    storage.write_text(f"{rel}/{DONE}", "")


def read_result(storage: Storage, rel: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(storage.read_bytes(f"{rel}/{RESULT}")))
    meta = json.loads((table.schema.metadata or {}).get(b"ggt", b"{}"))
    return table.to_pylist(), meta


def outcome_row(o: Outcome) -> dict[str, Any]:
    return {
        "item_id": o.item_id, "status": o.status, "result": json.dumps(o.result, default=str),
        "reason": o.reason, "message": o.message, "started_at": o.started_at, "ended_at": o.ended_at,
        "attempts": None, "costs": None,
    }  # fmt: skip


def row_outcome(row: Mapping[str, Any]) -> Outcome:
    return Outcome(
        item_id=row["item_id"], status=row["status"], result=json.loads(row["result"] or "{}"),
        reason=row["reason"], message=row["message"], started_at=row["started_at"] or 0.0,
        ended_at=row["ended_at"],
    )  # fmt: skip


def export_engine_rows(store: RunStore, stage: str, variant: str) -> tuple[list[dict[str, Any]], list[Any]]:
    """A worker's scratch store as result rows: one per settled item, with its attempts and costs."""
    attempts: dict[str, list[dict[str, Any]]] = {}
    for a in store.query("SELECT * FROM attempts WHERE stage = ? ORDER BY id", (stage,)):
        d = dict(a)
        d.pop("id")
        attempts.setdefault(d["item_id"], []).append(d)
    costs: dict[str, list[dict[str, Any]]] = {}
    for c in store.query("SELECT * FROM costs WHERE stage = ? ORDER BY id", (stage,)):
        d = dict(c)
        d.pop("id")
        costs.setdefault(d["item_id"], []).append(d)
    rows = []
    for s in store.query(
        "SELECT * FROM stage_results WHERE stage = ? AND variant = ? ORDER BY rowid", (stage, variant)
    ):
        rows.append({
            "item_id": s["item_id"], "status": s["status"], "result": s["result"], "reason": s["reason"],
            "message": s["message"], "started_at": s["updated_at"], "ended_at": s["updated_at"],
            "attempts": json.dumps(attempts.get(s["item_id"], [])),
            "costs": json.dumps(costs.get(s["item_id"], [])),
        })  # fmt: skip
    # Items left pending (budget exhausted) keep their attempts and costs: money spent is never dropped.
    for item_id in sorted(set(costs) | set(attempts)):
        if not any(r["item_id"] == item_id for r in rows):
            rows.append({"item_id": item_id, "status": "pending", "result": "{}", "reason": None,
                         "message": None, "started_at": None, "ended_at": None,
                         "attempts": json.dumps(attempts.get(item_id, [])),
                         "costs": json.dumps(costs.get(item_id, []))})  # fmt: skip
    cache = [dict(c) for c in store.query("SELECT * FROM cache_index")]
    return rows, cache


def commit_engine_rows(
    store: RunStore, stage: str, variant: str, rows: Iterable[Mapping[str, Any]], cache: list[Any]
) -> None:
    """Insert a shard's engine rows; idempotent (attempts and costs are matched on their own timestamps)."""
    with store.transaction() as conn:
        for row in rows:
            for a in json.loads(row["attempts"] or "[]"):
                seen = conn.execute(
                    "SELECT 1 FROM attempts WHERE item_id=? AND stage=? AND variant=? AND started_at=?",
                    (a["item_id"], a["stage"], a["variant"], a["started_at"]),
                ).fetchone()
                if not seen:
                    conn.execute(
                        "INSERT INTO attempts(item_id, stage, variant, started_at, ended_at, ok, error_class,"
                        " message, request_key) VALUES (?,?,?,?,?,?,?,?,?)",
                        (a["item_id"], a["stage"], a["variant"], a["started_at"], a["ended_at"], a["ok"],
                         a["error_class"], a["message"], a["request_key"]),
                    )  # fmt: skip
            for c in json.loads(row["costs"] or "[]"):
                seen = conn.execute(
                    "SELECT 1 FROM costs WHERE item_id IS ? AND stage=? AND request_key IS ? AND created_at=?",
                    (c["item_id"], c["stage"], c["request_key"], c["created_at"]),
                ).fetchone()
                if not seen:
                    conn.execute(
                        "INSERT INTO costs(item_id, stage, backend, model, usd, input_tokens, output_tokens,"
                        " request_key, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                        (c["item_id"], c["stage"], c["backend"], c["model"], c["usd"], c["input_tokens"],
                         c["output_tokens"], c["request_key"], c["created_at"]),
                    )  # fmt: skip
            if row["status"] in ("done", "failed", "skipped"):
                conn.execute(
                    "INSERT INTO stage_results(item_id, stage, variant, status, result, reason, message,"
                    " updated_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(item_id, stage, variant) DO UPDATE SET"
                    " status=excluded.status, result=excluded.result, reason=excluded.reason,"
                    " message=excluded.message, updated_at=excluded.updated_at",
                    (row["item_id"], stage, variant, row["status"], row["result"], row["reason"],
                     row["message"], row["ended_at"]),
                )  # fmt: skip
        for c in cache:
            conn.execute(
                "INSERT OR IGNORE INTO cache_index(key, backend, model, path, size, meta, created_at)"
                " VALUES (?,?,?,?,?,?,?)",
                (c["key"], c["backend"], c["model"], c["path"], c["size"], c["meta"], c["created_at"]),
            )


def commit_outcome_rows(
    store: RunStore, stage: str, variant: str, rows: list[Mapping[str, Any]]
) -> list[Outcome]:
    outcomes = [row_outcome(r) for r in rows]
    record_outcomes(store, stage, variant, outcomes)
    return outcomes
