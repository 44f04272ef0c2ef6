"""The dashboard in Streamlit's headless test runner (AppTest), on the small store from conftest.py."""
import json
from pathlib import Path

import duckdb
import pytest
from streamlit.testing.v1 import AppTest

from explorer import decisions, queries

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PAGES = {"tradeoff_map": "Trade-off map", "operating_point": "Operating point", "examples": "Concrete examples",
         "live": "Live generation", "judge_review": "Judges", "decision_record": "Decision record"}


def open_page(name: str, judge: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    if judge:
        at.sidebar.selectbox(key="judge").select(judge).run()
    at.switch_page(f"explorer/pages/{name}.py").run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    """Everything a reader sees as text on the page (markdown, alerts, metrics, captions)."""
    kinds = ("title", "subheader", "markdown", "success", "warning", "error", "info", "caption", "text")
    parts = [e.value for kind in kinds for e in getattr(at, kind)]
    parts += [f"{m.label}={m.value}" for m in at.metric]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders(app_env, name):
    at = open_page(name)
    assert at.title[0].value == PAGES[name]
    assert "No evaluation yet" not in texts(at)


@pytest.mark.parametrize("name", [p for p in PAGES if p != "live"])
def test_empty_store_shows_a_friendly_message(app_env, monkeypatch, tmp_path, name):
    monkeypatch.setenv("EXPLORER_DB", str(tmp_path / "empty.duckdb"))
    at = open_page(name)
    assert "No evaluation yet: run `python -m explorer eval`" in texts(at)


def frontier_params(at: AppTest) -> dict:
    """The parameter values of the page's first Vega-Lite chart (the frontier), as the browser gets them."""

    chart = at.get("vega_lite_chart")[0]
    return {p["name"]: p["value"] for p in json.loads(chart.proto.spec)["params"]}


def test_epsilon_slider_names_the_most_helpful_feasible_checkpoint(app_env):
    at = open_page("tradeoff_map", judge="keyword")
    at.slider[0].set_value(0.25).run()
    assert "**s1-h0**" in at.success[0].value  # only s1-h0 (2/12 violations) is under 25%
    at.slider[0].set_value(0.4).run()
    assert "**s1-h1**" in at.success[0].value  # s1-h1 (4/12) now feasible and refuses fewer benign prompts
    # the frontier's spec is cached; the slider reaches it through the chart's parameters
    assert frontier_params(at) == {"epsilon": 0.4, "best": "s1-h1"}
    at.slider[0].set_value(0.05).run()
    assert not at.success and "No checkpoint has a violation rate of at most 5%" in at.warning[0].value
    assert frontier_params(at) == {"epsilon": 0.05, "best": ""}
    assert not at.exception


def test_operating_point_sliders_change_the_numbers(app_env):
    at = open_page("operating_point", judge="keyword")
    assert "Checkpoint s1-h0" in texts(at)  # starts at the most helpful checkpoint under the default ε
    before = {m.label: m.value for m in at.metric}
    at.select_slider[0].set_value(0.0).run()
    at.select_slider[1].set_value(1.0).run()
    after = {m.label: m.value for m in at.metric}
    assert not at.exception
    assert after != before
    row = queries.checkpoint_table("keyword", Path(app_env["EXPLORER_DB"]),
                                   reviews=Path(app_env["EXPLORER_REVIEWS_DB"])).set_index("checkpoint_id").loc["s0-h1"]
    assert after["Violation rate"] == f"{row['violation_rate']:.1%}"
    assert after["Over-refusal rate"] == f"{row['over_refusal_rate']:.1%}"
    assert "Checkpoint s0-h1" in texts(at)


def test_judge_selector_switches_the_numbers(app_env):
    kw = {m.label: m.value for m in open_page("operating_point", judge="keyword").metric}
    emb = {m.label: m.value for m in open_page("operating_point", judge="embedding").metric}
    assert kw != emb


def test_examples_list_flips_and_filter(app_env):
    at = open_page("examples", judge="keyword")
    at.selectbox[0].select("base").run()
    at.selectbox[1].select("s1-h0").run()
    shown = at.dataframe[0].value
    assert len(shown) > 0 and set(shown["flip"]) >= {"newly refused (over-refusal)", "newly blocked"}
    at.multiselect[0].set_value(["newly refused (over-refusal)"]).run()
    assert set(at.dataframe[0].value["flip"]) == {"newly refused (over-refusal)"}
    assert not at.exception


def test_examples_read_every_change_but_fetch_texts_only_for_the_rows_shown(app_env, monkeypatch):
    from explorer import ui

    monkeypatch.setattr(ui, "SHOWN_FLIPS", 3)
    at = open_page("examples", judge="keyword")
    at.selectbox[0].select("base").run()
    at.selectbox[1].select("s1-h0").run()
    assert not at.exception, at.exception
    total = sum(int(m.value) for m in at.metric)
    assert total > 3 and f"Showing the first 3 of {total} changed prompts" in texts(at)
    shown = at.dataframe[0].value
    assert len(shown) == 3 and shown["text"].str.len().gt(0).all() and shown["response_b"].notna().all()


def test_relabel_is_stored_and_overrides_the_judge(app_env):
    at = open_page("judge_review", judge="keyword")
    at.text_input(key="reviewer").input("Ada")  # inside a form: submitted with the button below
    at.radio[0].set_value("full_refusal")
    at.button[0].click().run()
    assert not at.exception
    labels = queries.human_labels(Path(app_env["EXPLORER_DB"]), Path(app_env["EXPLORER_REVIEWS_DB"]))
    assert len(labels) == 1 and labels["reviewer"][0] == "Ada" and labels["label"][0] == "full_refusal"
    assert labels["created_at"].notna().all()
    assert "Saved:" in at.success[0].value


def test_relabel_without_a_name_is_refused(app_env):
    at = open_page("judge_review", judge="keyword")
    at.button[0].click().run()
    assert "enter your name" in at.error[0].value


def test_live_page_refuses_an_empty_prompt(app_env):
    at = open_page("live")
    assert at.multiselect[0].value == ["base"]  # no adapters in the test checkpoint folder
    at.button[0].click().run()
    assert "Type a prompt first" in at.warning[0].value
    assert not at.exception


def test_live_page_refuses_a_suite_prompt_over_the_limit(app_env, eval_db, tmp_path, monkeypatch):
    """The page's own length check (the text box has a limit of its own; a prompt from a suite does not)."""
    import shutil

    import pandas as pd

    from explorer import store

    db = tmp_path / "long.duckdb"
    shutil.copy(eval_db, db)
    long = {"id": "zz-long", "suite": "benign_sensitive", "source": "test", "category": "homonyms", "kind": "benign",
            "expected": "comply", "split": "test", "text": "Why? " * 500, "grp": "zz-long"}
    with store.writer("eval", db) as con:
        con.register("incoming_prompts", pd.DataFrame([long]))
        con.execute(store.sql("insert_prompts"))
    monkeypatch.setenv("EXPLORER_DB", str(db))
    at = open_page("live")
    at.radio[0].set_value("Pick one from a test suite").run()
    by_label = lambda label: next(s for s in at.selectbox if s.label == label)  # noqa: E731
    by_label("Kind of prompt").select("benign").run()
    by_label("Prompt from the suite").select("zz-long").run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert f"The prompt is {len(long['text'].strip())} characters; the limit is 2000" in at.error[0].value


def test_decision_save_round_trips_and_tampering_is_flagged(app_env):
    at = open_page("decision_record", judge="keyword")
    at.button[0].click().run()
    assert "write a rationale" in at.error[0].value  # nothing saved without a rationale
    at.text_area(key="rationale").input("Halve leaks; accept some over-refusal on medical questions.").run()
    at.text_input(key="author").input("Grace").run()
    at.button[0].click().run()
    assert not at.exception and "Saved decision #1" in at.success[0].value
    assert "verified" in set(at.dataframe[0].value["integrity"])
    [d] = decisions.load(Path(app_env["EXPLORER_DB"]), Path(app_env["EXPLORER_REVIEWS_DB"]))
    assert not d.tampered and d.record["author"] == "Grace" and d.record["judge"] == "keyword"
    assert d.record["rationale"].startswith("Halve leaks")

    con = duckdb.connect(str(app_env["EXPLORER_REVIEWS_DB"]))
    con.execute("update decisions set rationale = 'We never traded anything.'")
    con.close()
    at = open_page("decision_record")
    assert "TAMPERED" in set(at.dataframe[0].value["integrity"])
    assert "does not match its content hash" in at.error[0].value


def test_human_override_toggle_changes_the_rates(app_env):
    queries.add_human_label("s1-h0", "ben-00", "full_compliance", "Ada", reviews=Path(app_env["EXPLORER_REVIEWS_DB"]))
    at = open_page("operating_point", judge="keyword")
    at.select_slider[0].set_value(1.0).run()
    at.select_slider[1].set_value(0.0).run()
    assert {m.label: m.value for m in at.metric}["Over-refusal rate"] == "58.3%"  # 7 of 12 benign refused
    at.sidebar.toggle[0].set_value(True).run()
    assert {m.label: m.value for m in at.metric}["Over-refusal rate"] == "50.0%"  # the reviewer says one was answered


def test_unreadable_store_is_reported_not_crashed(app_env, monkeypatch, tmp_path):
    bad = tmp_path / "corrupt.duckdb"
    bad.write_bytes(b"not a duckdb file" * 100)
    monkeypatch.setenv("EXPLORER_DB", str(bad))
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    assert "cannot be read right now" in at.error[0].value


class FakeEngine:
    backend = "a fake engine"

    def __init__(self, stream):
        self.stream = stream


def test_live_generation_streams_and_judges(app_env, monkeypatch):
    """The live flow without the model: a fake engine and stream stand in for the base model."""
    from explorer import ui

    monkeypatch.setattr(ui, "engine", lambda checkpoints: FakeEngine(lambda *a: iter(["I'm sorry, ", "I can't help with that."])))
    at = open_page("live")
    at.radio[0].set_value("Pick one from a test suite").run()
    at.selectbox[0].select("harmful").run()
    at.button[0].click().run()
    assert not at.exception
    assert "I'm sorry, I can't help with that." in [t.value for t in at.text]
    assert any("keyword judge: full refusal" in m.value for m in at.markdown)  # st.badge renders as markdown


def test_live_generation_reports_a_prompt_too_long_for_the_model(app_env, monkeypatch):
    from explorer import generate, ui

    def too_long(*args):
        raise generate.PromptTooLong("prompt 0 is 9000 tokens; shorten it")
        yield  # a generator, like the real stream

    monkeypatch.setattr(ui, "engine", lambda checkpoints: FakeEngine(too_long))
    at = open_page("live")
    at.text_area[0].input("hello").run()
    at.button[0].click().run()
    assert "Prompt too long for the model: prompt 0 is 9000 tokens" in at.error[0].value


@pytest.fixture
def constrained_env(app_env, tmp_path, monkeypatch):
    """The small store plus one run trained to ε = 0.3 with its dual-ascent record (a copy, so other tests
    keep theirs)."""
    import shutil

    import pandas as pd
    from conftest import prompt_table
    from explorer import store
    from explorer.checkpoints import CheckpointInfo
    from explorer.config import DEFAULT_RECIPE, load_recipe
    from explorer.evaluate import gen_key, judge_rows, register
    from explorer.judges import KeywordJudge

    db = tmp_path / "constrained.duckdb"
    shutil.copy(app_env["EXPLORER_DB"], db)
    recipe = load_recipe(DEFAULT_RECIPE, {"sweep": {"target_violation": 0.3}, "loss": {"lambda_safe": 1.0}})
    trajectory = [{"step": 9, "violation_estimate": 0.6, "lambda_safe": 1.35},
                  {"step": 19, "violation_estimate": 0.4, "lambda_safe": 1.49}]
    info = CheckpointInfo("constrained-eps0.3-h0.3", tmp_path / "c", "fp-constrained", 1.0, 0.3,
                          {"base_fingerprint": "fp", "recipe": recipe.to_dict(), "lambda_trajectory": trajectory})
    prompts = prompt_table()
    register([info], prompts, recipe, db)
    rows = pd.DataFrame({"checkpoint_fp": info.fingerprint, "checkpoint_id": info.id, "prompt_id": prompts["id"],
                         "gen_key": gen_key(recipe), "n_tokens": 12, "seconds": 0.1,
                         "response": ["I'm sorry, but I can't help with that." if i % 3 else "Sure, here it is."
                                      for i in range(len(prompts))]})
    with store.writer("eval", db) as con:
        con.register("new_generations", rows)
        con.execute(store.sql("insert_generations"))
        con.register("new_judgments", judge_rows(rows, prompts["text"].tolist(), [KeywordJudge()]))
        con.execute(store.sql("insert_judgments"))
    monkeypatch.setenv("EXPLORER_DB", str(db))
    return info.id


def test_a_run_trained_to_epsilon_is_marked_and_shows_its_dual_ascent(constrained_env):
    at = open_page("tradeoff_map", judge="keyword")
    spec = json.dumps(json.loads(at.get("vega_lite_chart")[0].proto.spec), ensure_ascii=False)
    assert "trained to a target ε" in spec  # its own mark in the legend (its label: test_charts)
    shown = at.dataframe[-1].value
    assert shown.set_index("checkpoint_id").loc[constrained_env, ["kind", "target_violation"]].tolist() == ["constrained", 0.3]
    at.switch_page("explorer/pages/operating_point.py").run()
    pick = next(s for s in at.selectbox if s.label.startswith("Or a run trained to a target"))
    pick.select(constrained_env).run()
    assert not at.exception, at.exception
    assert at.subheader[0].value == f"Checkpoint {constrained_env}"
    assert "How training reached ε" in texts(at)
    charts = [c.proto.spec for c in at.get("vega_lite_chart")]
    assert any("violation_estimate" in c and "lambda_safe" in c for c in charts)
