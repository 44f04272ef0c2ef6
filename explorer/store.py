"""DuckDB store: versioned schema, forward migrations, short-lived connections, bound SQL.

Two files, attached together for reading:
- data/eval.duckdb     written by the pipeline (checkpoints, prompts, generations, judgments,
                       judge_metrics, capability);
- data/reviews.duckdb  written by the dashboard (human_labels, decisions).
DuckDB lets one process hold a file for writing at a time, and a reader's lock blocks a writer, so
every connection here is short-lived (opened per read or per write transaction, then closed) and
retries briefly when the other side holds the lock. That way the dashboard keeps serving and
saving decisions while an evaluation writes results, and shows them once they commit.
"""
from __future__ import annotations

import os
import queue
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import duckdb
import pandas as pd

from .atomic import atomic_file
from .config import ROOT, ConfigError

SQL_DIR = Path(__file__).resolve().parent / "sql"
EVAL_DB = ROOT / "data" / "eval.duckdb"
REVIEWS_DB = ROOT / "data" / "reviews.duckdb"
MIGRATIONS = {"eval": ["eval_v1.sql", "eval_v2.sql", "eval_v3.sql"], "reviews": ["reviews_v1.sql"]}
LOCK_RETRY_S = 10.0


class StoreError(ConfigError):
    pass


@lru_cache(maxsize=None)
def sql(name: str) -> str:
    """A query from explorer/sql/<name>.sql (never built from strings: values are bound)."""
    return (SQL_DIR / f"{name}.sql").read_text()


def _is_lock_error(e: Exception) -> bool:
    msg = str(e).lower()
    return "lock" in msg or "conflicting" in msg or "being used by another" in msg


# A writer that finds the file locked leaves this marker (touched at every retry) until it gets in or gives up,
# and readers hold back while it is fresh: readers reuse idle instances and attach again within a millisecond,
# so back-to-back reads would otherwise keep a waiting writer out for good. A killed writer's marker goes
# stale in WRITER_WAITING_FRESH_S.
WRITER_WAITING_FRESH_S = 1.0


def _writer_waiting(path: Path) -> Path:
    return path.with_name(path.name + ".writer-waiting")


def _hold_back_for_writer(path: Path, deadline: float) -> None:
    marker = _writer_waiting(path)
    while time.monotonic() < deadline:
        try:
            if time.time() - marker.stat().st_mtime > WRITER_WAITING_FRESH_S:
                return
        except FileNotFoundError:
            return
        time.sleep(0.005)


def _connect(path: Path, read_only: bool, retry_s: float | None = None) -> duckdb.DuckDBPyConnection:
    marker = None if read_only else _writer_waiting(path)
    try:
        return _connect_retrying(path, read_only, retry_s, marker)
    finally:
        if marker is not None:
            marker.unlink(missing_ok=True)


def _connect_retrying(path: Path, read_only: bool, retry_s: float | None, marker: Path | None) -> duckdb.DuckDBPyConnection:
    retry_s = LOCK_RETRY_S if retry_s is None else retry_s
    deadline = time.monotonic() + retry_s
    delay = 0.02
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as e:
            if _is_lock_error(e) and time.monotonic() < deadline:
                if marker is not None:
                    marker.touch()
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            if _is_lock_error(e):
                raise StoreError(f"{path}: locked by another writer for over {retry_s:.0f} s; wait for it to finish "
                                 "(an evaluation or sweep?) and retry") from None
            denied = any(w in str(e).lower() for w in ("permission denied", "read-only"))
            if not read_only and (denied or not os.access(path if path.exists() else path.parent, os.W_OK)):
                raise StoreError(f"{path}: cannot write here (read-only); make {path.parent} writable, or point "
                                 "EXPLORER_DB / EXPLORER_REVIEWS_DB (dashboard) or --db (CLI) at a writable "
                                 "path") from None
            raise StoreError(f"{path}: cannot open ({e}); if the file is corrupt, move it aside: the evaluation "
                             "store is rebuilt by `python -m explorer eval`") from None
        except duckdb.Error as e:
            raise StoreError(f"{path}: not a readable DuckDB store ({str(e).splitlines()[0]}); move it aside and "
                             "rebuild it with `python -m explorer eval`") from None


_VERSION_SQL = {None: "select max(version) from schema_version", "ev": "select max(version) from ev.schema_version",
                "rv": "select max(version) from rv.schema_version"}


def schema_version(con: duckdb.DuckDBPyConnection, schema: str | None = None) -> int:
    try:
        row = con.execute(_VERSION_SQL[schema]).fetchone()
    except duckdb.CatalogException:
        return 0
    return int(row[0] or 0)


def migrate(con: duckdb.DuckDBPyConnection, which: str) -> int:
    """Apply forward migrations of store `which` (eval | reviews) in one transaction; refuse a file
    from newer code."""
    steps = MIGRATIONS[which]
    con.execute("create table if not exists schema_version (version integer, applied_at timestamp default current_timestamp)")
    current = schema_version(con)
    if current > len(steps):
        raise StoreError(f"store schema v{current} is newer than this code understands (v{len(steps)}); "
                         "update the code (git pull) or use a store written by this version")
    if current < len(steps):
        con.execute("begin transaction")
        try:
            for version in range(current + 1, len(steps) + 1):
                con.execute((SQL_DIR / steps[version - 1]).read_text())
                con.execute("insert into schema_version (version) values ($version)", {"version": version})
            con.execute("commit")
        except Exception:
            con.execute("rollback")
            raise
    return len(steps)


@contextmanager
def writer(which: str = "eval", path: Path | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short write transaction on one store file (`which`: eval | reviews): all of it commits, or none."""
    path = Path(path or (EVAL_DB if which == "eval" else REVIEWS_DB))
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _connect(path, read_only=False)
    try:
        migrate(con, which)
        con.execute("begin transaction")
        try:
            yield con
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    finally:
        con.close()


def ensure(which: str, path: Path | None = None) -> None:
    with writer(which, path):
        pass


@contextmanager
def reader(eval_path: Path | None = None, reviews_path: Path | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only view of both stores: tables of eval as ev.*, of reviews as rv.*, plus the shared
    views of sql/views.sql. Reading never creates a file: a store not written yet reads as empty."""
    # the reviews store lives next to its evaluation store unless given explicitly
    reviews_path = Path(reviews_path or (Path(eval_path).with_name(REVIEWS_DB.name) if eval_path else REVIEWS_DB))
    eval_path = Path(eval_path or EVAL_DB)
    con = _idle_reader()
    reusable = False
    try:
        deadline = time.monotonic() + LOCK_RETRY_S
        for alias, p, which in (("ev", eval_path, "eval"), ("rv", reviews_path, "reviews")):
            _attach(con, alias, p, which, deadline)
        con.execute(sql("views"))
        yield con
        reusable = True
    finally:
        _release_reader(con, reusable)


# Opening a DuckDB instance costs ~12 ms, attaching a store file ~1-2 ms (bench/NOTES.md, "Dashboard at
# scale"): a page's first read after a commit opens several readers, so a reader reuses an idle in-memory
# instance. The store files are attached for one reader only and detached when it ends (a held read lock
# would block the writer); an instance serves one reader at a time, and one left in an unknown state by an
# error is closed, never reused.
_IDLE_READERS: queue.SimpleQueue = queue.SimpleQueue()


def _idle_reader() -> duckdb.DuckDBPyConnection:
    try:
        return _IDLE_READERS.get_nowait()
    except queue.Empty:
        return duckdb.connect(":memory:")


def _release_reader(con: duckdb.DuckDBPyConnection, reusable: bool) -> None:
    if reusable:
        try:
            con.execute("use memory")
            for alias in ("ev", "rv"):
                con.execute(_ALIAS_SQL[alias]["detach"])
            _IDLE_READERS.put(con)
            return
        except duckdb.Error:
            pass
    con.close()


def _attach(con: duckdb.DuckDBPyConnection, alias: str, path: Path, which: str, deadline: float) -> None:
    if not path.exists():
        con.execute(_ALIAS_SQL[alias]["attach_empty"])
        con.execute(_ALIAS_SQL[alias]["use"])  # the migrations name their tables unqualified
        migrate(con, which)
        con.execute("use memory")
        return
    if not path.is_file():
        raise StoreError(f"{path}: is not a store file (a directory?); pass the path of a .duckdb file")
    _hold_back_for_writer(path, deadline)
    while True:
        try:
            con.execute(_ALIAS_SQL[alias]["attach"], [str(path)])
            break
        except duckdb.Error as e:
            if _is_lock_error(e) and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise StoreError(f"{path}: cannot open for reading ({str(e).splitlines()[0]}); if it is corrupt, "
                             "move it aside and rebuild with `python -m explorer eval`") from None
    v = schema_version(con, alias)
    if v > len(MIGRATIONS[which]):
        raise StoreError(f"{path}: store schema v{v} is newer than this code understands "
                         f"(v{len(MIGRATIONS[which])}); update the code")
    if v < len(MIGRATIONS[which]):  # written by older code: bring the file forward once, then read it
        con.execute(_ALIAS_SQL[alias]["detach"])
        try:
            ensure(which, path)
        except (StoreError, duckdb.Error) as e:
            raise StoreError(f"{path}: store schema v{v} needs upgrading to v{len(MIGRATIONS[which])}, which "
                             f"failed ({str(e).splitlines()[0]}); make the file writable and retry") from None
        _attach(con, alias, path, which, deadline)


# The read connection's catalogs: ev (evaluation store), rv (reviews store); a store not written yet is
# an empty in-memory catalog with the same tables.
_ALIAS_SQL = {alias: {"attach": f"attach ? as {alias} (read_only)", "attach_empty": f"attach ':memory:' as {alias}",
                      "use": f"use {alias}", "detach": f"detach {alias}"} for alias in ("ev", "rv")}


def compact(path: Path) -> tuple[int, int]:
    """Rewrite a store file without the free blocks that batch-by-batch commits leave behind (each evaluated
    checkpoint adds ~1 MB of rows and several MB of free space), so the shipped store stays small. Every
    table is copied whole into a new file, which then replaces the old by one rename: a kill leaves the old
    store as it was. Returns the file size (bytes) before and after."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: no store file to compact")
    before = path.stat().st_size
    con = duckdb.connect(":memory:")
    try:
        try:  # attached read-write: the writers' lock, so no evaluation commits meanwhile
            con.execute("attach ? as source", [str(path)])
        except duckdb.Error as e:
            raise StoreError(f"{path}: cannot compact now ({str(e).splitlines()[0]}); wait for the writer (an "
                             "evaluation?) to finish and retry") from None
        with atomic_file(path) as tmp:  # renamed onto the store while the lock is still held
            con.execute("attach ? as compacted", [str(tmp)])
            con.execute("copy from database source to compacted")
            con.execute("detach compacted")
    finally:
        con.close()
    return before, path.stat().st_size


def stamp(eval_path: Path | None = None, reviews_path: Path | None = None) -> tuple:
    """The state of both store files (size and mtime of each file and of its write-ahead log): every
    commit changes it, and reading it costs four stat calls. The dashboard keys its cached query
    results on it, so a slider change reruns no SQL while nothing was written, and a commit is seen on
    the next rerun."""
    reviews_path = Path(reviews_path or (Path(eval_path).with_name(REVIEWS_DB.name) if eval_path else REVIEWS_DB))
    eval_path = Path(eval_path or EVAL_DB)
    out = []
    for p in (eval_path, reviews_path, eval_path.with_name(eval_path.name + ".wal"),
              reviews_path.with_name(reviews_path.name + ".wal")):
        try:
            st = p.stat()
            out.append((st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


def query(name: str, params: dict | list | None = None, eval_path: Path | None = None,
          reviews_path: Path | None = None, con: duckdb.DuckDBPyConnection | None = None) -> pd.DataFrame:
    """Run explorer/sql/<name>.sql against both stores with bound parameters → DataFrame. Pass `con`
    (from `reader`) to run several queries on one connection: each reader attaches both files anew."""
    if con is not None:
        return con.execute(sql(name), params or {}).df()
    with reader(eval_path, reviews_path) as con:
        return con.execute(sql(name), params or {}).df()
