"""Integrity of the shipped numbers and of the CLI (issue 14): an imported suite lives beside the shipped
evaluation and never changes it; commands that would do nothing, or something else than asked, exit
with code 2 and one line naming the problem and the fix."""
import shutil
from pathlib import Path

import duckdb
import pytest

from explorer import store
from explorer.__main__ import main

ROOT = Path(__file__).resolve().parent.parent


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def shipped_copy(tmp_path_factory):
    """A copy of the shipped store (the original is never written by a test)."""
    db = tmp_path_factory.mktemp("shipped") / "eval.duckdb"
    shutil.copy(store.EVAL_DB, db)
    return db


def test_import_never_changes_the_shipped_report(shipped_copy, tmp_path, capsys):
    db = str(shipped_copy)
    rc, before, _ = run(capsys, "report", "--json", "--db", db)
    assert rc == 0 and '"id": "s3-h0"' in before
    suite = tmp_path / "jbb.csv"  # named like a shipped suite, with the id of a shipped prompt (jbb-000)
    suite.write_text("id,prompt,type,label\n000,How do I bake sourdough bread?,safe_contexts,safe\n")

    rc, _, err = run(capsys, "eval", "--suite-file", str(suite), "--db", db, "--only", "nosuch")
    assert rc == 2 and "--only: no checkpoint 'nosuch'" in err and "s3-h0" in err
    # one judge: the import judges nothing but its own answers (a fresh judge version would re-judge all)
    rc, out, _ = run(capsys, "eval", "--suite-file", str(suite), "--db", db, "--only", "base", "--judge", "keyword")
    assert rc == 0 and "1 new generations, 1 new judgments" in out
    assert run(capsys, "report", "--json", "--db", db)[1] == before  # byte for byte

    rc, imported, _ = run(capsys, "report", "--json", "--db", db, "--split", "import:jbb", "--judge", "keyword")
    assert rc == 0 and '"id": "base"' in imported and '"n_benign": 1' in imported
    with duckdb.connect(db, read_only=True) as con:
        stored = con.execute("select suite, kind, text from prompts where id = 'jbb-000'").fetchone()
    assert stored[0] == "jbb" and stored[1] == "harmful" and "sourdough" not in stored[2]

    rc, out, _ = run(capsys, "eval", "--suite-file", str(suite), "--db", db, "--only", "base", "--judge", "keyword")
    assert rc == 0 and "0 new generations, 0 new judgments" in out  # re-import: idempotent
    suite.write_text("id,prompt,type,label\n000,How do I bake rye bread?,safe_contexts,safe\n")
    rc, _, err = run(capsys, "eval", "--suite-file", str(suite), "--db", db, "--only", "base", "--judge", "keyword")
    assert rc == 2 and "would replace stored ones" in err and "import:jbb:000" in err
    assert run(capsys, "report", "--json", "--db", db)[1] == before


@pytest.mark.parametrize("argv, needle", [
    (["eval", "--checkpoints", "/nonexistent/sweep"], "no sweep directory /nonexistent/sweep"),
    (["eval", "--set", "sweep.name=defualt"], "sweep.name 'defualt': no sweep directory"),
    (["eval", "--checkpoints", "README.md"], "is a file; give the sweep's directory"),
])
def test_eval_refuses_a_sweep_that_is_not_there(capsys, argv, needle, tmp_path):
    rc, out, err = run(capsys, *argv, "--db", str(tmp_path / "eval.duckdb"))
    assert rc == 2 and needle in err and "Traceback" not in err
    assert not (tmp_path / "eval.duckdb").exists()  # refused before anything was written


@pytest.mark.parametrize("limit", ["0", "-1", "two"])
def test_limit_must_be_a_positive_count(capsys, limit):
    with pytest.raises(SystemExit) as e:
        main(["eval", "--limit", limit])
    assert e.value.code == 2 and "--limit" in capsys.readouterr().err


def test_report_refusals(shipped_copy, capsys, tmp_path):
    rc, _, err = run(capsys, "report", "--db", str(shipped_copy), "--judge", "bogus")
    assert rc == 2 and "--judge 'bogus'" in err and "keyword" in err
    typo = tmp_path / "typo" / "dir" / "x.duckdb"
    rc, _, err = run(capsys, "report", "--db", str(typo))
    assert rc == 2 and "no evaluation store there" in err and not (tmp_path / "typo").exists()
    rc, _, err = run(capsys, "report", "--db", str(shipped_copy), "--split", "import:nothing")
    assert rc == 2 and "no such prompt set" in err and "test" in err


def test_debug_works_after_the_subcommand(tmp_path):
    from explorer.config import ConfigError

    with pytest.raises(ConfigError):  # the traceback is shown, not the one-line message
        main(["report", "--db", str(tmp_path / "missing.duckdb"), "--debug"])
    with pytest.raises(ConfigError):
        main(["--debug", "report", "--db", str(tmp_path / "missing.duckdb")])


def test_read_only_store_says_so(tmp_path, monkeypatch):
    def denied(*a, **k):
        raise duckdb.IOException("IO Error: Cannot open file \"x\": Permission denied")

    monkeypatch.setattr(duckdb, "connect", denied)
    with pytest.raises(store.StoreError, match="cannot write here .*EXPLORER_REVIEWS_DB") as e:
        store.ensure("reviews", tmp_path / "reviews.duckdb")
    assert "rebuil" not in str(e.value)


def test_reading_never_creates_a_store(tmp_path):
    from explorer import queries

    assert queries.judge_versions(tmp_path / "none" / "eval.duckdb") == {}
    assert not (tmp_path / "none").exists()
