"""Store access for the dashboard: where the stores are, every cached read of them, and its two writes.

Paths come from the environment on every call (EXPLORER_DB, EXPLORER_REVIEWS_DB,
EXPLORER_CHECKPOINTS), so tests can point the app at a temporary store; cached queries take the paths
as arguments, so two stores never share a cache entry. Every query opens and closes its own DuckDB
connection (explorer.store): nothing holds a connection across reruns, and an evaluation can write
while the dashboard is open. Cached results are keyed on the store's stamp (sizes and mtimes of its
files, store.stamp): a slider change reruns no SQL while nothing was written, and a commit shows on
the next rerun.

The dashboard's writes (human labels, decision records) are explorer/ui/reviews.py. This module reads
no widget state: a read that depends on the sidebar takes its `sel`, a Selection (made from the sidebar
by explorer/ui/selection.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import streamlit as st

from .. import queries, store
from ..attacks import ATTACK_SPLIT
from ..checkpoints import sweep_dir

CACHE_ENTRIES = 64  # per cached query: stamps × judges × checkpoint pairs; old stamps age out


@dataclass(frozen=True)
class Selection:
    """What the sidebar chose for every page: whose labels count, and on which prompts."""
    judge: str
    use_human: bool  # the newest human label of a response overrides the judge's
    split: str  # the prompt set: the shipped test split, or an imported suite's own set


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


def _store() -> tuple[tuple, Path, Path]:
    env = os.environ.get  # not paths(): that needs the store itself
    db, rv = Path(env("EXPLORER_DB", store.EVAL_DB)), Path(env("EXPLORER_REVIEWS_DB", store.REVIEWS_DB))
    return store.stamp(db, rv), db, rv


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
def _checkpoint_table(stamp: tuple, sel: Selection, db: Path, rv: Path) -> pd.DataFrame:
    return queries.checkpoint_table(sel.judge, db, split=sel.split, use_human=sel.use_human, reviews=rv)


@_cached
def _outcomes(stamp: tuple, sel: Selection, db: Path, rv: Path) -> pd.DataFrame:
    return queries.outcomes(sel.judge, db, split=sel.split, use_human=sel.use_human, reviews=rv)


@_cached
def _responses(stamp: tuple, a: str, b: str, sel: Selection, db: Path, rv: Path) -> pd.DataFrame:
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


@_cached
def _trajectory(stamp: tuple, checkpoint_id: str, db: Path, rv: Path) -> pd.DataFrame:
    return queries.trajectory(checkpoint_id, db, rv)


@_cached
def _flips(stamp: tuple, a: str, b: str, sel: Selection, db: Path, rv: Path, with_text: bool) -> pd.DataFrame:
    return queries.flips(a, b, sel.judge, db, split=sel.split, use_human=sel.use_human, reviews=rv, with_text=with_text)


@_cached
def _texts(stamp: tuple, a: str, b: str, sel: Selection, ids: tuple[str, ...], db: Path, rv: Path) -> pd.DataFrame:
    return queries.responses(a, b, sel.judge, db, split=sel.split, use_human=sel.use_human, reviews=rv,
                             prompt_ids=list(ids))[["prompt_id", "text", "response_a", "response_b"]]


@_cached
def _sampled_shares(stamp: tuple, sel: Selection, db: Path, rv: Path) -> pd.DataFrame:
    return queries.sampled_shares(sel.judge, db, split=sel.split, reviews=rv)


# ---------------------------------------------------------------- what the pages read

def evaluation() -> dict | None:
    """The evaluation on show: generation settings, sweep, judges, as recorded in the store."""
    return _evaluation(*_store())


def judge_versions() -> dict[str, str]:
    return _judge_versions(*_store())


def primary_judge() -> str | None:
    """The judge shown unless another is picked, as the store says (queries.default_judge)."""
    return _default_judge(*_store())


def prompt_sets() -> list[str]:
    return _prompt_sets(*_store())


def checkpoint_table(sel: Selection, family: str = queries.MAIN_FAMILY) -> pd.DataFrame:
    """The checkpoints of one family (queries.family_view); the main grid where the store lacks it."""
    stamp, db, rv = _store()
    table = _checkpoint_table(stamp, sel, db, rv)
    if table.empty:
        return table
    return queries.family_view(table, family if family in queries.families(table) else queries.MAIN_FAMILY)


def families(sel: Selection) -> list[str]:
    """The main grid, then each loss variant in the store (queries.families)."""
    stamp, db, rv = _store()
    table = _checkpoint_table(stamp, sel, db, rv)
    return [] if table.empty else queries.families(table)


def fidelity_table(sel: Selection) -> pd.DataFrame:
    """Held-out blends against the models trained at the same λs (queries.fidelity_table)."""
    stamp, db, rv = _store()
    return queries.fidelity_table(_checkpoint_table(stamp, sel, db, rv))


def trajectory(checkpoint_id: str) -> pd.DataFrame:
    stamp, db, rv = _store()
    return _trajectory(stamp, checkpoint_id, db, rv)


def outcomes(sel: Selection) -> pd.DataFrame:
    stamp, db, rv = _store()
    return _outcomes(stamp, sel, db, rv)


def attack_outcomes(sel: Selection) -> pd.DataFrame:
    """Outcome counts on the jailbreak attack set (explorer/attacks.py), by the selected judge."""
    return outcomes(replace(sel, split=ATTACK_SPLIT))


def flips(sel: Selection, a: str, b: str, with_text: bool = False) -> pd.DataFrame:
    """The prompts whose outcome changes from a to b (queries.flips); the texts only if asked for: a
    large table is read without them and `with_texts` fills in the rows a page shows."""
    stamp, db, rv = _store()
    return _flips(stamp, a, b, sel, db, rv, with_text)


def with_texts(sel: Selection, rows: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Rows of a flips table with the prompt and both responses filled in."""
    stamp, db, rv = _store()
    texts = _texts(stamp, a, b, sel, tuple(rows["prompt_id"]), db, rv)
    return rows.drop(columns=["text", "response_a", "response_b"], errors="ignore").merge(texts, on="prompt_id", how="left")


def with_sampled_refusals(sel: Selection, flips: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Add sampled_a / sampled_b: 'refused 3 of 8 times' where the prompt was sampled, else ''."""
    stamp, db, rv = _store()
    shares = _sampled_shares(stamp, sel, db, rv).set_index(["checkpoint_id", "prompt_id"])
    out = flips.copy()
    for side, cid in (("a", a), ("b", b)):
        out[f"sampled_{side}"] = [
            f"refused {int(shares.at[(cid, p), 'refused'])} of {int(shares.at[(cid, p), 'k'])} times"
            if (cid, p) in shares.index else "" for p in out["prompt_id"]]
    return out


def judged(sel: Selection, checkpoint_id: str) -> pd.DataFrame:
    """One checkpoint's responses with the selected judge's label and the newest human label, if any."""
    stamp, db, rv = _store()
    df = _responses(stamp, checkpoint_id, checkpoint_id, sel, db, rv)
    df = df.rename(columns={"response_a": "response", "judge_label_a": "judge_label"})[
        ["prompt_id", "suite", "category", "kind", "text", "response", "judge_label"]]
    human = human_labels()
    human = human[human["checkpoint_id"] == checkpoint_id].drop_duplicates("prompt_id")
    return df.merge(human[["prompt_id", "label", "reviewer"]].rename(columns={"label": "human_label"}),
                    on="prompt_id", how="left")


def judge_disagreements(sel: Selection) -> pd.DataFrame:
    stamp, db, rv = _store()
    return _judge_disagreements(stamp, sel.split, db, rv)


def prompts(sel: Selection) -> pd.DataFrame:
    stamp, db, rv = _store()
    return _prompts(stamp, sel.split, db, rv)


def judge_metrics() -> pd.DataFrame:
    return _judge_metrics(*_store())


def human_labels() -> pd.DataFrame:
    return _human_labels(*_store())  # a saved label changes the stamp: seen at once
