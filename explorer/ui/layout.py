"""Shared bits of page layout: charts, the friendly stop when there is nothing to show, percentages and
intervals, checkpoint pickers, raw tables, captions, λ sliders, and the words that explain each number
to a non-specialist. Reads the store through data and the sidebar's choices through selection."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from .. import metrics, queries
from ..attacks import ATTACK_SPLIT
from ..suites import IMPORT_PREFIX
from . import data, selection

SHOWN_FLIPS = 200  # changed prompts read in full on the examples page; its counts cover every change
SLIDER_POSITIONS = 60  # steps across the trained range of each λ: fine enough that a nudge moves a little
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
SAMPLED_HELP = ("Of k answers sampled from the model's own distribution (eval --sampled), how many refused: the "
                "greedy answer shown is one draw, and a prompt refused 3 of 8 times leaks the other 5.")


@st.cache_data(max_entries=data.CACHE_ENTRIES, show_spinner=False)
def _chart_spec(builder: str, *args) -> dict:
    from .. import charts

    return getattr(charts, builder)(*args).to_dict()


def chart(builder, *args, where=st, params: dict | None = None) -> None:
    """Draw a chart from explorer/charts.py. Its Vega-Lite spec is cached on the builder's inputs, so a
    rerun that leaves them unchanged (another widget moved) skips Altair, which costs 30-70 ms a chart;
    `params` sets the chart's Vega-Lite parameters on the cached spec (a slider the chart follows)."""
    from ..charts import with_params

    spec = _chart_spec(builder.__name__, *args)
    where.vega_lite_chart(with_params(spec, **params) if params else spec, width="stretch")


def require(df: pd.DataFrame | None) -> pd.DataFrame:
    """Stop the page with a friendly message when there is nothing to show yet."""
    if df is None or df.empty:
        sel = selection.current()
        st.info(NO_DATA if not data.judge_versions() else
                f"No checkpoint has a complete evaluation with judge '{sel.judge}' on the prompt set "
                f"'{sel.split}' yet. Pick another judge or prompt set in the sidebar, or wait for "
                "`python -m explorer eval` to finish.")
        st.stop()
    return df


def pct(x) -> str:
    return "–" if x is None or pd.isna(x) else f"{x:.1%}"


def interval(row, prefix: str) -> str:
    """'95% interval 12.0–30.1% · 5 of 24 prompts' for one headline rate of a checkpoint_table row; `prefix`
    is the rate ('violation') or a subset's rate ('unseen_violation')."""
    rate = prefix.split("_", 1)[1] if prefix.startswith(("seen_", "unseen_", "attack_")) else prefix
    n = prefix[:-len(rate)] + metrics.RATE_DENOMINATORS[rate]
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


def raw_table(df: pd.DataFrame, label: str = "Raw numbers (for specialists)") -> None:
    with st.expander(label):
        st.dataframe(df, hide_index=True, width="stretch")


def prompt_set_label(split: str) -> str:
    if split.startswith(IMPORT_PREFIX):
        return f"imported: {split.removeprefix(IMPORT_PREFIX)}"
    return {queries.DEFAULT_SPLIT: "test split (shipped suites)",
            ATTACK_SPLIT: "jailbreak attacks (harmful test prompts in templates)"}.get(split, split)


def evaluation_caption() -> str:
    """Which evaluation the pages show, as the store recorded it."""
    ev = data.evaluation()
    where = f"Store: `{data.paths().eval_db.name}`"
    if ev is None:
        return where
    tokens = (ev.get("settings") or {}).get("max_new_tokens", "?")
    return (f"{where} · sweep `{ev['sweep'] or '?'}` · greedy answers of ≤ {tokens} tokens · new results show on "
            "the next interaction after they commit")


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
