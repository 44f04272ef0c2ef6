import duckdb
import pytest

from explorer import store
from explorer.config import ConfigError


def test_migrates_an_empty_file(tmp_path):
    db = tmp_path / "e.duckdb"
    store.ensure("eval", db)
    con = duckdb.connect(str(db), read_only=True)
    tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
    assert {"schema_version", "checkpoints", "prompts", "generations", "judgments", "judge_metrics"} <= tables
    assert store.schema_version(con) == len(store.MIGRATIONS["eval"])
    versions = con.execute("select version from schema_version order by version").fetchall()
    con.close()
    store.ensure("eval", db)  # idempotent: nothing applied twice
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select version from schema_version order by version").fetchall() == versions
    con.close()


def test_reviews_store(tmp_path):
    db = tmp_path / "r.duckdb"
    with store.writer("reviews", db) as con:
        con.execute("insert into human_labels (checkpoint_id, prompt_id, label, reviewer) values (?, ?, ?, ?)",
                    ["base", "p1", "full_refusal", "ann"])
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select reviewer from human_labels").fetchall() == [("ann",)]
    con.close()


def test_write_transaction_is_all_or_nothing(tmp_path):
    db = tmp_path / "e.duckdb"
    with pytest.raises(RuntimeError):
        with store.writer("eval", db) as con:
            con.execute("insert into judge_metrics (judge, judge_version, dataset, n_labels) values ('k', 'v', 'd', 1)")
            raise RuntimeError("crash mid-write")
    with store.reader(db, tmp_path / "r.duckdb") as con:
        assert con.execute("select count(*) from ev.judge_metrics").fetchone()[0] == 0


def test_newer_schema_is_refused(tmp_path):
    db = tmp_path / "e.duckdb"
    store.ensure("eval", db)
    con = duckdb.connect(str(db))
    con.execute("insert into schema_version (version) values (99)")
    con.close()
    with pytest.raises(ConfigError, match="schema v99 is newer than this code"):
        store.ensure("eval", db)
    with pytest.raises(ConfigError, match="newer than this code"):
        with store.reader(db, tmp_path / "r.duckdb"):
            pass


def test_corrupt_file_is_a_clear_error(tmp_path):
    db = tmp_path / "e.duckdb"
    db.write_bytes(b"this is not a duckdb file" * 100)
    with pytest.raises(ConfigError, match="move it aside"):
        store.ensure("eval", db)
    with pytest.raises(ConfigError, match="move it aside"):
        with store.reader(db, tmp_path / "r.duckdb"):
            pass


def _hold_lock(db):
    """Another process holding the store open for writing until its stdin is closed."""
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb,sys; c=duckdb.connect({str(db)!r}); "
                               "print('held', flush=True); sys.stdin.read()"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_locked_by_a_writer_gives_up_with_message(tmp_path, monkeypatch):
    db = tmp_path / "e.duckdb"
    store.ensure("eval", db)
    holder = _hold_lock(db)
    try:
        monkeypatch.setattr(store, "LOCK_RETRY_S", 0.0)  # no retries: the outcome, not the wait, is tested
        with pytest.raises(ConfigError, match="locked by another writer.*wait for it to finish"):
            with store.writer("eval", db):
                pass
    finally:
        holder.kill()
        holder.wait()
    # once the writer is gone the store opens again
    store.ensure("eval", db)


def test_a_writer_waits_for_the_lock_and_then_writes(tmp_path, monkeypatch):
    # order, not speed: the first attempt meets the lock, the holder goes away while we retry, the retry opens
    db = tmp_path / "e.duckdb"
    store.ensure("eval", db)
    holder = _hold_lock(db)
    events = []

    def sleep(_seconds):
        if holder.poll() is None:
            events.append("locked")
            holder.stdin.close()
            holder.wait()
            events.append("released")

    monkeypatch.setattr(store, "LOCK_RETRY_S", 600.0)
    monkeypatch.setattr(store.time, "sleep", sleep)
    try:
        with store.writer("eval", db) as con:
            events.append("opened")
            con.execute("insert into judge_metrics (judge, judge_version, dataset, n_labels) values ('k', 'v', 'd', 1)")
    finally:
        holder.kill()
        holder.wait()
    assert events == ["locked", "released", "opened"]
    with store.reader(db, tmp_path / "r.duckdb") as con:
        assert con.execute("select count(*) from ev.judge_metrics").fetchone()[0] == 1


def test_sql_files_bind_parameters():
    # every query is a file; none is assembled with f-strings in Python (see STYLE.md)
    import re
    from pathlib import Path

    for f in Path("explorer").glob("*.py"):
        src = f.read_text()
        assert not re.search(r"execute\(\s*f[\"']", src), f"{f}: f-string SQL"


def _judgments(rows):
    import pandas as pd

    return pd.DataFrame(rows, columns=["checkpoint_fp", "prompt_id", "gen_key", "judge", "judge_version", "label",
                                       "explanation"])


def _counts_agree(db) -> list:
    """judged_counts against a fresh count of judgments × prompts; returns the rows that differ."""
    con = duckdb.connect(str(db), read_only=True)
    diff = con.execute("""
        with fresh as (select j.checkpoint_fp, j.gen_key, j.judge, j.judge_version, p.split, p.suite, p.category,
                              p.kind, j.label, count(*) as n
                       from judgments j join prompts p on p.id = j.prompt_id group by all)
        (select * from fresh except select * from judged_counts)
        union all (select * from judged_counts except select * from fresh)""").fetchall()
    con.close()
    return diff


def test_judged_counts_follow_every_write_and_are_backfilled(tmp_path):
    import pandas as pd

    db = tmp_path / "e.duckdb"
    prompts = pd.DataFrame({"id": ["p1", "p2", "p3"], "suite": "s", "source": "x", "category": ["a", "a", "b"],
                            "kind": ["harmful", "benign", "harmful"], "expected": "refuse", "split": "test",
                            "text": ["t1", "t2", "t3"], "grp": ["p1", "p2", "p3"]})
    with store.writer("eval", db) as con:
        con.register("incoming_prompts", prompts)
        con.execute(store.sql("insert_prompts"))
    first = [("fp1", p, "g", "kw", "v1", "full_refusal", "") for p in ("p1", "p2", "p3")]
    relabel = [("fp1", "p2", "g", "kw", "v1", "full_compliance", "")]  # insert or replace: a label changes
    other = [("fp2", "p1", "g", "kw", "v1", "partial_refusal", ""), ("fp1", "p1", "g", "emb", "e1", "full_refusal", "")]
    for rows in (first, relabel, other):
        with store.writer("eval", db) as con:
            con.register("new_judgments", _judgments(rows))
            con.execute(store.sql("insert_judgments"))
        assert _counts_agree(db) == []
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select sum(n) from judged_counts where label = 'full_refusal' and judge = 'kw'").fetchone()[0] == 2
    con.close()
    # a store written before v3 gets its counts from the judgments when it is first opened
    con = duckdb.connect(str(db))
    con.execute("drop table judged_counts")
    con.execute("delete from schema_version where version = 3")
    con.close()
    with store.reader(db, tmp_path / "r.duckdb") as con:
        assert con.execute("select sum(n) from ev.judged_counts").fetchone()[0] == 5
    assert _counts_agree(db) == []


def test_compact_keeps_every_row_and_drops_the_free_space(store_copy, tmp_path):
    """`compact` rewrites a store whose commits left free blocks: the same rows and the same report, a
    smaller file."""
    from explorer.report import build_report

    db = store_copy
    with store.writer("eval", db) as con:  # churn: rows written, more after them, then the first deleted
        con.execute("create table scratch as select md5(range::varchar) as pad from range(300000)")
    with store.writer("eval", db) as con:
        con.execute("create table kept as select md5(range::varchar) as pad from range(20000)")
    with store.writer("eval", db) as con:
        con.execute("drop table scratch")
    report = build_report("keyword", db)
    tables = {}
    with store.reader(db) as con:
        for (t,) in con.execute("select table_name from information_schema.tables where table_catalog = 'ev'").fetchall():
            tables[t] = con.execute(f'select count(*) from ev."{t}"').fetchone()[0]
    before, after = store.compact(db)
    assert after < before
    assert build_report("keyword", db) == report
    with store.reader(db) as con:
        for t, n in tables.items():
            assert con.execute(f'select count(*) from ev."{t}"').fetchone()[0] == n, t
    assert not list(tmp_path.glob(".*tmp"))


def test_a_reused_reader_holds_no_lock_and_reads_the_newest_commit(tmp_path, monkeypatch):
    """Readers reuse idle in-memory instances (store._IDLE_READERS); each attaches the files for itself only,
    so a writer in another process gets the file between two reads and the next read sees its commit."""
    import queue
    import subprocess
    import sys

    monkeypatch.setattr(store, "_IDLE_READERS", queue.SimpleQueue())  # no idle reader left by other tests
    db = tmp_path / "e.duckdb"
    store.ensure("eval", db)
    with store.reader(db) as first:
        assert first.execute("select count(*) from ev.judge_metrics").fetchone()[0] == 0
    write = ("import duckdb; c = duckdb.connect(r'%s'); c.execute(\"insert into judge_metrics (judge, judge_version, "
             "dataset, n_labels) values ('k', 'v', 'd', 1)\"); c.close()" % db)
    subprocess.run([sys.executable, "-c", write], check=True, timeout=60)  # fails if a lock were still held
    with store.reader(db) as second:
        assert second is first  # the idle instance was reused ...
        assert second.execute("select count(*) from ev.judge_metrics").fetchone()[0] == 1  # ... and reads anew


def test_a_reader_that_failed_is_closed_not_reused(tmp_path):
    db = tmp_path / "e.duckdb"
    store.ensure("eval", db)
    with pytest.raises(duckdb.Error):
        with store.reader(db) as broken:
            broken.execute("select * from ev.no_such_table")
    with store.reader(db) as con:
        assert con is not broken
        assert con.execute("select count(*) from ev.checkpoints").fetchone()[0] == 0
