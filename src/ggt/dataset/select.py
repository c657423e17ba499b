"""Which pairs an export takes: the current decision of every generated pair, and its metadata rows."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from ggt.store import RunStore

Status = Literal["kept", "undecided", "rejected"]
POLICY_REVIEWER = "policy"
# Decision values as QC (keep/reject/review) and the review app (accept/reject/skip) write them.
_STATUS: dict[str, Status] = {"keep": "kept", "accept": "kept", "reject": "rejected", "review": "undecided"}


def status_of(decision: str | None) -> Status:
    return _STATUS.get(decision or "", "undecided")


def current_decisions(
    store: RunStore, ids: Sequence[str] | None = None
) -> dict[tuple[str, str], dict[str, Any]]:
    """(item, variant) -> the pair's current decision row.

    The current decision is the latest row (the store's contract). QC never appends after a person's row
    unless asked to (`--redo-decisions`), so a reviewer's word stands over the policy's. A 'skip' is a
    reviewer passing on the pair, not a decision: the row before it still holds.
    """
    where, params = "", ()
    if ids is not None:
        where, params = f" AND item_id IN ({','.join('?' * len(ids))})", tuple(ids)
    rows = store.query(
        "SELECT d.item_id, d.variant, d.reviewer, d.decision, d.reasons, d.note, d.created_at FROM decisions d"
        " JOIN (SELECT MAX(id) AS id FROM decisions WHERE decision != 'skip'" + where + ""
        " GROUP BY item_id, variant) m ON m.id = d.id",
        params,
    )
    return {
        (r["item_id"], r["variant"]): {
            "decision": r["decision"],
            "reviewer": r["reviewer"],
            "human": r["reviewer"] != POLICY_REVIEWER,
            "reasons": json.loads(r["reasons"] or "[]"),
            "note": r["note"],
            "at": r["created_at"],
        }
        for r in rows
    }


def candidate_pairs(store: RunStore, generator: str | None) -> Iterator[Any]:
    """Every generated pair (done synth result), streamed in a stable order with the fields a plan needs."""
    sql = (
        "SELECT i.id, i.category, i.lq_path, i.width, i.height, s.variant, s.result AS synth"
        " FROM items i JOIN stage_results s ON s.item_id = i.id AND s.stage = 'synth' AND s.status = 'done'"
    )
    params: tuple[str, ...] = ()
    if generator is not None:
        sql += " WHERE s.variant = ?"
        params = (generator,)
    yield from store.conn.execute(sql + " ORDER BY i.id, s.variant", params)


def pair_metadata(store: RunStore, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """The metadata of a shard's pairs, read when the shard is written (never for the whole run at once)."""
    if not pairs:
        return {}
    ids = sorted({p[0] for p in pairs})
    marks = ",".join("?" * len(ids))
    rows = store.query(
        "SELECT i.id, i.category, i.source_name, i.width, i.height, i.near_dup_of, s.variant,"
        " s.result AS synth, a.result AS analyze, q.result AS qc"
        " FROM items i JOIN stage_results s ON s.item_id = i.id AND s.stage = 'synth'"
        " LEFT JOIN stage_results a ON a.item_id = i.id AND a.stage = 'analyze' AND a.variant = ''"
        " LEFT JOIN stage_results q ON q.item_id = i.id AND q.stage = 'qc' AND q.variant = s.variant"
        f" WHERE i.id IN ({marks})",
        ids,
    )
    decisions = current_decisions(store, ids)
    wanted = set(pairs)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r["id"], r["variant"])
        if key not in wanted:
            continue
        synth = json.loads(r["synth"] or "{}")
        analysis = json.loads(r["analyze"] or "{}")
        qc = json.loads(r["qc"] or "{}")
        d = decisions.get(key)
        out[key] = {
            "id": r["id"],
            "category": r["category"],
            "source_name": r["source_name"],
            "lq_size": [r["width"], r["height"]],
            "near_dup_of": r["near_dup_of"],
            "degradation": analysis.get("report"),
            "prompt": synth.get("prompt", analysis.get("prompt")),
            "prompting": analysis.get("prompting"),
            "generator": synth.get("generator", r["variant"]),
            "variant": r["variant"],
            "model": synth.get("model"),
            "qc": {k: qc.get(k) for k in ("verdict", "reasons", "metrics", "judge", "policy")}
            if qc
            else None,
            "decision": d,
            "status": status_of(d["decision"] if d else None),
        }
    return out
