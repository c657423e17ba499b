"""The run store's schema as an ordered list of migrations; `PRAGMA user_version` is the applied count."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the foundation tables.
    """
    CREATE TABLE items (
        id            TEXT PRIMARY KEY,          -- first 16 hex digits of SHA-256 of the source bytes
        sha256        TEXT NOT NULL UNIQUE,
        category      TEXT NOT NULL,
        source_path   TEXT NOT NULL,
        source_name   TEXT NOT NULL,
        source_bytes  INTEGER NOT NULL,
        format        TEXT NOT NULL,
        mode          TEXT NOT NULL,
        width         INTEGER NOT NULL,
        height        INTEGER NOT NULL,
        lq_path       TEXT NOT NULL,             -- relative to the run folder
        phash         TEXT NOT NULL,
        near_dup_of   TEXT REFERENCES items(id),
        near_dup_distance INTEGER,
        exif          TEXT NOT NULL DEFAULT '{}',
        notes         TEXT NOT NULL DEFAULT '[]',
        created_at    REAL NOT NULL
    );
    CREATE INDEX items_category ON items(category);
    CREATE INDEX items_near_dup ON items(near_dup_of);

    -- Every file ingest looked at, so a failure is never silent and a rerun skips what is settled.
    CREATE TABLE sources (
        path          TEXT PRIMARY KEY,
        size          INTEGER,
        mtime_ns      INTEGER,
        status        TEXT NOT NULL CHECK (status IN ('ok', 'duplicate', 'failed')),
        item_id       TEXT REFERENCES items(id),
        category      TEXT,
        reason        TEXT,                     -- short stable code, e.g. truncated, too_large
        message       TEXT,                     -- one line for people
        updated_at    REAL NOT NULL
    );
    CREATE INDEX sources_status ON sources(status);

    -- The latest outcome of each stage for each item (and variant: a generator, a judge, ...).
    CREATE TABLE stage_results (
        item_id       TEXT NOT NULL REFERENCES items(id),
        stage         TEXT NOT NULL,
        variant       TEXT NOT NULL DEFAULT '',
        status        TEXT NOT NULL CHECK (status IN ('done', 'failed', 'skipped')),
        result        TEXT NOT NULL DEFAULT '{}',
        reason        TEXT,
        message       TEXT,
        updated_at    REAL NOT NULL,
        PRIMARY KEY (item_id, stage, variant)
    );
    CREATE INDEX stage_results_stage ON stage_results(stage, variant, status);

    -- Every attempt of every stage, kept: the audit trail of retries and errors.
    CREATE TABLE attempts (
        id            INTEGER PRIMARY KEY,
        item_id       TEXT NOT NULL,
        stage         TEXT NOT NULL,
        variant       TEXT NOT NULL DEFAULT '',
        started_at    REAL NOT NULL,
        ended_at      REAL,
        ok            INTEGER NOT NULL,
        error_class   TEXT,
        message       TEXT,
        request_key   TEXT
    );
    CREATE INDEX attempts_item ON attempts(item_id, stage);

    CREATE TABLE costs (
        id            INTEGER PRIMARY KEY,
        item_id       TEXT,
        stage         TEXT NOT NULL,
        backend       TEXT NOT NULL,
        model         TEXT,
        usd           REAL,
        input_tokens  INTEGER,
        output_tokens INTEGER,
        request_key   TEXT,
        created_at    REAL NOT NULL
    );
    CREATE INDEX costs_stage ON costs(stage, backend);

    -- Append-only: the current decision of a pair is its latest row.
    CREATE TABLE decisions (
        id            INTEGER PRIMARY KEY,
        item_id       TEXT NOT NULL REFERENCES items(id),
        variant       TEXT NOT NULL DEFAULT '',
        reviewer      TEXT NOT NULL,
        decision      TEXT NOT NULL,
        reasons       TEXT NOT NULL DEFAULT '[]',
        note          TEXT,
        created_at    REAL NOT NULL
    );
    CREATE INDEX decisions_item ON decisions(item_id, variant, id);
    CREATE TRIGGER decisions_append_only_update BEFORE UPDATE ON decisions
        BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
    CREATE TRIGGER decisions_append_only_delete BEFORE DELETE ON decisions
        BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;

    -- Content-addressed responses of paid calls: request hash -> file under cache/.
    CREATE TABLE cache_index (
        key           TEXT PRIMARY KEY,
        backend       TEXT NOT NULL,
        model         TEXT,
        path          TEXT NOT NULL,
        size          INTEGER NOT NULL,
        meta          TEXT NOT NULL DEFAULT '{}',
        created_at    REAL NOT NULL
    );
    """,
    # 2: manual review. The queue's first screen walks QC verdicts in key order through a partial index on
    # the verdict (no scan of 100,000 JSON results); a reviewer's undo chain and progress read decisions by
    # reviewer; an undo row names the row it takes back (`undoes`) and the one whose decision it brings back
    # (`restores`, NULL when none), so undoing never deletes and the decision in force is one look-up away.
    """
    CREATE INDEX stage_results_qc_verdict ON stage_results(json_extract(result, '$.verdict'), variant, item_id)
        WHERE stage = 'qc';
    CREATE INDEX decisions_reviewer ON decisions(reviewer, id);
    ALTER TABLE decisions ADD COLUMN undoes INTEGER REFERENCES decisions(id);
    ALTER TABLE decisions ADD COLUMN restores INTEGER REFERENCES decisions(id);
    """,
    # 3: people's pairwise preferences (the review app's compare mode over a benchmark's bench store). One row
    # per vote, append-only like decisions: which contestant was shown left and which right (the page's
    # random order, as the server dealt it), the choice, and the voter when one gave a name.
    """
    CREATE TABLE preferences (
        id            INTEGER PRIMARY KEY,
        item_id       TEXT NOT NULL REFERENCES items(id),
        left_name     TEXT NOT NULL,
        right_name    TEXT NOT NULL,
        choice        TEXT NOT NULL CHECK (choice IN ('left', 'right', 'tie', 'skip')),
        voter         TEXT,
        shown_at      REAL,
        created_at    REAL NOT NULL
    );
    CREATE INDEX preferences_item ON preferences(item_id, left_name, right_name);
    CREATE TRIGGER preferences_append_only_update BEFORE UPDATE ON preferences
        BEGIN SELECT RAISE(ABORT, 'preferences are append-only'); END;
    CREATE TRIGGER preferences_append_only_delete BEFORE DELETE ON preferences
        BEGIN SELECT RAISE(ABORT, 'preferences are append-only'); END;
    """,
    # 4: a repair, not a change of shape. Ingest before this version recorded a file reached twice (the
    # same folder given twice, another spelling of its path) as a duplicate of the item it produced
    # itself; such a source is simply 'ok'. Stores that version wrote are below 4, so it runs once.
    """
    UPDATE sources SET status = 'ok' WHERE status = 'duplicate' AND EXISTS
        (SELECT 1 FROM items WHERE items.id = sources.item_id AND items.source_path = sources.path);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
