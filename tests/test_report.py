"""`python -m explorer report --json`: the keys scripts outside the project rely on."""
import json
import subprocess
import sys

import pytest

from explorer.report import build_report, format_report


def test_report_json_contract(eval_db):
    rep = build_report(judge="keyword", db=eval_db)
    assert {"checkpoints", "judges", "suites"} <= set(rep)
    ids = {c["id"] for c in rep["checkpoints"]}
    assert ids == {"base", "s0-h0", "s0-h1", "s1-h0", "s1-h1"}
    for c in rep["checkpoints"]:
        for key in ("id", "lambda_safe", "lambda_helpful", "is_base", "violation_rate", "violation_ci",
                    "over_refusal_rate", "over_refusal_ci", "n_harmful", "n_benign"):
            assert key in c
        lo, hi = c["violation_ci"]
        assert lo <= c["violation_rate"] <= hi
        assert c["n_harmful"] == 12 and c["n_benign"] == 12
    by = {c["id"]: c for c in rep["checkpoints"]}
    assert by["base"]["is_base"] and not by["s1-h0"]["is_base"]
    # conftest: s1-h0 refuses 10 of 12 harmful prompts → violation 2/12
    assert by["s1-h0"]["violation_rate"] == pytest.approx(2 / 12)
    assert {"name", "agreement", "kappa", "n_labels"} <= set(rep["judges"][0])
    assert {"name", "split", "n"} <= set(rep["suites"][0])
    assert "s1-h0" in format_report(rep)


def test_report_cli_json(eval_db):
    r = subprocess.run([sys.executable, "-m", "explorer", "report", "--json", "--judge", "keyword", "--db", str(eval_db)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["checkpoints"]) == 5


@pytest.fixture(scope="module")
def store_with_unseen_and_attacks(eval_db, tmp_path_factory):
    """The conftest store plus three prompts of an unseen suite that every checkpoint answers (violations)
    and an attack set that every checkpoint refuses."""
    import shutil

    import pandas as pd

    from bench.synthetic_store import write_answers
    from conftest import REFUSAL
    from explorer import queries, store
    from explorer.judges import KeywordJudge

    db = tmp_path_factory.mktemp("unseen") / "eval.duckdb"
    shutil.copy(eval_db, db)
    extra = pd.DataFrame([
        {"id": f"hb-{i}", "suite": "harmbench", "source": "t", "category": "violence", "kind": "harmful",
         "expected": "refuse", "split": "test", "text": f"unseen harmful {i}", "grp": f"hb-{i}"} for i in range(3)] + [
        {"id": f"attack:stan:h{i}", "suite": "attack:stan", "source": "t", "category": "violence", "kind": "harmful",
         "expected": "refuse", "split": "attack", "text": f"STAN says {i}", "grp": f"a{i}"} for i in range(2)])
    key = queries.gen_key(db)
    cps = queries.checkpoints(db)
    with store.writer("eval", db) as con:
        con.register("incoming_prompts", extra)
        con.execute(store.sql("insert_prompts"))
        for c in cps.itertuples():
            write_answers(con, c, extra, ["Sure, here it is."] * 3 + [REFUSAL] * 2, key, [KeywordJudge()], n_tokens=5)
    return db


def test_seen_unseen_and_attack_rates(eval_db, store_with_unseen_and_attacks):
    before = {c["id"]: c for c in build_report(judge="keyword", db=eval_db)["checkpoints"]}
    rep = build_report(judge="keyword", db=store_with_unseen_and_attacks)
    for c in rep["checkpoints"]:
        old = before[c["id"]]
        assert c["seen_violation_rate"] == old["violation_rate"] and c["seen_n_harmful"] == 12
        assert c["unseen_violation_rate"] == 1.0 and c["unseen_n_harmful"] == 3
        assert c["n_harmful"] == 15  # the headline counts every test prompt
        assert c["violation_rate"] == pytest.approx((old["violation_rate"] * 12 + 3) / 15)
        assert c["attack_violation_rate"] == 0.0 and c["attack_n_harmful"] == 2
    assert {(a["template"], a["violation_rate"], a["n"]) for a in rep["attacks"]} == {("stan", 0.0, 2)}
    text = format_report(rep)
    assert "Seen vs unseen suites" in text and "violation under attack" in text


def test_judges_carry_per_class_scores(eval_db):
    rep = build_report(judge="keyword", db=eval_db)
    held = next(j for j in rep["judges"] if j["name"] == "keyword" and j["dataset"] == "heldout_project_labels")
    # conftest's confusion: rows truth [[20,1,3],[2,4,1],[1,0,18]] → full refusal precision 18/22, recall 18/19
    assert held["per_class"]["full_refusal"] == {"precision": 18 / 22, "recall": 18 / 19, "n": 19}
    assert held["per_class"]["any_refusal"]["n"] == 26


def test_map_switches_to_unseen_rates(app_env, store_with_unseen_and_attacks, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("EXPLORER_DB", str(store_with_unseen_and_attacks))
    at = AppTest.from_file("../app.py", default_timeout=60).run()
    at.sidebar.selectbox(key="judge").select("keyword").run()
    radio = next(r for r in at.radio if r.label == "Rates measured on")
    assert radio.options == ["every test prompt", "suites training drew from (in-distribution)",
                             "suites training never saw"]
    at.slider[0].set_value(0.4).run()
    assert "**s1-h0**" in at.success[0].value  # (2 + 3) / 15 violations over every test prompt
    radio.set_value("unseen_").run()  # every checkpoint leaks all 3 unseen prompts
    assert not at.exception, at.exception
    assert "No checkpoint has a violation rate of at most 40%" in at.warning[0].value


def test_trend_measures_the_frontier_s_largest_step_on_the_main_grid():
    from explorer.report import spearman_trend

    def cp(ls, v, o, pareto, kind="grid"):
        return {"lambda_safe": ls, "lambda_helpful": 0.1, "violation_rate": v, "over_refusal_rate": o,
                "pareto": pareto, "kind": kind, "is_base": kind == "base"}

    cps = [cp(0, 0.9, 0.02, True, "base"), cp(1, 0.5, 0.1, True), cp(2, 0.3, 0.2, True), cp(3, 0.1, 0.6, True),
           cp(3, 0.2, 0.7, False), cp(9, 0.95, 0.9, False, "variant")]
    t = spearman_trend(cps)
    assert t["pareto_max_violation_gap"] == pytest.approx(0.4)  # 0.5 → 0.9
    assert t["spearman_violation_vs_lambda_safe"] < -0.9  # the variant at λ_safe 9 is not on the main grid


def test_trend_gives_rho_within_each_lambda_helpful_column_where_pooling_hides_it():
    from explorer.report import spearman_trend

    def cp(ls, lh, v):
        return {"lambda_safe": ls, "lambda_helpful": lh, "violation_rate": v, "over_refusal_rate": 1 - v,
                "pareto": False, "kind": "grid", "is_base": False}

    # violation falls with λ_safe in every column, but λ_helpful sets the level: pooled ρ is weak
    cps = [cp(ls, 0.0, v) for ls, v in [(0, 0.4), (1, 0.3), (2, 0.2), (3, 0.1)]]
    cps += [cp(ls, 0.3, v) for ls, v in [(0, 0.95), (1, 0.9), (2, 0.85), (3, 0.8)]]
    cps += [cp(0, 0.1, 0.5), cp(1, 0.1, 0.6)]  # two λ_safe values: too few for a column ρ
    t = spearman_trend(cps)
    assert t["spearman_violation_vs_lambda_safe"] > -0.5
    assert t["spearman_violation_vs_lambda_safe_by_helpful"] == {"0": pytest.approx(-1.0), "0.3": pytest.approx(-1.0)}
    assert t["spearman_violation_vs_lambda_safe_within_helpful"] == pytest.approx(-1.0)
