"""What the sidebar and the pages chose, kept in st.session_state: whose labels count and on which prompts
(Selection), which family of checkpoints, the operating point and the baseline (remembered across pages).

Every choice falls back to a sensible default when the store does not have it (another store, a judge
that is gone). The store is read through explorer/ui/data.py only.
"""
from __future__ import annotations


import pandas as pd
import streamlit as st

from .. import metrics, queries
from . import data
from .data import Selection

DEFAULT_EPSILON = 0.25  # the ceiling on violation rate the map starts at


def default_judge(available: list[str]) -> str | None:
    """The store's primary judge where it is among `available`, else the first of them."""
    preferred = data.primary_judge()
    return preferred if preferred in available else (available[0] if available else None)


def current() -> Selection:
    """The sidebar's judge, human-override switch and prompt set, each valid for this store."""
    versions = data.judge_versions()
    judge = st.session_state.get("judge")
    if judge not in versions:
        judge = default_judge(list(versions))
    split = st.session_state.get("prompt_set")
    if split not in data.prompt_sets():
        split = queries.DEFAULT_SPLIT
    return Selection(judge or "", bool(st.session_state.get("use_human", False)), split)


def family() -> str:
    """The checkpoint family the sidebar picked: the main grid unless a loss variant is chosen (a family
    the store lacks is shown as the main grid: data.checkpoint_table)."""
    return st.session_state.get("family", queries.MAIN_FAMILY)


def checkpoint_table() -> pd.DataFrame:
    """The checkpoints every page shows: the picked family's, under the current selection."""
    return data.checkpoint_table(current(), family())


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
    """The checkpoint compared against: the one chosen on the Operating point page, else the base model."""
    ids = table["checkpoint_id"].tolist()
    cid = st.session_state.get("baseline")
    if cid in ids:
        return cid
    base = table.loc[table["is_base"], "checkpoint_id"].tolist()
    return (base or ids)[0]


def choose(operating_point: str, baseline: str) -> None:
    """Remember the Operating point page's choice for the other pages."""
    st.session_state["operating_point"] = operating_point
    st.session_state["baseline"] = baseline
