"""The review queue, pair details, decisions and undo as plain SQL over the run store.

Kept apart from the web layer so the benchmark and tests can compare the API with the bare queries.
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from ggt.store import RunStore, now

POLICY = "policy"
# The queue's first screen: pairs QC sent to a person, then the ones it rejected, then the ones it kept.
VERDICT_ORDER = ("review", "reject", "keep")
DECISIONS = ("keep", "reject")
REASON_TAGS = ("hallucination", "misalignment", "colour_shift", "residual_degradation", "artefacts", "other")
ITEM_ID = re.compile(r"^[0-9a-f]{16}$")
# Metric and rule names go into JSON paths; anything outside this alphabet is refused, not escaped.
NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,80}$")
VERDICT_EXPR = "json_extract(s.result, '$.verdict')"


class QueryError(ValueError):
    """A filter, sort or cursor the queue cannot use; the message says which."""


@dataclass
class QueueFilter:
    category: str | None = None
    verdict: str | None = None
    rule: str | None = None
    generator: str | None = None
    metric_min: dict[str, float] = field(default_factory=dict)
    metric_max: dict[str, float] = field(default_factory=dict)
    pending: bool = False  # only pairs no person has decided yet
    sort: str | None = None  # a metric name; None is the QC routing order
    descending: bool = False


def metric_path(name: str) -> str:
    if not NAME.match(name):
        raise QueryError(f"bad metric name {name!r}")
    return f'$.metrics."{name}"'


def _encode_cursor(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise QueryError("bad cursor") from None
    if not isinstance(value, dict):
        raise QueryError("bad cursor")
    return value


def _filters(f: QueueFilter) -> tuple[list[str], list[Any]]:
    where = ["s.stage = 'qc'", "s.status = 'done'"]
    params: list[Any] = []
    if f.category:
        where.append("i.category = ?")
        params.append(f.category)
    if f.generator:
        where.append("s.variant = ?")
        params.append(f.generator)
    if f.rule:
        if not NAME.match(f.rule):
            raise QueryError(f"bad rule name {f.rule!r}")
        where.append("EXISTS (SELECT 1 FROM json_each(s.result, '$.reasons') r WHERE r.value = ?)")
        params.append(f.rule)
    for name, lo in f.metric_min.items():
        where.append("json_extract(s.result, ?) >= ?")
        params += [metric_path(name), lo]
    for name, hi in f.metric_max.items():
        where.append("json_extract(s.result, ?) <= ?")
        params += [metric_path(name), hi]
    if f.pending:
        # The latest row of the pair comes from the policy (or there is none): no person has spoken yet.
        # For an undo row, the decision in force is the row it restores (none: undecided, as good as policy).
        where.append(
            "COALESCE((SELECT CASE WHEN d.undoes IS NULL THEN d.reviewer ELSE COALESCE("
            "(SELECT r.reviewer FROM decisions r WHERE r.id = d.restores), ?) END FROM decisions d"
            " WHERE d.item_id = s.item_id AND d.variant = s.variant ORDER BY d.id DESC LIMIT 1), ?) = ?"
        )
        params += [POLICY, POLICY, POLICY]
    return where, params


_SELECT = (
    "SELECT s.item_id, s.variant, i.category, s.result FROM stage_results s JOIN items i ON i.id = s.item_id"
)


def queue_page(conn: sqlite3.Connection, f: QueueFilter, limit: int = 50, cursor: str | None = None) -> dict:
    """One page of the queue and the cursor of the next (None at the end).

    In routing order the page walks the partial index on the QC verdict, one verdict after another, with a
    keyset cursor (verdict, variant, item id), so any page costs the same however deep. A metric sort needs
    every matching row's value, so it pages by offset.
    """
    limit = max(1, min(int(limit), 500))
    where, params = _filters(f)
    # A mistyped metric name must be an error, not an empty queue that reads as "nothing to review".
    for name in {*(f.metric_min), *(f.metric_max), *([f.sort] if f.sort else [])}:
        if not conn.execute(
            "SELECT 1 FROM stage_results s WHERE s.stage = 'qc' AND json_extract(s.result, ?) IS NOT NULL"
            " LIMIT 1",
            (metric_path(name),),
        ).fetchone():
            raise QueryError(f"no pair has a metric {name!r}")
    rows: list[sqlite3.Row] = []
    state = _decode_cursor(cursor) if cursor else {}
    if f.sort:
        path = metric_path(f.sort)
        offset = int(state.get("offset", 0))
        order = "DESC" if f.descending else "ASC"
        # Pairs without the metric (it failed, or a subset was measured) come last, never hidden.
        sql = (
            f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY json_extract(s.result, ?) IS NULL,"
            f" json_extract(s.result, ?) {order}, s.variant, s.item_id LIMIT ? OFFSET ?"
        )
        rows = conn.execute(sql, [*params, path, path, limit + 1, offset]).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = _encode_cursor({"offset": offset + limit}) if more else None
    else:
        verdicts = [f.verdict] if f.verdict else list(VERDICT_ORDER)
        if f.verdict and f.verdict not in VERDICT_ORDER:
            raise QueryError(f"bad verdict {f.verdict!r}")
        start = state.get("v")
        if start is not None and start not in verdicts:
            raise QueryError("bad cursor")
        idx = verdicts.index(start) if start is not None else 0
        after = (str(state.get("g", "")), str(state.get("i", ""))) if start is not None else None
        nxt = None
        for pos in range(idx, len(verdicts)):
            want = limit + 1 - len(rows)
            extra, extra_params = [f"{VERDICT_EXPR} = ?"], [verdicts[pos]]
            if after is not None and pos == idx:
                extra.append("(s.variant, s.item_id) > (?, ?)")
                extra_params += list(after)
            sql = (
                # The verdict is fixed by the WHERE, so (variant, item_id) is the index's own order; naming
                # the verdict expression in ORDER BY too would make SQLite sort every match first.
                f"{_SELECT} WHERE {' AND '.join(where + extra)} ORDER BY s.variant, s.item_id LIMIT ?"
            )
            got = conn.execute(sql, [*params, *extra_params, want]).fetchall()
            rows += [r for r in got]
            if len(rows) > limit:
                break
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            nxt = _encode_cursor(
                {"v": json.loads(last["result"]).get("verdict"), "g": last["variant"], "i": last["item_id"]}
            )
    latest = _latest_many(conn, [(r["item_id"], r["variant"]) for r in rows])
    items = []
    for r in rows:
        res = json.loads(r["result"])
        items.append(
            {
                "item_id": r["item_id"],
                "variant": r["variant"],
                "category": res.get("category") or r["category"],
                "verdict": res.get("verdict"),
                "reasons": res.get("reasons", []),
                "metrics": res.get("metrics", {}),
                "decision": latest.get((r["item_id"], r["variant"])),
            }
        )
    return {"items": items, "next": nxt}


def _latest_many(conn: sqlite3.Connection, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    out = {}
    for item_id, variant in pairs:
        row = conn.execute(
            "SELECT id, reviewer, decision, reasons, note FROM decisions WHERE item_id = ? AND variant = ?"
            " ORDER BY id DESC LIMIT 1",
            (item_id, variant),
        ).fetchone()
        if row is not None:
            out[(item_id, variant)] = _decision(row)
    return out


def _decision(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "reviewer": row["reviewer"],
        "decision": row["decision"],
        "reasons": json.loads(row["reasons"]),
        "note": row["note"],
    }


def pair_exists(conn: sqlite3.Connection, item_id: str, variant: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM stage_results WHERE item_id = ? AND stage = 'synth' AND variant = ? AND status = 'done'",
            (item_id, variant),
        ).fetchone()
        is not None
    )


def pair_detail(conn: sqlite3.Connection, item_id: str, variant: str) -> dict[str, Any] | None:
    item = conn.execute("SELECT id, category, width, height, source_name FROM items WHERE id = ?", (item_id,))
    irow = item.fetchone()
    if irow is None or not pair_exists(conn, item_id, variant):
        return None
    stages = {
        (r["stage"], r["variant"]): json.loads(r["result"])
        for r in conn.execute(
            "SELECT stage, variant, result FROM stage_results WHERE item_id = ? AND status = 'done'"
            " AND stage IN ('analyze', 'qc')",
            (item_id,),
        )
    }
    analysis = stages.get(("analyze", ""), {})
    qc = stages.get(("qc", variant), {})
    history = [
        {**_decision(r), "created_at": r["created_at"], "undoes": r["undoes"]}
        for r in conn.execute(
            "SELECT * FROM decisions WHERE item_id = ? AND variant = ? ORDER BY id", (item_id, variant)
        )
    ]
    return {
        "item_id": item_id,
        "variant": variant,
        "category": irow["category"],
        "source_name": irow["source_name"],
        "size": [irow["width"], irow["height"]],
        "prompt": analysis.get("prompt"),
        "report": analysis.get("report"),
        "verdict": qc.get("verdict"),
        "reasons": qc.get("reasons", []),
        "metrics": qc.get("metrics", {}),
        "judge": qc.get("judge"),
        "judge_name": qc.get("judge_name"),
        "decision": _in_force(history),
        "history": history,
    }


def _in_force(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The decision in force after replaying the rows: an undo row takes back the row it names."""
    stack: list[dict[str, Any]] = []
    for row in history:
        if row.get("undoes") is not None:
            if stack and stack[-1]["id"] == row["undoes"]:
                stack.pop()
        else:
            stack.append(row)
    return stack[-1] if stack else None


def record_decision(
    store: RunStore,
    item_id: str,
    variant: str,
    reviewer: str,
    decision: str,
    reasons: list[str],
    note: str | None,
) -> int:
    """Append one decision row; returns its id. The transaction takes the write lock up front, so two
    reviewers deciding at the same moment both land, one after the other."""
    with store.transaction() as conn:
        cur = conn.execute(
            "INSERT INTO decisions(item_id, variant, reviewer, decision, reasons, note, created_at)"
            " VALUES (?,?,?,?,?,?,?)",
            (item_id, variant, reviewer, decision, json.dumps(reasons), note, now()),
        )
        return int(cur.lastrowid or 0)


class UndoError(LookupError):
    """Nothing of this reviewer's can be undone (there, or at all)."""


def undo_last(store: RunStore, reviewer: str, pair: tuple[str, str] | None = None) -> dict[str, Any]:
    """Take back this reviewer's latest decision still in force (on `pair`, or anywhere) by appending a
    row that restores the decision before it. Returns the pair and the decision now in force."""
    with store.transaction() as conn:
        if pair is not None:
            candidates = [pair]
        else:
            # Newest first; a row already undone or overridden by someone else is passed over.
            candidates = []
            for r in conn.execute(
                "SELECT item_id, variant FROM decisions WHERE reviewer = ? AND undoes IS NULL"
                " ORDER BY id DESC LIMIT 200",
                (reviewer,),
            ):
                if (r[0], r[1]) not in candidates:
                    candidates.append((r[0], r[1]))
        for item_id, variant in candidates:
            rows = [
                {**_decision(r), "undoes": r["undoes"]}
                for r in conn.execute(
                    "SELECT * FROM decisions WHERE item_id = ? AND variant = ? ORDER BY id",
                    (item_id, variant),
                )
            ]
            stack: list[dict[str, Any]] = []
            for row in rows:
                if row["undoes"] is not None:
                    if stack and stack[-1]["id"] == row["undoes"]:
                        stack.pop()
                else:
                    stack.append(row)
            if not stack or stack[-1]["reviewer"] != reviewer:
                continue
            top = stack.pop()
            before = stack[-1] if stack else None
            conn.execute(
                "INSERT INTO decisions(item_id, variant, reviewer, decision, reasons, note, created_at, undoes,"
                " restores) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    item_id,
                    variant,
                    reviewer,
                    before["decision"] if before else "undecided",
                    json.dumps(before["reasons"] if before else []),
                    f"undo of #{top['id']}",
                    now(),
                    top["id"],
                    before["id"] if before else None,
                ),
            )
            return {"item_id": item_id, "variant": variant, "undone": top["id"], "decision": before}
    raise UndoError(f"no decision of {reviewer!r} to undo")


def progress(conn: sqlite3.Connection) -> dict[str, Any]:
    """Pairs per QC verdict and, per reviewer, decisions standing (made minus undone) and pairs touched."""
    verdicts = {
        r[0]: r[1]
        for r in conn.execute(
            f"SELECT {VERDICT_EXPR} AS v, COUNT(*) FROM stage_results s WHERE s.stage = 'qc' GROUP BY v"
        )
    }
    reviewers = {
        r[0]: {"decisions": r[1], "pairs": r[2]}
        for r in conn.execute(
            # An undo row cancels the row it takes back, so the count is what the reviewer stands by.
            "SELECT reviewer, SUM(CASE WHEN undoes IS NULL THEN 1 ELSE -1 END),"
            " COUNT(DISTINCT item_id || '/' || variant) FROM decisions WHERE reviewer != ? GROUP BY reviewer",
            (POLICY,),
        )
    }
    return {"pairs": sum(verdicts.values()), "verdicts": verdicts, "reviewers": reviewers}


def facets(conn: sqlite3.Connection, sample: int = 5000) -> dict[str, list[str]]:
    """Values for the filter menus. Rules and metric names come from a sample of QC results: the menus
    must appear at once on a large run, and a policy fires the same handful of rules everywhere."""
    cats = [r[0] for r in conn.execute("SELECT DISTINCT category FROM items ORDER BY 1")]
    gens = [
        r[0] for r in conn.execute("SELECT DISTINCT variant FROM stage_results WHERE stage = 'qc' ORDER BY 1")
    ]
    rules: set[str] = set()
    metrics: set[str] = set()
    for (res,) in conn.execute("SELECT result FROM stage_results WHERE stage = 'qc' LIMIT ?", (sample,)):
        value = json.loads(res)
        rules.update(value.get("reasons", []))
        metrics.update(value.get("metrics", {}))
    return {
        "categories": cats,
        "generators": gens,
        "rules": sorted(rules),
        "metrics": sorted(metrics),
        "verdicts": list(VERDICT_ORDER),
        "reason_tags": list(REASON_TAGS),
    }
