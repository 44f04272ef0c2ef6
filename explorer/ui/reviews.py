"""The dashboard's writes, all to the reviews store: human labels of responses and decision records
(and reading the records back, uncached, so a saved or tampered record shows as it is now).

A write changes the store's stamp, so the cached reads in explorer/ui/data.py see it on the next rerun.
"""
from __future__ import annotations

import pandas as pd

from .. import decisions, queries
from . import data
from .data import Selection


def add_human_label(checkpoint_id: str, prompt_id: str, label: str, reviewer: str, note: str = "") -> None:
    """A reviewer's label for one response (queries.add_human_label); ConfigError for a bad one."""
    queries.add_human_label(checkpoint_id, prompt_id, label, reviewer, note, reviews=data.paths().reviews_db)


def save_decision(sel: Selection, table: pd.DataFrame, checkpoint_id: str, baseline_id: str, rationale: str,
                  author: str) -> decisions.StoredDecision:
    """Freeze an operating point with its evidence under the sidebar's selection `sel` (decisions.build,
    decisions.save); ConfigError when the record is incomplete."""
    record = decisions.build(table, data.outcomes(sel), data.flips(sel, baseline_id, checkpoint_id, with_text=True),
                             checkpoint_id, baseline_id, sel.judge, data.judge_versions().get(sel.judge, ""),
                             sel.use_human, rationale, author, gen_key=data.evaluation()["gen_key"], split=sel.split)
    return decisions.save(record, data.paths().reviews_db)


def decision_records() -> list[decisions.StoredDecision]:
    """Every decision record, newest first, each checked against its content hash."""
    p = data.paths()
    return decisions.load(p.eval_db, p.reviews_db)
