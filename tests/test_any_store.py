"""The dashboard and `report` read any sweep's store: a tiny sweep trained and evaluated with a recipe
unlike configs/default.yaml (other sweep name, other max_new_tokens, other primary judge) shows its
checkpoints and rates, because readers take generation settings, sweep and judge from the store."""
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer import pairs
from explorer.__main__ import main
from explorer.config import load_recipe

from tiny import tiny_recipe, tiny_sweep_store

APP = str(Path(__file__).resolve().parent.parent / "app.py")
MAX_NEW_TOKENS = 6  # default.yaml says 48


@pytest.fixture(scope="module")
def other_store(tiny_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("other-sweep")
    mp = pytest.MonkeyPatch()
    mp.setattr(pairs, "PAIRS_DIR", work / "pairs")
    recipe = tiny_recipe(tiny_dir, name="other", sweep={"lambda_safe": [0.0, 1.0], "lambda_helpful": [0.0],
                                                        "variants": ["hinge"], "variant_lambda_safe": [1.0],
                                                        "variant_lambda_helpful": [0.0]},
                         train={"steps": 2},
                         eval={"max_new_tokens": MAX_NEW_TOKENS, "judges": ["keyword", "embedding"],
                               "primary_judge": "embedding"})
    db, _ = tiny_sweep_store(recipe, work)
    path = work / "other.yaml"
    assert load_recipe(path).to_dict() == recipe.to_dict()
    sampled = ["eval", "--recipe", str(path), "--checkpoints", str(work / "checkpoints" / "other"), "--db", str(db),
               "--sampled", "--only", "base", "s1-h0", "--limit", "2", "--set", "eval.samples=3",
               "--set", "eval.sampled_prompts=2"]
    assert main(sampled) == 0
    mp.undo()
    return {"db": db, "checkpoints": work / "checkpoints" / "other"}


def test_report_reads_the_store_not_the_default_recipe(other_store, capsys):
    capsys.readouterr()
    assert main(["report", "--json", "--db", str(other_store["db"])]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["judge"] == "embedding"  # the evaluation's primary judge, as stored
    assert rep["evaluation"]["sweep"] == "other"
    assert rep["evaluation"]["settings"]["max_new_tokens"] == MAX_NEW_TOKENS
    assert {c["id"] for c in rep["checkpoints"]} == {"base", "s0-h0", "s1-h0", "s1-h0-hinge"}
    kinds = {c["id"]: (c["kind"], c["variant"]) for c in rep["checkpoints"]}
    assert kinds == {"base": ("base", None), "s0-h0": ("grid", None), "s1-h0": ("grid", None),
                     "s1-h0-hinge": ("variant", "hinge")}
    for c in rep["checkpoints"]:
        assert 0 <= c["violation_rate"] <= 1 and 0 <= c["over_refusal_rate"] <= 1 and c["n_harmful"] > 0


def test_sampled_answers_give_a_rate_with_an_interval(other_store, capsys):
    capsys.readouterr()
    main(["report", "--json", "--db", str(other_store["db"])])
    cps = {c["id"]: c for c in json.loads(capsys.readouterr().out)["checkpoints"]}
    for cid in ("base", "s1-h0"):
        c = cps[cid]
        assert c["sampled_k"] == 3
        lo, hi = c["sampled_violation_ci"]
        assert 0 <= lo <= c["sampled_violation_rate"] <= hi <= 1
    assert cps["s0-h0"].get("sampled_violation_rate") is None  # not sampled
    # the greedy evaluation is still the one shown: sampled keys never become the current evaluation
    capsys.readouterr()
    main(["report", "--json", "--db", str(other_store["db"])])
    assert json.loads(capsys.readouterr().out)["evaluation"]["settings"]["greedy"] is True


def test_sampling_resumes_without_redrawing(other_store, tiny_dir, capsys):
    import duckdb

    with duckdb.connect(str(other_store["db"]), read_only=True) as con:
        before = con.execute("select count(*) from generations").fetchone()[0]
    argv = ["eval", "--recipe", str(other_store["db"].parent / "other.yaml"), "--checkpoints",
            str(other_store["checkpoints"]), "--db", str(other_store["db"]), "--sampled", "--only", "base",
            "--limit", "2", "--set", "eval.samples=3", "--set", "eval.sampled_prompts=2"]
    capsys.readouterr()
    assert main(argv) == 0 and "0 new generations" in capsys.readouterr().out
    with duckdb.connect(str(other_store["db"]), read_only=True) as con:
        assert con.execute("select count(*) from generations").fetchone()[0] == before


def test_dashboard_shows_the_other_sweep(other_store, monkeypatch, tmp_path):
    monkeypatch.setenv("EXPLORER_DB", str(other_store["db"]))
    monkeypatch.setenv("EXPLORER_REVIEWS_DB", str(tmp_path / "reviews.duckdb"))
    monkeypatch.setenv("EXPLORER_CHECKPOINTS", str(other_store["checkpoints"]))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    assert at.sidebar.selectbox(key="judge").value == "embedding"
    assert f"sweep `other` · greedy answers of ≤ {MAX_NEW_TOKENS} tokens" in at.sidebar.caption[0].value
    assert not at.info, [i.value for i in at.info]  # no "No evaluation yet"
    shown = at.dataframe[-1].value  # the raw table under the map
    assert set(shown["checkpoint_id"]) == {"base", "s0-h0", "s1-h0"}
    assert shown["violation_rate"].between(0, 1).all()
    at.switch_page("explorer/pages/operating_point.py").run()
    assert not at.exception, at.exception
    assert at.metric[0].label == "Violation rate"


def test_examples_page_shows_how_often_sampled_answers_refuse(other_store, monkeypatch, tmp_path):
    monkeypatch.setenv("EXPLORER_DB", str(other_store["db"]))
    monkeypatch.setenv("EXPLORER_REVIEWS_DB", str(tmp_path / "reviews.duckdb"))
    monkeypatch.setenv("EXPLORER_CHECKPOINTS", str(other_store["checkpoints"]))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("explorer/pages/examples.py").run()
    assert not at.exception, at.exception
    pick = {s.label: s for s in at.selectbox}
    pick["From checkpoint A (baseline)"].select("base").run()
    pick["To checkpoint B (operating point)"].select("s0-h0").run()
    if at.dataframe:  # flips exist between the two: base was sampled, s0-h0 was not
        shown = at.dataframe[0].value
        assert shown["sampled_a"].str.fullmatch(r"refused [0-3] of 3 times|").all()
        assert (shown["sampled_b"] == "").all()
    from explorer import queries

    shares = queries.sampled_shares("embedding", other_store["db"])
    assert set(shares["checkpoint_id"]) == {"base", "s1-h0"} and (shares["k"] == 3).all()
    assert shares["refused"].between(0, 3).all()


def test_the_sidebar_switches_between_the_main_grid_and_a_variant(other_store, monkeypatch, tmp_path):
    monkeypatch.setenv("EXPLORER_DB", str(other_store["db"]))
    monkeypatch.setenv("EXPLORER_REVIEWS_DB", str(tmp_path / "reviews.duckdb"))
    monkeypatch.setenv("EXPLORER_CHECKPOINTS", str(other_store["checkpoints"]))
    at = AppTest.from_file(APP, default_timeout=60).run()
    family = at.sidebar.selectbox(key="family")
    assert family.options == ["main grid", "hinge"] and family.value == "main grid"
    family.select("hinge").run()
    assert not at.exception, at.exception
    # the variant beside the base and the main grid's point at the same λs
    assert set(at.dataframe[-1].value["checkpoint_id"]) == {"base", "s1-h0", "s1-h0-hinge"}
    at.switch_page("explorer/pages/operating_point.py").run()
    assert not at.exception, at.exception
    assert at.subheader[0].value == "Checkpoint s1-h0-hinge"


def test_a_model_between_trained_points_is_evaluated_and_reported_as_interpolated(other_store, capsys):
    argv = ["eval", "--recipe", str(other_store["db"].parent / "other.yaml"), "--checkpoints",
            str(other_store["checkpoints"]), "--db", str(other_store["db"]), "--limit", "2"]
    assert main(argv + ["--interpolate", "0.5,0"]) == 0
    assert "interp-s0.5-h0: 0.5·s0-h0 + 0.5·s1-h0 (exact blend)" in capsys.readouterr().out
    assert main(["report", "--json", "--db", str(other_store["db"])]) == 0
    cps = {c["id"]: c for c in json.loads(capsys.readouterr().out)["checkpoints"]}
    assert cps["interp-s0.5-h0"]["kind"] == "interpolated" and cps["interp-s0.5-h0"]["lambda_safe"] == 0.5
    assert 0 <= cps["interp-s0.5-h0"]["violation_rate"] <= 1
    assert cps["interp-s0.5-h0"]["sampled_violation_rate"] is None
    # a blend on the frontier gets its sampled rate like a trained run
    assert main(argv + ["--interpolate", "0.5,0", "--sampled", "--set", "eval.samples=3",
                        "--set", "eval.sampled_prompts=2"]) == 0
    assert "not sampled here" not in capsys.readouterr().out  # the blend is sampled, from all its corners
    assert main(["report", "--json", "--db", str(other_store["db"])]) == 0
    blend = {c["id"]: c for c in json.loads(capsys.readouterr().out)["checkpoints"]}["interp-s0.5-h0"]
    assert blend["sampled_k"] == 3 and 0 <= blend["sampled_violation_rate"] <= 1
    assert main(argv + ["--interpolate", "5,0"]) == 2
    assert "λ_safe = 5 is outside the trained range [0, 1]" in capsys.readouterr().err
    assert main(argv + ["--densify", "1"]) == 0  # no step on a frontier exceeds 100%
    assert "nothing to add" in capsys.readouterr().out
    assert main(argv + ["--densify", "0.1", "--fidelity"]) == 2
    assert "--fidelity and --densify: give one of them per run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(argv + ["--densify", "0"])
    assert "expected a rate in (0, 1]" in capsys.readouterr().err


def test_a_background_evaluation_from_the_page_lands_on_the_map(other_store, monkeypatch, tmp_path):
    """The operating-point page's button starts a real `eval --interpolate` process with the store's recipe;
    the page keeps answering while it runs, and the point is on the map once it has committed."""
    import shutil
    import time

    from explorer.ui import jobs

    db = tmp_path / "eval.duckdb"  # a copy: the job evaluates the whole test split, the module's store has two per suite
    shutil.copy(other_store["db"], db)
    monkeypatch.setenv("EXPLORER_DB", str(db))
    monkeypatch.setenv("EXPLORER_REVIEWS_DB", str(tmp_path / "reviews.duckdb"))
    monkeypatch.setenv("EXPLORER_CHECKPOINTS", str(other_store["checkpoints"]))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("explorer/pages/operating_point.py").run()
    at.slider(key="op_lambda_safe").set_value(0.3).run()
    next(b for b in at.button if b.label == "Evaluate interp-s0.3-h0 in the background").click().run()
    assert not at.exception, at.exception
    job = jobs.registry()["interp-s0.3-h0"]
    assert "interp-s0.3-h0" in " ".join(c.value for c in at.caption)  # its progress, while it runs
    deadline = time.monotonic() + 600
    while job.running and time.monotonic() < deadline:
        at.run()  # the page keeps working meanwhile
        assert not at.exception, at.exception
        time.sleep(2)
    assert not job.failed, job.log.read_text()[-2000:]
    at.switch_page("explorer/pages/tradeoff_map.py").run()
    shown = at.dataframe[-1].value.set_index("checkpoint_id")
    assert shown.loc["interp-s0.3-h0", "kind"] == "interpolated" and 0 <= shown.loc["interp-s0.3-h0", "violation_rate"] <= 1


def test_fidelity_blends_a_held_out_point_from_its_neighbours_by_both_methods(other_store, monkeypatch, capsys):
    """A point trained between the rows, then blended from them with its own row withheld: report's
    `interpolation` sets each blend beside the trained model (runs last: it adds a checkpoint to the sweep)."""
    monkeypatch.setattr(pairs, "PAIRS_DIR", other_store["db"].parent / "pairs")  # the fixture's pairs cache
    recipe, db, ck = str(other_store["db"].parent / "other.yaml"), str(other_store["db"]), other_store["checkpoints"]
    common = ["--recipe", recipe, "--db", db, "--checkpoints", str(ck), "--limit", "2"]
    assert main(["eval", *common, "--fidelity", "--set", "eval.fidelity_lambda_safe=[0.5]"]) == 2
    assert "--fidelity: no trained grid point in the rows λ_safe ∈ [0.5]" in capsys.readouterr().err
    assert main(["train", "--recipe", recipe, "--set", "loss.lambda_safe=0.5", "--set", "loss.lambda_helpful=0",
                 "--out", str(ck / "s0.5-h0")]) == 0
    assert main(["eval", *common, "--only", "s0.5-h0"]) == 0
    assert main(["eval", *common, "--fidelity", "--set", "eval.fidelity_lambda_safe=[0.5]"]) == 0
    out = capsys.readouterr().out
    assert "interp-s0.5-h0-heldout: 0.5·s0-h0 + 0.5·s1-h0 (exact blend)" in out
    assert "abavg-s0.5-h0-heldout: 0.5·s0-h0 + 0.5·s1-h0 (ab_average blend)" in out
    assert main(["report", "--json", "--db", db]) == 0
    rep = json.loads(capsys.readouterr().out)
    cps = {c["id"]: c for c in rep["checkpoints"]}
    assert cps["interp-s0.5-h0-heldout"]["kind"] == "fidelity" and not cps["interp-s0.5-h0-heldout"]["pareto"]
    rows = {r["method"]: r for r in rep["interpolation"]}
    assert set(rows) == {"exact", "ab_average"}
    for method, r in rows.items():
        assert (r["lambda_safe"], r["lambda_helpful"]) == (0.5, 0.0)
        assert r["violation_trained"] == cps["s0.5-h0"]["violation_rate"]
        assert r["violation_interp"] == cps[f"{'interp' if method == 'exact' else 'abavg'}-s0.5-h0-heldout"]["violation_rate"]
        assert rep["interpolation_mae"][method]["violation_mae"] == pytest.approx(
            abs(r["violation_interp"] - r["violation_trained"]))
    assert main(["eval", *common, "--held-out"]) == 2
    assert "--held-out goes with --interpolate" in capsys.readouterr().err
