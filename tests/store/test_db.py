import multiprocessing as mp
import sqlite3

import pytest

from ggt.store import Run, RunStore, StoreError, now
from ggt.store.schema import SCHEMA_VERSION


def test_new_store_is_migrated_and_in_wal_mode(tmp_path):
    with RunStore(tmp_path / "s.sqlite") as store:
        assert store.version == SCHEMA_VERSION
        assert store.scalar("PRAGMA journal_mode") == "wal"
        tables = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {
            "items",
            "sources",
            "stage_results",
            "attempts",
            "costs",
            "decisions",
            "cache_index",
        } <= tables


def test_reopening_does_not_migrate_again(tmp_path):
    RunStore(tmp_path / "s.sqlite").close()
    with RunStore(tmp_path / "s.sqlite") as store:
        assert store.version == SCHEMA_VERSION


def test_store_from_a_newer_ggt_is_refused(tmp_path):
    path = tmp_path / "s.sqlite"
    RunStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this ggt"):
        RunStore(path)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_store_is_a_clear_error_not_a_traceback(tmp_path, damage):
    path = tmp_path / "s.sqlite"
    if damage == "garbage":
        path.write_text("not a database at all, " * 200)
    else:
        with RunStore(path) as store:
            _add_item(store, "ab" * 8)
        path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(StoreError, match="not a usable run store"), RunStore(path) as store:
        store.scalar("SELECT COUNT(*) FROM items")


def _add_item(store: RunStore, item_id: str) -> None:
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO items(id, sha256, category, source_path, source_name, source_bytes, format, mode,"
            " width, height, lq_path, phash, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (item_id, item_id * 4, "rain", "/x", "x", 1, "PNG", "RGB", 8, 8, "lq/x.png", "0" * 16, now()),
        )


def test_decisions_are_append_only(tmp_path):
    with RunStore(tmp_path / "s.sqlite") as store:
        _add_item(store, "a" * 16)
        with store.transaction() as conn:
            conn.execute(
                "INSERT INTO decisions(item_id, reviewer, decision, created_at) VALUES (?, 'ann', 'accept', ?)",
                ("a" * 16, now()),
            )
        for sql in ("UPDATE decisions SET decision='reject'", "DELETE FROM decisions"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"), store.transaction() as conn:
                conn.execute(sql)
        assert store.scalar("SELECT decision FROM decisions") == "accept"


def test_failed_transaction_rolls_back(tmp_path):
    with RunStore(tmp_path / "s.sqlite") as store:
        with pytest.raises(RuntimeError), store.transaction():
            store.conn.execute(
                "INSERT INTO costs(stage, backend, usd, created_at) VALUES ('synth', 'x', 1.0, ?)", (now(),)
            )
            raise RuntimeError("boom")
        assert store.scalar("SELECT COUNT(*) FROM costs") == 0


def _writer(path: str, worker: int, n: int) -> None:
    store = RunStore(path)
    for i in range(n):
        with store.transaction() as conn:
            conn.execute(
                "INSERT INTO costs(item_id, stage, backend, usd, created_at) VALUES (?, 'synth', 'x', 0.01, ?)",
                (f"{worker}-{i}", now()),
            )
    store.close()


def test_several_processes_write_at_once_without_losing_rows(tmp_path):
    path = tmp_path / "s.sqlite"
    RunStore(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), w, 150)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with RunStore(path) as store:
        assert store.scalar("SELECT COUNT(DISTINCT item_id) FROM costs") == 600


def test_run_open_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(StoreError, match="not a ggt run"):
        Run.open(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a folder"):
        Run.create(tmp_path / "file")
