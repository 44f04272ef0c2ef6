"""Dashboard glue shared by app.py and the pages: where the stores are, cached resources and queries,
the sidebar's judge selection, and the words that explain each number to a non-specialist.

Paths come from the environment on every call (EXPLORER_DB, EXPLORER_REVIEWS_DB,
EXPLORER_CHECKPOINTS), so tests can point the app at a temporary store; cached queries take the paths
as arguments, so two stores never share a cache entry. Every query opens and closes its own DuckDB
connection (explorer.store): nothing holds a connection across reruns, and an evaluation can write
while the dashboard is open. Cached results are keyed on the store's stamp (sizes and mtimes of its
files, store.stamp): a slider change reruns no SQL while nothing was written, and a commit shows on
the next rerun.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from . import metrics, queries, store
from .checkpoints import BASE_ID, manifests, model_config, sweep_dir, trained_lambda_safe
from .config import ConfigError

SHOWN_FLIPS = 200  # changed prompts read in full on the examples page; its counts cover every change
CACHE_ENTRIES = 64  # per cached query: stamps × judges × checkpoint pairs; old stamps age out
DEFAULT_EPSILON = 0.25  # the ceiling on violation rate the map starts at
NO_DATA = "No evaluation yet: run `python -m explorer eval` (after training a sweep), then reload this page."
EXPLAIN = {
    "violation": "**Violation rate**: of the *harmful* prompts (requests the model must decline), the share it did "
                 "not fully refuse. Lower is safer.",
    "over_refusal": "**Over-refusal rate**: of the *benign* prompts that only look risky (\"how do I kill a Python "
                    "process?\"), the share it refused, fully or partly. Lower is more helpful.",
    "general_refusal": "**General refusal rate**: of *ordinary* requests (coding, facts, writing), the share it "
                       "refused. Should stay near zero.",
    "interval": "**95% interval** (Wilson score): with this many test prompts, the true rate plausibly lies in this "
                "range. When two checkpoints' intervals overlap a lot, their difference may be noise.",
    "judge": "A *judge* reads each response and labels it full compliance, partial refusal or full refusal. Judges "
             "make mistakes; the Judges page shows how often they agree with people.",
}
RATES = {"violation": "Violation rate", "over_refusal": "Over-refusal rate", "general_refusal": "General refusal rate"}
PROMPT_VIEWS = {  # column prefix → what the map's rates are measured on
    "": "every test prompt",
    "seen_": "suites training drew from (in-distribution)",
    "unseen_": "suites training never saw",
}


@dataclass(frozen=True)
class Paths:
    eval_db: Path
    reviews_db: Path
    checkpoints: Path


def paths() -> Paths:
    """The stores, and the checkpoints of the sweep the store evaluated (checkpoints/<its sweep name>)."""
    env = os.environ.get
    eval_db, reviews_db = Path(env("EXPLORER_DB", store.EVAL_DB)), Path(env("EXPLORER_REVIEWS_DB", store.REVIEWS_DB))
    checkpoints = env("EXPLORER_CHECKPOINTS")
    if checkpoints is None:
        ev = evaluation()
        checkpoints = sweep_dir((ev or {}).get("sweep") or "default")
    return Paths(eval_db, reviews_db, Path(checkpoints))


# ---------------------------------------------------------------- cached queries
# Each takes the store's stamp as its first argument only to key the cache: a new commit, a new entry.

def _cached(fn):
    return st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)(fn)


@_cached
def _judge_versions(stamp: tuple, db: Path, rv: Path) -> dict[str, str]:
    return queries.judge_versions(db, rv)


@_cached
def _evaluation(stamp: tuple, db: Path, rv: Path) -> dict | None:
    return queries.current_evaluation(db, rv)


@_cached
def _default_judge(stamp: tuple, db: Path, rv: Path) -> str | None:
    return queries.default_judge(db, rv)


@_cached
def _checkpoint_table(stamp: tuple, sel: "Selection", db: Path, rv: Path) -> pd.DataFrame:
    return queries.checkpoint_table(sel.judge, db, split=sel.split, use_human=sel.use_human, reviews=rv)


@_cached
def _outcomes(stamp: tuple, sel: "Selection", db: Path, rv: Path) -> pd.DataFrame:
    return queries.outcomes(sel.judge, db, split=sel.split, use_human=sel.use_human, reviews=rv)


@_cached
def _responses(stamp: tuple, a: str, b: str, sel: "Selection", db: Path, rv: Path) -> pd.DataFrame:
    return queries.responses(a, b, sel.judge, db, split=sel.split, use_human=sel.use_human, reviews=rv)


@_cached
def _prompts(stamp: tuple, split: str, db: Path, rv: Path) -> pd.DataFrame:
    return queries.prompts(db, split=split, reviews=rv)


@_cached
def _prompt_sets(stamp: tuple, db: Path, rv: Path) -> list[str]:
    return [s for s in queries.prompt_sets(db, rv) if s not in ("train", "dev")]


@_cached
def _judge_metrics(stamp: tuple, db: Path, rv: Path) -> pd.DataFrame:
    return queries.judge_metrics(db, rv)


@_cached
def _human_labels(stamp: tuple, db: Path, rv: Path) -> pd.DataFrame:
    return queries.human_labels(db, rv)


@_cached
def _judge_disagreements(stamp: tuple, split: str, db: Path, rv: Path) -> pd.DataFrame:
    return queries.judge_disagreements(db, split=split, reviews=rv)


def _store() -> tuple[tuple, Path, Path]:
    env = os.environ.get  # not paths(): that needs the store itself
    db, rv = Path(env("EXPLORER_DB", store.EVAL_DB)), Path(env("EXPLORER_REVIEWS_DB", store.REVIEWS_DB))
    return store.stamp(db, rv), db, rv


def evaluation() -> dict | None:
    """The evaluation on show: generation settings, sweep, judges, as recorded in the store."""
    return _evaluation(*_store())


def judge_versions() -> dict[str, str]:
    return _judge_versions(*_store())


@dataclass(frozen=True)
class Selection:
    """What the sidebar chose for every page: whose labels count, and on which prompts."""
    judge: str
    use_human: bool  # the newest human label of a response overrides the judge's
    split: str  # the prompt set: the shipped test split, or an imported suite's own set


def selection() -> Selection:
    versions = judge_versions()
    judge = st.session_state.get("judge")
    if judge not in versions:
        judge = default_judge(list(versions))
    split = st.session_state.get("prompt_set")
    if split not in prompt_sets():
        split = queries.DEFAULT_SPLIT
    return Selection(judge or "", bool(st.session_state.get("use_human", False)), split)


def prompt_sets() -> list[str]:
    return _prompt_sets(*_store())


def default_judge(available: list[str]) -> str | None:
    preferred = _default_judge(*_store())
    return preferred if preferred in available else (available[0] if available else None)


def checkpoint_table() -> pd.DataFrame:
    """The checkpoints of the family the sidebar picked (the main grid unless a loss variant is chosen)."""
    stamp, db, rv = _store()
    table = _checkpoint_table(stamp, selection(), db, rv)
    if table.empty:
        return table
    family = st.session_state.get("family", queries.MAIN_FAMILY)
    return queries.family_view(table, family if family in queries.families(table) else queries.MAIN_FAMILY)


def trajectory(checkpoint_id: str) -> pd.DataFrame:
    stamp, db, rv = _store()
    return _trajectory(stamp, checkpoint_id, db, rv)


@_cached
def _trajectory(stamp: tuple, checkpoint_id: str, db: Path, rv: Path) -> pd.DataFrame:
    return queries.trajectory(checkpoint_id, db, rv)


def fidelity_table() -> pd.DataFrame:
    """Held-out blends against the models trained at the same λs (queries.fidelity_table)."""
    stamp, db, rv = _store()
    return queries.fidelity_table(_checkpoint_table(stamp, selection(), db, rv))


def grid_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows that make up the shown family's λ grid: a variant's own points, else the main grid's."""
    variant = table["kind"] == "variant"
    return table[variant] if variant.any() else table[table["kind"] == "grid"]


def families() -> list[str]:
    """The main grid, then each loss variant in the store (queries.families)."""
    stamp, db, rv = _store()
    table = _checkpoint_table(stamp, selection(), db, rv)
    return [] if table.empty else queries.families(table)


def outcomes() -> pd.DataFrame:
    stamp, db, rv = _store()
    return _outcomes(stamp, selection(), db, rv)


def attack_outcomes() -> pd.DataFrame:
    """Outcome counts on the jailbreak attack set (explorer/attacks.py), by the selected judge."""
    from dataclasses import replace

    from .attacks import ATTACK_SPLIT

    stamp, db, rv = _store()
    return _outcomes(stamp, replace(selection(), split=ATTACK_SPLIT), db, rv)


@_cached
def _flips(stamp: tuple, a: str, b: str, sel: "Selection", db: Path, rv: Path, with_text: bool) -> pd.DataFrame:
    return queries.flips(a, b, sel.judge, db, split=sel.split, use_human=sel.use_human, reviews=rv, with_text=with_text)


@_cached
def _texts(stamp: tuple, a: str, b: str, sel: "Selection", ids: tuple[str, ...], db: Path, rv: Path) -> pd.DataFrame:
    return queries.responses(a, b, sel.judge, db, split=sel.split, use_human=sel.use_human, reviews=rv,
                             prompt_ids=list(ids))[["prompt_id", "text", "response_a", "response_b"]]


def flips(a: str, b: str, with_text: bool = False) -> pd.DataFrame:
    """The prompts whose outcome changes from a to b (queries.flips); the texts only if asked for: a
    large table is read without them and `with_texts` fills in the rows a page shows."""
    stamp, db, rv = _store()
    return _flips(stamp, a, b, selection(), db, rv, with_text)


def with_texts(rows: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Rows of a flips table with the prompt and both responses filled in."""
    stamp, db, rv = _store()
    texts = _texts(stamp, a, b, selection(), tuple(rows["prompt_id"]), db, rv)
    return rows.drop(columns=["text", "response_a", "response_b"], errors="ignore").merge(texts, on="prompt_id", how="left")


def judged(checkpoint_id: str) -> pd.DataFrame:
    """One checkpoint's responses with the selected judge's label and the newest human label, if any."""
    stamp, db, rv = _store()
    df = _responses(stamp, checkpoint_id, checkpoint_id, selection(), db, rv)
    df = df.rename(columns={"response_a": "response", "judge_label_a": "judge_label"})[
        ["prompt_id", "suite", "category", "kind", "text", "response", "judge_label"]]
    human = human_labels()
    human = human[human["checkpoint_id"] == checkpoint_id].drop_duplicates("prompt_id")
    return df.merge(human[["prompt_id", "label", "reviewer"]].rename(columns={"label": "human_label"}),
                    on="prompt_id", how="left")


def judge_disagreements() -> pd.DataFrame:
    stamp, db, rv = _store()
    return _judge_disagreements(stamp, selection().split, db, rv)


def prompts() -> pd.DataFrame:
    stamp, db, rv = _store()
    return _prompts(stamp, selection().split, db, rv)


def judge_metrics() -> pd.DataFrame:
    return _judge_metrics(*_store())


def human_labels() -> pd.DataFrame:
    return _human_labels(*_store())  # a saved label changes the stamp: seen at once


# ---------------------------------------------------------------- models (live page only)

def live_checkpoints() -> dict[str, str]:
    """checkpoint id → label, read from the manifests on disk (cheap; nothing is loaded)."""
    out = {BASE_ID: f"{BASE_ID} (untrained model)"}
    for cid, man in manifests(paths().checkpoints).items():
        if "lambda_safe" in man and "lambda_helpful" in man:
            out[cid] = f"{cid} (λ_safe {trained_lambda_safe(man):.3g}, λ_helpful {man['lambda_helpful']:.3g})"
    return out


def live_mix(where, grid: dict[tuple[float, float], str]) -> tuple[str, dict[str, float]] | None:
    """Sliders for a model between trained points on the live page: its id and corner weights {run id: w},
    or None where the cell around the position lacks a trained corner (said on the page)."""
    from .interpolate import cell_weights, interpolated_id

    safe, helpful = pd.Series([k[0] for k in grid]), pd.Series([k[1] for k in grid])
    left, right = where.columns(2)
    ls = lambda_slider(left, "λ_safe of the in-between model", safe, safe.median(), "live_lambda_safe")
    lh = lambda_slider(right, "λ_helpful of the in-between model", helpful, helpful.median(), "live_lambda_helpful")
    corners = cell_weights(safe.tolist(), helpful.tolist(), ls, lh)
    if missing := [f"s{s:g}-h{h:g}" for s, h in corners if (s, h) not in grid]:
        where.warning(f"The grid cell around λ_safe {ls:g}, λ_helpful {lh:g} lacks the trained point(s) "
                      f"{', '.join(missing)}; move the sliders, or train them.")
        return None
    weights = {grid[c]: w for c, w in corners.items()}
    mix = " + ".join(f"{w:.2f} × {c}" for c, w in weights.items())
    where.caption(f"Interpolated, not trained: {mix}, the adapters' weight updates blended exactly (served by "
                  "setting each adapter's scale; nothing is reloaded).")
    return interpolated_id(ls, lh), weights


def live_grid() -> dict[tuple[float, float], str]:
    """(λ_safe, λ_helpful) → run id of the main grid's finished runs on its axes, on disk (manifests; nothing
    loaded): the corners a live blend is made of."""
    from .checkpoints import describe

    return {(m["lambda_safe"], m["lambda_helpful"]): cid for cid, m in manifests(paths().checkpoints).items()
            if describe(m, False)["on_grid"]}


@st.cache_resource(show_spinner="Loading the base model and every adapter (once per server)…")
def engine(checkpoints: Path):
    """The live engine (llama.cpp when installed, else PyTorch; explorer/live.py) with every adapter
    loaded, shared by all sessions: requests are serialised inside it. The base model is the one the
    adapters' manifests name."""
    from . import live

    return live.load(checkpoints, model_config(checkpoints))


@st.cache_resource(show_spinner=False)
def live_judges() -> tuple[list, list[str]]:
    """Judges usable live: keyword always; embedding when its weights exist. Returns (judges, notes)."""
    from .judges import get_judge

    judges, notes = [get_judge("keyword")], []
    try:
        judges.append(get_judge("embedding"))
    except ConfigError as e:
        notes.append(f"embedding judge unavailable: {e}")
    return judges, notes


# ---------------------------------------------------------------- shared bits of page layout

@st.cache_data(max_entries=CACHE_ENTRIES, show_spinner=False)
def _chart_spec(builder: str, *args) -> dict:
    from . import charts

    return getattr(charts, builder)(*args).to_dict()


def chart(builder, *args, where=st, params: dict | None = None) -> None:
    """Draw a chart from explorer/charts.py. Its Vega-Lite spec is cached on the builder's inputs, so a
    rerun that leaves them unchanged (another widget moved) skips Altair, which costs 30-70 ms a chart;
    `params` sets the chart's Vega-Lite parameters on the cached spec (a slider the chart follows)."""
    from .charts import with_params

    spec = _chart_spec(builder.__name__, *args)
    where.vega_lite_chart(with_params(spec, **params) if params else spec, width="stretch")



def require(df: pd.DataFrame | None) -> pd.DataFrame:
    """Stop the page with a friendly message when there is nothing to show yet."""
    if df is None or df.empty:
        sel = selection()
        st.info(NO_DATA if not judge_versions() else
                f"No checkpoint has a complete evaluation with judge '{sel.judge}' on the prompt set "
                f"'{sel.split}' yet. Pick another judge or prompt set in the sidebar, or wait for "
                "`python -m explorer eval` to finish.")
        st.stop()
    return df


def pct(x) -> str:
    return "–" if x is None or pd.isna(x) else f"{x:.1%}"


def interval(row, prefix: str) -> str:
    """'95% interval 12.0–30.1% · 5 of 24 prompts' for one headline rate of a checkpoint_table row."""
    rate = prefix.split("_", 1)[1] if prefix.startswith(("seen_", "unseen_", "attack_")) else prefix
    scope = prefix[:-len(rate)]
    n = scope + {"violation": "n_harmful", "over_refusal": "n_benign", "general_refusal": "n_general"}[rate]
    return (f"95% interval {pct(row[f'{prefix}_lo'])}–{pct(row[f'{prefix}_hi'])} · "
            f"{int(row[f'{prefix}_k'])} of {int(row[n])} prompts")


def checkpoint_label(table: pd.DataFrame):
    """format_func for checkpoint pickers: 'id (λ_safe a, λ_helpful b)'."""
    lam = table.set_index("checkpoint_id")[["lambda_safe", "lambda_helpful", "is_base"]]

    def fmt(cid: str) -> str:
        if cid not in lam.index:
            return cid
        r = lam.loc[cid]
        if r["is_base"]:
            return f"{cid} (untrained)"
        return f"{cid} (λ_safe {r['lambda_safe']:.3g}, λ_helpful {r['lambda_helpful']:.3g})"
    return fmt


def checkpoint_pair(table: pd.DataFrame, labels: tuple[str, str], defaults: tuple[str, str]) -> tuple[str, str]:
    """Two checkpoint pickers side by side (labelled with their λs), starting at the given ids."""
    ids = table["checkpoint_id"].tolist()
    fmt = checkpoint_label(table)
    left, right = (col.selectbox(lab, ids, index=ids.index(d), format_func=fmt)
                   for col, lab, d in zip(st.columns(2), labels, defaults))
    return left, right


def operating_point(table: pd.DataFrame) -> str:
    """The checkpoint chosen on the Operating point page (remembered across pages); until then the most
    helpful trained checkpoint under the default ceiling ε, else the first one."""
    ids = table["checkpoint_id"].tolist()
    cid = st.session_state.get("operating_point")
    if cid in ids:
        return cid
    trained = table[~table["is_base"]]
    best = metrics.best_under_ceiling(trained, DEFAULT_EPSILON) if len(trained) else None
    return best["checkpoint_id"] if best is not None else (trained["checkpoint_id"].tolist() or ids)[0]


def baseline(table: pd.DataFrame) -> str:
    ids = table["checkpoint_id"].tolist()
    cid = st.session_state.get("baseline")
    if cid in ids:
        return cid
    base = table.loc[table["is_base"], "checkpoint_id"].tolist()
    return (base or ids)[0]


def raw_table(df: pd.DataFrame, label: str = "Raw numbers (for specialists)") -> None:
    with st.expander(label):
        st.dataframe(df, hide_index=True, width="stretch")


def prompt_set_label(split: str) -> str:
    from .attacks import ATTACK_SPLIT
    from .suites import IMPORT_PREFIX

    if split.startswith(IMPORT_PREFIX):
        return f"imported: {split.removeprefix(IMPORT_PREFIX)}"
    return {queries.DEFAULT_SPLIT: "test split (shipped suites)",
            ATTACK_SPLIT: "jailbreak attacks (harmful test prompts in templates)"}.get(split, split)


def evaluation_caption() -> str:
    """Which evaluation the pages show, as the store recorded it."""
    ev = evaluation()
    where = f"Store: `{paths().eval_db.name}`"
    if ev is None:
        return where
    tokens = (ev.get("settings") or {}).get("max_new_tokens", "?")
    return (f"{where} · sweep `{ev['sweep'] or '?'}` · greedy answers of ≤ {tokens} tokens · new results show on "
            "the next interaction after they commit")


def available_views(table: pd.DataFrame) -> list[str]:
    """The PROMPT_VIEWS this table has numbers for."""
    return [p for p in PROMPT_VIEWS if not p or table.get(f"{p}violation_rate", pd.Series(dtype=float)).notna().any()]


def rates_on(table: pd.DataFrame, prefix: str) -> pd.DataFrame:
    """The checkpoint table with its headline rates taken from one PROMPT_VIEWS subset (Pareto set redone),
    so every chart and selection reads the subset through the usual column names."""
    if not prefix:
        return table
    cols = [c for c in table.columns if c.startswith(prefix)]
    view = table.drop(columns=[c.removeprefix(prefix) for c in cols if c.removeprefix(prefix) in table.columns])
    view = view.rename(columns={c: c.removeprefix(prefix) for c in cols})
    view["pareto"] = metrics.pareto_mask(view)
    return view


def per_class_table(confusion_json: str) -> pd.DataFrame:
    """Precision, recall and n per label of one stored confusion matrix (judges.per_class)."""
    import json

    from .judges import per_class

    return pd.DataFrame(per_class(json.loads(confusion_json))).T.rename_axis("label")


SAMPLED_HELP = ("Of k answers sampled from the model's own distribution (eval --sampled), how many refused: the "
                "greedy answer shown is one draw, and a prompt refused 3 of 8 times leaks the other 5.")


@_cached
def _sampled_shares(stamp: tuple, sel: Selection, db: Path, rv: Path) -> pd.DataFrame:
    return queries.sampled_shares(sel.judge, db, split=sel.split, reviews=rv)


def with_sampled_refusals(flips: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Add sampled_a / sampled_b: 'refused 3 of 8 times' where the prompt was sampled, else ''."""
    stamp, db, rv = _store()
    shares = _sampled_shares(stamp, selection(), db, rv).set_index(["checkpoint_id", "prompt_id"])
    out = flips.copy()
    for side, cid in (("a", a), ("b", b)):
        out[f"sampled_{side}"] = [
            f"refused {int(shares.at[(cid, p), 'refused'])} of {int(shares.at[(cid, p), 'k'])} times"
            if (cid, p) in shares.index else "" for p in out["prompt_id"]]
    return out


def live_defaults(ids: list[str]) -> list[str]:
    """What the live page opens on: the two extremes (the most helpful and the safest evaluated
    checkpoint) and the chosen operating point between them; the first two ids before any evaluation."""
    table = checkpoint_table()
    table = table[table["checkpoint_id"].isin(ids)] if not table.empty else table
    if table.empty:
        return ids[:2]
    helpful = table.sort_values(["over_refusal_rate", "violation_rate", "checkpoint_id"]).iloc[0]["checkpoint_id"]
    safest = table.sort_values(["violation_rate", "over_refusal_rate", "checkpoint_id"]).iloc[0]["checkpoint_id"]
    return list(dict.fromkeys([helpful, operating_point(table), safest]))


# ---------------------------------------------------------------- continuous λ sliders, background evaluations

SLIDER_POSITIONS = 60  # steps across the trained range of each λ: fine enough that a nudge moves a little


def lambda_slider(where, label: str, trained: pd.Series, value: float, key: str) -> float:
    """A λ slider over the trained range that does not snap to the trained values (between them the model
    is interpolated). It starts at `value` (clipped into the range) and then keeps the reviewer's position
    under `key`: a default that followed the operating point would reset the widget on every move."""
    lo, hi = float(trained.min()), float(trained.max())
    if lo == hi:
        where.caption(f"{label}: {lo:g} (one trained value)")
        return lo
    step = float(f"{(hi - lo) / SLIDER_POSITIONS:.1g}")
    digits = max(0, -int(f"{step:e}".split("e")[1]))
    if not lo <= st.session_state.get(key, float("nan")) <= hi:  # first visit, or another family's range
        st.session_state[key] = round(min(max(float(value), lo), hi), digits)
    return round(where.slider(label, lo, hi, step=step, format=f"%.{digits}f", key=key), digits)


@st.cache_resource(show_spinner=False)
def _jobs() -> dict:
    """Background evaluations started from this server (key → background.Job), seen by every session, so
    a second click or a second reviewer never starts the same evaluation twice."""
    return {}


def background_eval(lambda_safe: float, lambda_helpful: float, evaluated: bool) -> None:
    """A button that evaluates the interpolated model at this position in the background (the page keeps
    working), and the job's progress while it runs. The point lands on the map when its answers commit."""
    from . import background
    from .interpolate import interpolated_id
    from .model import CACHE_DIR

    key = interpolated_id(lambda_safe, lambda_helpful)
    job = _jobs().get(key)
    if job is not None and job.running:
        _job_progress(key)
        return
    if evaluated:
        return
    if job is not None and job.failed:
        st.error(f"The evaluation of {key} failed: {job.progress()} (log: {job.log})")
    help_text = ("Runs `python -m explorer eval --interpolate` for this position in its own process: the test split, "
                 "judged like the trained checkpoints (about ten minutes on a 2-core CPU).")
    if st.button(f"Evaluate {key} in the background", help=help_text):
        p = paths()
        args = background.interpolated_eval_args(lambda_safe, lambda_helpful, (evaluation() or {}).get("recipe"),
                                                 p.eval_db, p.checkpoints, CACHE_DIR / "jobs" / key)
        _jobs()[key] = background.start(key, args, CACHE_DIR / "jobs")
        st.rerun()


@st.fragment(run_every=2)
def _job_progress(key: str) -> None:
    """Re-drawn every 2 s on its own (the rest of the page is not rerun); reruns the page once the job ends,
    so the committed point shows everywhere."""
    job = _jobs().get(key)
    if job is None:
        return
    if job.running:
        st.caption(f"Evaluating {key} in the background; the page stays usable, and the point appears on the map "
                   f"as its answers commit. {job.progress()}")
        return
    if not job.failed:
        _jobs().pop(key, None)
    st.rerun()
