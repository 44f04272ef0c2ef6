"""Pure views of the store's tables that the pages show: DataFrame in, DataFrame (or row) out, no
Streamlit and no store, so each is testable on a hand-made frame."""
from __future__ import annotations

import json

import pandas as pd

from .. import metrics
from ..attacks import ATTACK_PREFIX
from ..judges import per_class

PROMPT_VIEWS = {  # column prefix → what the map's rates are measured on
    "": "every test prompt",
    "seen_": "suites training drew from (in-distribution)",
    "unseen_": "suites training never saw",
}


def grid_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows that make up the shown family's λ grid: a variant's own points, else the main grid's."""
    variant = table["kind"] == "variant"
    return table[variant] if variant.any() else table[table["kind"] == "grid"]


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


def knob_table(table: pd.DataFrame) -> pd.DataFrame:
    """Each imported checkpoint's knob values (family.py), one column per knob; empty for a sweep trained here."""
    rows = [{"checkpoint": cid, **knobs} for cid, knobs in zip(table["checkpoint_id"], table["knobs"])
            if isinstance(knobs, dict)]
    return pd.DataFrame(rows)


def nearest_grid_point(trained: pd.DataFrame, row: pd.Series) -> pd.Series:
    """The trained grid row nearest to `row`'s λs (a run trained to ε has its λ_safe off the grid)."""
    return trained.loc[((trained["lambda_safe"] - row["lambda_safe"]) ** 2
                        + (trained["lambda_helpful"] - row["lambda_helpful"]) ** 2).idxmin()]


def heaviest_corner(table: pd.DataFrame, corners: pd.DataFrame) -> pd.Series:
    """The checkpoint_table row of the corner that weighs most in a blend (interpolate.SliderPoint.corners)."""
    cid = corners.sort_values("weight", ascending=False).iloc[0]["checkpoint_id"]
    return table[table["checkpoint_id"] == cid].iloc[0]


def attack_template_rates(attack_outcomes: pd.DataFrame, checkpoint_id: str) -> pd.DataFrame:
    """One checkpoint's violation rate under each jailbreak template (metrics.category_rates by suite), the
    template's name in column 'category'."""
    by_template = metrics.category_rates(attack_outcomes, checkpoint_id, by="suite")
    by_template["category"] = by_template["category"].str.removeprefix(ATTACK_PREFIX)
    return by_template


def fidelity_summary(fid: pd.DataFrame) -> tuple[pd.DataFrame, int, pd.Series]:
    """Of a fidelity table (queries.fidelity_table): the mean absolute errors per blend method, how many
    held-out points they average over, and the row of the largest violation miss."""
    mae = fid.groupby("method")[["violation_abs_error", "over_refusal_abs_error"]].mean()
    points = len(fid[["lambda_safe", "lambda_helpful"]].drop_duplicates())
    return mae, points, fid.loc[fid["violation_abs_error"].idxmax()]


def filter_flips(flips: pd.DataFrame, changes: list[str], suites: list[str], categories: list[str]) -> pd.DataFrame:
    """The flips of the picked kinds of change, in the picked suites and categories (none picked: all)."""
    shown = flips[flips["flip"].isin(changes)]
    if suites:
        shown = shown[shown["suite"].isin(suites)]
    if categories:
        shown = shown[shown["category"].isin(categories)]
    return shown


def per_class_table(confusion_json: str) -> pd.DataFrame:
    """Precision, recall and n per label of one stored confusion matrix (judges.per_class)."""
    return pd.DataFrame(per_class(json.loads(confusion_json))).T.rename_axis("label")
