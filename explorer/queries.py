"""Data access shared by the dashboard, `report` and decision records: SQL from explorer/sql/,
rates from metrics.py. One definition of every number."""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import pandas as pd

from . import metrics, store
from .config import ROOT, load_recipe

DEFAULT_SPLIT = "test"


@lru_cache(maxsize=1)
def _default_recipe():
    # read once per process: every dashboard query needs the judge and generation key it names
    return load_recipe(ROOT / "configs" / "default.yaml")


def default_judge() -> str:
    return _default_recipe().eval.primary_judge


def gen_key() -> str:
    from .evaluate import gen_key as key

    return key(_default_recipe())


def judge_versions(db: Path | None = None, reviews: Path | None = None, con=None) -> dict[str, str]:
    """judge name → the version whose judgments are in the store (the newest, by count)."""
    df = store.query("judge_versions", eval_path=db, reviews_path=reviews, con=con)
    return dict(zip(df["judge"], df["judge_version"]))


def _params(judge: str, split: str, use_human: bool, con) -> dict:
    return {"judge": judge, "judge_version": judge_versions(con=con).get(judge, ""), "gen_key": gen_key(),
            "split": split, "use_human": use_human}


def outcomes(judge: str, db: Path | None = None, split: str = DEFAULT_SPLIT, use_human: bool = False,
             reviews: Path | None = None) -> pd.DataFrame:
    with store.reader(db, reviews) as con:
        return store.query("outcomes", _params(judge, split, use_human, con), con=con)


def checkpoints(db: Path | None = None, reviews: Path | None = None) -> pd.DataFrame:
    return store.query("checkpoints", eval_path=db, reviews_path=reviews)


def checkpoint_table(judge: str, db: Path | None = None, split: str = DEFAULT_SPLIT,
                     use_human: bool = False, reviews: Path | None = None) -> pd.DataFrame:
    """Checkpoints with their λs, headline rates + intervals, capability proxy and Pareto flag."""
    with store.reader(db, reviews) as con:  # one connection for all three queries
        rates = metrics.checkpoint_rates(store.query("outcomes", _params(judge, split, use_human, con), con=con))
        cps = store.query("checkpoints", con=con)
    if rates.empty:
        return rates
    df = cps.rename(columns={"id": "checkpoint_id"}).merge(rates, on="checkpoint_id", how="inner")
    df["pareto"] = metrics.pareto_mask(df)
    return df.drop(columns=["manifest"]).reset_index(drop=True)


def responses(a: str, b: str, judge: str, db: Path | None = None, split: str = DEFAULT_SPLIT,
              reviews: Path | None = None) -> pd.DataFrame:
    with store.reader(db, reviews) as con:
        p = _params(judge, split, False, con)
        p.pop("use_human")
        return store.query("responses", {**p, "a": a, "b": b}, con=con)


def judge_metrics(db: Path | None = None, reviews: Path | None = None) -> pd.DataFrame:
    return store.query("judge_metrics", eval_path=db, reviews_path=reviews)


def suite_counts(db: Path | None = None, reviews: Path | None = None) -> pd.DataFrame:
    return store.query("suite_counts", eval_path=db, reviews_path=reviews)


def prompts(db: Path | None = None, split: str = DEFAULT_SPLIT, reviews: Path | None = None) -> pd.DataFrame:
    return store.query("prompts", {"split": split}, eval_path=db, reviews_path=reviews)


def judge_disagreements(db: Path | None = None, split: str = DEFAULT_SPLIT, reviews: Path | None = None) -> pd.DataFrame:
    """Responses the judges label differently: one row per response, one label column per judge."""
    df = store.query("judge_disagreements", {"gen_key": gen_key(), "split": split}, eval_path=db, reviews_path=reviews)
    keys = ["checkpoint_id", "prompt_id", "suite", "category", "kind", "text", "response"]
    if df.empty:
        return pd.DataFrame(columns=keys + ["human_label"])
    wide = df.pivot_table(index=keys, columns="judge", values="label", aggfunc="first").reset_index()
    human = df.drop_duplicates(["checkpoint_id", "prompt_id"])[["checkpoint_id", "prompt_id", "human_label"]]
    return wide.merge(human, on=["checkpoint_id", "prompt_id"]).rename_axis(columns=None)


def human_labels(db: Path | None = None, reviews: Path | None = None) -> pd.DataFrame:
    return store.query("human_labels", eval_path=db, reviews_path=reviews)


def add_human_label(checkpoint_id: str, prompt_id: str, label: str, reviewer: str, note: str = "",
                    reviews: Path | None = None) -> None:
    """Append a reviewer's label for one response; the newest label per response overrides the judges
    when outcomes are computed with use_human=True (sql/outcomes.sql)."""
    from .config import ConfigError
    from .judges import LABELS

    if label not in LABELS:
        raise ConfigError(f"label {label!r} is not one of {', '.join(LABELS)}")
    if not reviewer.strip():
        raise ConfigError("enter your name as reviewer: every human label records who made it")
    with store.writer("reviews", reviews) as con:
        con.execute(store.sql("insert_human_label"), {"checkpoint_id": checkpoint_id, "prompt_id": prompt_id,
                                                      "label": label, "reviewer": reviewer.strip(), "note": note})


def content_hash(record: dict) -> str:
    """sha256 over the canonical JSON of a decision record (sorted keys, no whitespace)."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()
