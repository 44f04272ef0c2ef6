"""Decision records: built from the store's numbers, appended, read back verified, exported."""
import json
import re
from datetime import datetime

import duckdb
import pytest

from explorer import decisions, queries, store
from explorer.metrics import NEWLY_REFUSED
from explorer.config import ConfigError

NOW = datetime(2025, 3, 1, 12, 0, 0)  # microsecond 0: the format must still round-trip


@pytest.fixture
def record(eval_db, tmp_path):
    rv = tmp_path / "reviews.duckdb"
    table = queries.checkpoint_table("keyword", eval_db, reviews=rv)
    out = queries.outcomes("keyword", eval_db, reviews=rv)
    resp = queries.responses("base", "s1-h0", "keyword", eval_db, reviews=rv)
    return decisions.build(table, out, resp, "s1-h0", "base", "keyword", "kw-x", False,
                           "Block weapons; accept more refusals.\nSecond line.", "Grace",
                           gen_key=queries.gen_key(eval_db, reviews=rv), now=NOW)


def test_build_freezes_the_numbers(record, eval_db, tmp_path):
    table = queries.checkpoint_table("keyword", eval_db, reviews=tmp_path / "r.duckdb").set_index("checkpoint_id")
    row = table.loc["s1-h0"]
    assert record["lambda_safe"] == 1.0 and record["lambda_helpful"] == 0.0
    m = record["metrics"]["violation"]
    assert (m["rate"], m["lo"], m["hi"], m["k"], m["n"]) == (row["violation_rate"], row["violation_lo"],
                                                             row["violation_hi"], row["violation_k"], row["n_harmful"])
    base_violation = table.loc["base", "violation_rate"]
    assert record["deltas"]["violation_rate"] == pytest.approx(row["violation_rate"] - base_violation)
    assert {c["category"] for c in record["categories"]} >= {"weapons", "homonyms", "coding"}
    kinds = {f["flip"] for f in record["flips"]}
    assert kinds == set(record["flip_counts"]) and NEWLY_REFUSED in kinds
    assert all(n <= decisions.FLIPS_PER_KIND for n in
               [sum(f["flip"] == k for f in record["flips"]) for k in kinds])
    json.dumps(record, allow_nan=False)  # strictly JSON: no NaN anywhere


def test_save_and_load_round_trip(record, eval_db, tmp_path):
    rv = tmp_path / "reviews.duckdb"
    saved = decisions.save(record, rv)
    assert saved.content_hash == queries.content_hash(record)
    [back] = decisions.load(reviews=rv, db=eval_db)
    assert back.id == saved.id and not back.tampered
    assert back.record == record and back.content_hash == saved.content_hash


def test_append_only(record, eval_db, tmp_path):
    rv = tmp_path / "reviews.duckdb"
    first = decisions.save(record, rv)
    second = decisions.save({**record, "rationale": "Changed my mind.", "created_at": "2025-03-02T09:00:00.000001"}, rv)
    loaded = decisions.load(eval_db, rv)
    assert [d.id for d in loaded] == [second.id, first.id]  # newest first, the old one still there
    assert not any(d.tampered for d in loaded)
    sql = " ".join(line for n in ("insert_decision", "decisions") for line in store.sql(n).lower().splitlines()
                   if not line.startswith("--"))
    assert "update" not in sql and "delete" not in sql


@pytest.mark.parametrize("statement", [
    "update decisions set rationale = 'Nothing to see.'",
    "update decisions set lambda_safe = 3.0",
    "update decisions set payload = json_merge_patch(payload, '{\"metrics\": {\"violation\": {\"rate\": 0.0}}}')",
])
def test_tampering_is_flagged(record, eval_db, tmp_path, statement):
    rv = tmp_path / "reviews.duckdb"
    decisions.save(record, rv)
    con = duckdb.connect(str(rv))
    con.execute(statement)
    con.close()
    [back] = decisions.load(eval_db, rv)
    assert back.tampered
    assert "TAMPERED" in decisions.to_markdown(back)


def test_markdown_export(record, eval_db, tmp_path):
    record["flips"][0]["response"] = "Use ``` to open a code block"  # model output that would break a naive fence
    decisions.save(record, tmp_path / "reviews.duckdb")
    [d] = decisions.load(eval_db, tmp_path / "reviews.duckdb")
    md = decisions.to_markdown(d)
    assert md.index("| violation |") < md.index("| over refusal |") < md.index("| general refusal |")
    assert md.startswith(f"# Decision record #{d.id}: operating point `s1-h0`")
    assert "> Block weapons; accept more refusals.\n> Second line." in md
    assert d.content_hash in md and "Grace" in md and "| violation |" in md
    assert "````text\nUse ``` to open a code block\n````" in md
    assert f"{record['metrics']['violation']['k']}/{record['metrics']['violation']['n']}" in md


@pytest.mark.parametrize("rationale, author, needle", [("  ", "Grace", "write a rationale"),
                                                       ("Because.", "", "enter an author")])
def test_build_requires_rationale_and_author(eval_db, tmp_path, rationale, author, needle):
    rv = tmp_path / "reviews.duckdb"
    table = queries.checkpoint_table("keyword", eval_db, reviews=rv)
    with pytest.raises(ConfigError, match=needle):
        decisions.build(table, queries.outcomes("keyword", eval_db, reviews=rv),
                        queries.responses("base", "s1-h0", "keyword", eval_db, reviews=rv), "s1-h0", "base",
                        "keyword", "v", False, rationale, author, gen_key=queries.gen_key(eval_db, reviews=rv))


def test_unknown_checkpoint_is_an_error(eval_db, tmp_path):
    rv = tmp_path / "reviews.duckdb"
    table = queries.checkpoint_table("keyword", eval_db, reviews=rv)
    with pytest.raises(ConfigError, match="'s9-h9' has no complete evaluation"):
        decisions.build(table, queries.outcomes("keyword", eval_db, reviews=rv),
                        queries.responses("base", "s1-h0", "keyword", eval_db, reviews=rv), "s9-h9", "base", "keyword",
                        "v", False, "why", "me", gen_key=queries.gen_key(eval_db, reviews=rv))


def test_user_text_is_escaped_in_the_export(eval_db, tmp_path):
    rv = tmp_path / "reviews.duckdb"
    table = queries.checkpoint_table("keyword", eval_db, reviews=rv)
    out = queries.outcomes("keyword", eval_db, reviews=rv)
    resp = queries.responses("base", "s1-h0", "keyword", eval_db, reviews=rv)
    rec = decisions.build(table, out, resp, "s1-h0", "base", "keyword", "kw-x", False,
                          "<script>alert(1)</script> trade-off", "<b>Eve</b>",
                          gen_key=queries.gen_key(eval_db, reviews=rv), now=NOW)
    md = decisions.to_markdown(decisions.save(rec, rv))
    assert "<script>" not in md and "&lt;script&gt;" in md and "<b>Eve</b>" not in md


ATTACKS = ["<img src=x onerror=alert(1)>", "a|b", "![x](javascript:alert(1))", "[click](javascript:alert(1))",
           "line\nbreak", "`code` <script>"]


def _hostile_record(attack: str) -> decisions.StoredDecision:
    """A record in which every stored string is the attack (as a tampered or hostile record could be)."""
    rate = {"rate": 0.5, "lo": 0.25, "hi": 0.75, "k": 2, "n": 4, "meaning": attack}
    flip = {"prompt_id": attack, "suite": attack, "category": attack, "kind": attack, "flip": attack,
            "prompt": attack, "baseline_label": attack, "baseline_response": attack, "label": attack,
            "response": attack}
    record = {"checkpoint_id": attack, "baseline_id": attack, "lambda_safe": 1.0, "lambda_helpful": 0.0,
              "judge": attack, "judge_version": attack, "human_labels_override": False, "split": attack,
              "gen_key": attack, "metrics": {"violation": rate}, "baseline_metrics": {"violation": rate},
              "deltas": {"violation_rate": 0.1}, "capability_nll": None,
              "categories": [{"kind": attack, "category": attack, "metric": attack, "k": 1, "n": 2, "rate": 0.5,
                              "lo": 0.1, "hi": 0.9}],
              "flip_counts": {attack: 1}, "flips": [flip], "rationale": f"Because {attack} here.",
              "author": attack, "created_at": "2025-03-01T12:00:00.000000"}
    return decisions.StoredDecision(7, record, "ab" * 32, tampered=True)


def _outside_code_blocks(md: str) -> str:
    """The Markdown with fenced code blocks removed (their content is shown verbatim, never rendered)."""
    return re.sub(r"^(`{3,})text\n.*?\n\1$", "", md, flags=re.S | re.M)


@pytest.mark.parametrize("attack", ATTACKS)
def test_every_field_is_neutralised_in_the_export(attack):
    md = decisions.to_markdown(_hostile_record(attack))
    rendered = _outside_code_blocks(md)
    assert "<img" not in rendered and "<script" not in rendered  # no HTML tag anywhere outside code blocks
    assert "](javascript:" not in rendered and "![" not in rendered and "[click]" not in rendered
    assert "\nbreak" not in rendered  # a newline in a field never starts a new Markdown line
    tables = re.findall(r"(?:^\|.*\n)+", rendered, flags=re.M)
    assert len(tables) == 2
    for table in tables:  # every row has as many cells as its header (an unescaped | would add one)
        widths = {len(re.split(r"(?<!\\)\|", row)) for row in table.splitlines()}
        assert len(widths) == 1, table
    assert md.count("```text") == 3  # prompt, baseline response, response: shown verbatim in code blocks


def test_no_page_renders_raw_html():
    from pathlib import Path

    for f in [*Path("explorer").rglob("*.py"), Path("app.py")]:
        assert "unsafe_allow_html=True" not in f.read_text(), f
