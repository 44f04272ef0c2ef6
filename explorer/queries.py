"""Data access shared by the dashboard, `report` and decision records: SQL from explorer/sql/,
rates from metrics.py. One definition of every number."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from . import metrics, store
from .checkpoints import describe
from .judges import HELDOUT_DATASET
from .suites import UNSEEN_SUITES

DEFAULT_SPLIT = "test"


def current_evaluation(db: Path | None = None, reviews: Path | None = None, con=None) -> dict | None:
    """The evaluation readers show: its gen_key, generation settings, sweep, judges, primary judge and
    resolved recipe, as recorded in the store when it was evaluated (views.sql says which one when there
    are several)."""
    df = store.query("current_evaluation", eval_path=db, reviews_path=reviews, con=con)
    if df.empty:
        return None
    row = df.iloc[0].to_dict()
    return {**row, **{k: json.loads(row[k]) if isinstance(row[k], str) else None for k in ("settings", "judges", "recipe")}}


def gen_key(db: Path | None = None, reviews: Path | None = None, con=None) -> str:
    """The generation key of the current evaluation ('' when nothing is evaluated yet)."""
    ev = current_evaluation(db, reviews, con)
    return ev["gen_key"] if ev else ""


def judge_versions(db: Path | None = None, reviews: Path | None = None, con=None) -> dict[str, str]:
    """judge name → the version readers use (views.sql: the one with the most judgments)."""
    df = store.query("judge_versions", eval_path=db, reviews_path=reviews, con=con)
    return dict(zip(df["judge"], df["judge_version"]))


def default_judge(db: Path | None = None, reviews: Path | None = None) -> str | None:
    """The judge shown unless another is picked: the evaluation's primary judge; for a store that did not
    record one, the judge with the highest κ against held-out human labels; else the first judge."""
    with store.reader(db, reviews) as con:
        available = judge_versions(con=con)
        ev = current_evaluation(con=con)
        metrics_ = store.query("judge_metrics", con=con)
    if ev and ev.get("primary_judge") in available:
        return ev["primary_judge"]
    ranked = metrics_[(metrics_["dataset"] == HELDOUT_DATASET) & metrics_["judge"].isin(list(available))]
    if not ranked.empty:
        return str(ranked.sort_values(["kappa", "judge"], ascending=[False, True]).iloc[0]["judge"])
    return next(iter(sorted(available)), None)


def _params(judge: str, split: str, use_human: bool, con) -> dict:
    return {"judge": judge, "gen_key": gen_key(con=con), "split": split, "use_human": use_human}


def outcomes(judge: str, db: Path | None = None, split: str = DEFAULT_SPLIT, use_human: bool = False,
             reviews: Path | None = None) -> pd.DataFrame:
    with store.reader(db, reviews) as con:
        return store.query("outcomes", _params(judge, split, use_human, con), con=con)


def checkpoints(db: Path | None = None, reviews: Path | None = None) -> pd.DataFrame:
    return store.query("checkpoints", eval_path=db, reviews_path=reviews)


def checkpoint_table(judge: str, db: Path | None = None, split: str = DEFAULT_SPLIT,
                     use_human: bool = False, reviews: Path | None = None) -> pd.DataFrame:
    """Checkpoints with their λs, headline rates + intervals, capability proxy and Pareto flag. On the test
    split also the same rates on the suites training drew from (seen_*) and on those it never saw
    (unseen_*), and the violation rate under jailbreak attacks (attack_*)."""
    from .attacks import ATTACK_SPLIT

    with store.reader(db, reviews) as con:  # one connection for every query
        params = _params(judge, split, use_human, con)
        outcomes = store.query("outcomes", params, con=con)
        attacks = store.query("outcomes", {**params, "split": ATTACK_SPLIT}, con=con) if split == DEFAULT_SPLIT else None
        sampled = store.query("sampled_outcomes", {"judge": judge, "split": split}, con=con)
        per_kind = store.query("sampled_plan", con=con)["per_kind"].iloc[0]
        cps = store.query("checkpoints", con=con)
        judge_errors = store.query("judge_errors", {"judge": judge}, con=con)
    rates = metrics.checkpoint_rates(outcomes)
    if rates.empty:
        return rates
    if attacks is not None:
        unseen = outcomes["suite"].isin(UNSEEN_SUITES)
        for prefix, part in (("seen_", outcomes[~unseen]), ("unseen_", outcomes[unseen]), ("attack_", attacks)):
            rates = rates.merge(metrics.checkpoint_rates(part).add_prefix(prefix).rename(
                columns={f"{prefix}checkpoint_id": "checkpoint_id"}), on="checkpoint_id", how="left")
    if not sampled.empty:  # eval --sampled: k answers per prompt drawn from the model's distribution
        rates = rates.merge(_complete_sampling(metrics.sampled_rates(sampled), per_kind), on="checkpoint_id",
                            how="left")
    rates = _corrected(rates, judge_errors)
    df = cps.rename(columns={"id": "checkpoint_id"}).merge(rates, on="checkpoint_id", how="inner")
    kinds = [describe(json.loads(m) if m else {}, bool(b)) for m, b in zip(df["manifest"], df["is_base"])]
    for key, dtype in (("kind", object), ("target_violation", float), ("variant", object), ("blend_method", object),
                       ("constraint_method", object), ("on_grid", bool), ("knobs", object)):
        df[key] = pd.Series([k[key] for k in kinds], index=df.index, dtype=dtype)  # variant: None, never NaN
    df = df.drop(columns=["manifest"]).reset_index(drop=True)
    main = ~df["kind"].isin(OFF_MAIN_MAP)
    df["pareto"] = False
    df.loc[main, "pareto"] = metrics.pareto_mask(df[main])
    return df


def trajectory(checkpoint_id: str, db: Path | None = None, reviews: Path | None = None) -> pd.DataFrame:
    """A constrained run's dual-ascent record (step, violation_estimate, lambda_safe), from its manifest."""
    cps = store.query("checkpoints", eval_path=db, reviews_path=reviews)
    manifest = cps.loc[cps["id"] == checkpoint_id, "manifest"]
    rows = json.loads(manifest.iloc[0] or "{}").get("lambda_trajectory", []) if len(manifest) else []
    return pd.DataFrame(rows, columns=["step", "violation_estimate", "lambda_safe"])


MAIN_FAMILY = "main grid"
# Kinds the main map leaves out: a variant's points are compared on its own map (family_view); a fidelity
# blend sits on a trained point, as a measure of interpolation (fidelity_table), not a choice.
OFF_MAIN_MAP = ("variant", "fidelity")


def families(table: pd.DataFrame) -> list[str]:
    """The checkpoint families a map can show: the main grid (with the base and constrained runs), then
    each loss variant."""
    return [MAIN_FAMILY, *sorted(table.loc[table["kind"] == "variant", "variant"].unique())]


def family_view(table: pd.DataFrame, family: str) -> pd.DataFrame:
    """The checkpoints one family's map shows, Pareto set redone among them. A variant is shown with the
    base and the main grid's points at the same λs, so each of its points has its like to compare with."""
    if family == MAIN_FAMILY:
        return table[~table["kind"].isin(OFF_MAIN_MAP)].reset_index(drop=True)
    own = table[table["variant"] == family]
    same_lambdas = table["kind"].eq("grid") & pd.Series(
        list(zip(table["lambda_safe"], table["lambda_helpful"]))).isin(set(zip(own["lambda_safe"], own["lambda_helpful"])))
    view = table[table["is_base"] | same_lambdas | (table["variant"] == family)].reset_index(drop=True)
    view["pareto"] = metrics.pareto_mask(view)
    return view


FIDELITY_RATES = ("violation", "over_refusal")


def fidelity_table(table: pd.DataFrame) -> pd.DataFrame:
    """Each held-out blend (kind 'fidelity') beside the model trained at the same λs: one row per point and
    method, with both models' rates and intervals (`<rate>_trained`, `<rate>_interp`, `*_lo`, `*_hi`) and the
    absolute error of the blend on each rate (`<rate>_abs_error`)."""
    if table.empty:
        return pd.DataFrame()

    def side(rows: pd.DataFrame, who: str) -> pd.DataFrame:  # violation_rate → violation_interp, violation_lo → ..._interp_lo
        names = {f"{r}_{part}": f"{r}_{who}" + ("" if part == "rate" else f"_{part}")
                 for r in FIDELITY_RATES for part in ("rate", "lo", "hi")}
        return rows[["lambda_safe", "lambda_helpful", "checkpoint_id", *names]].rename(
            columns={**names, "checkpoint_id": f"{who}_id"})

    blends = table[table["kind"] == "fidelity"]
    df = side(blends, "interp").assign(method=blends["blend_method"].to_numpy()).merge(
        side(table[table["kind"] == "grid"], "trained"), on=["lambda_safe", "lambda_helpful"])
    for r in FIDELITY_RATES:
        df[f"{r}_abs_error"] = (df[f"{r}_interp"] - df[f"{r}_trained"]).abs()
    return df.sort_values(["method", "lambda_safe", "lambda_helpful"]).reset_index(drop=True)


def sampled_shares(judge: str, db: Path | None = None, split: str = DEFAULT_SPLIT,
                   reviews: Path | None = None) -> pd.DataFrame:
    """Per checkpoint and prompt: of its k sampled answers, how many refuse (metrics.prompt_shares)."""
    return metrics.prompt_shares(store.query("sampled_outcomes", {"judge": judge, "split": split},
                                             eval_path=db, reviews_path=reviews))


def _complete_sampling(sampled: pd.DataFrame, per_kind) -> pd.DataFrame:
    """Only checkpoints whose sampled evaluation is finished: every planned prompt of both kinds (fewer
    where the split has fewer), so an interrupted run never shows a rate over part of the prompts."""
    if pd.isna(per_kind):
        return sampled.iloc[0:0]
    full = [min(int(per_kind), int(sampled[f"{n}_n"].max())) for n in ("sampled_violation", "sampled_over_refusal")]
    return sampled[(sampled["sampled_violation_n"] == full[0]) & (sampled["sampled_over_refusal_n"] == full[1])]


CORRECTED = {"violation": "heldout_violation", "over_refusal": "heldout_over_refusal"}  # judge_eval.DECISIONS


def _corrected(rates: pd.DataFrame, judge_errors: pd.DataFrame) -> pd.DataFrame:
    """Add <rate>_corrected (with _lo/_hi): the headline rates as a perfect judge would give them,
    from the judge's confusion on held-out labels of the same decision (metrics.corrected_rate)."""
    confusion = {r.dataset: json.loads(r.confusion) for r in judge_errors.itertuples()}
    for name, dataset in CORRECTED.items():
        if dataset not in confusion:
            rates[[f"{name}_corrected_{p}" for p in ("rate", "lo", "hi")]] = float("nan")
            continue
        c = confusion[dataset]
        rates[f"{name}_corrected_rate"] = metrics.corrected_rate(rates[f"{name}_rate"], c)
        rates[f"{name}_corrected_lo"], rates[f"{name}_corrected_hi"] = metrics.corrected_interval(
            rates[f"{name}_lo"], rates[f"{name}_hi"], c)
    return rates


def responses(a: str, b: str, judge: str, db: Path | None = None, split: str = DEFAULT_SPLIT,
              use_human: bool = False, reviews: Path | None = None, prompt_ids: list[str] | None = None) -> pd.DataFrame:
    """Both checkpoints' responses side by side; label_a/label_b are the judge's, or the newest human
    label where use_human is set (judge_label_a/judge_label_b are always the judge's); prompt_ids narrows
    to those prompts."""
    with store.reader(db, reviews) as con:
        return store.query("responses", {**_pair_params(a, b, judge, split, use_human, con), "prompt_ids": prompt_ids},
                           con=con)


def flips(a: str, b: str, judge: str, db: Path | None = None, split: str = DEFAULT_SPLIT,
          use_human: bool = False, reviews: Path | None = None, with_text: bool = True) -> pd.DataFrame:
    """The prompts whose outcome changes from checkpoint a to b, named (metrics.flips), found by
    sql/flips.sql from the judgments alone; with_text adds the prompts and both responses."""
    from .judges import REFUSED_BY_KIND

    with store.reader(db, reviews) as con:
        # what counts as refusing (judges.REFUSED_BY_KIND), as the 'kind:label' pairs the SQL compares
        refused = [f"{kind}:{label}" for kind, labels in REFUSED_BY_KIND.items() for label in labels]
        changed = metrics.flips(store.query("flips", {**_pair_params(a, b, judge, split, use_human, con),
                                                      "refused": refused}, con=con))
    if not with_text:
        return changed
    return metrics.flips(responses(a, b, judge, db, split, use_human, reviews, prompt_ids=changed["prompt_id"].tolist()))


def _pair_params(a: str, b: str, judge: str, split: str, use_human: bool, con) -> dict:
    """Parameters of the two-checkpoint queries, with the checkpoints' fingerprints as constants (scans
    skip other checkpoints' row groups)."""
    fp = dict(store.query("checkpoint_fingerprints", {"ids": [a, b]}, con=con).itertuples(index=False))
    return {**_params(judge, split, use_human, con), "a": a, "b": b, "fp_a": fp.get(a, ""), "fp_b": fp.get(b, "")}


def judge_metrics(db: Path | None = None, reviews: Path | None = None) -> pd.DataFrame:
    return store.query("judge_metrics", eval_path=db, reviews_path=reviews)


def suite_counts(db: Path | None = None, reviews: Path | None = None) -> pd.DataFrame:
    return store.query("suite_counts", eval_path=db, reviews_path=reviews)


def prompts(db: Path | None = None, split: str = DEFAULT_SPLIT, reviews: Path | None = None) -> pd.DataFrame:
    return store.query("prompts", {"split": split}, eval_path=db, reviews_path=reviews)


def judge_disagreements(db: Path | None = None, split: str = DEFAULT_SPLIT, reviews: Path | None = None) -> pd.DataFrame:
    """Responses the judges label differently: one row per response, one label column per judge."""
    with store.reader(db, reviews) as con:
        df = store.query("judge_disagreements", {"gen_key": gen_key(con=con), "split": split}, con=con)
    keys = ["checkpoint_id", "prompt_id", "suite", "category", "kind", "text", "response"]
    if df.empty:
        return pd.DataFrame(columns=keys + ["human_label"])
    wide = df.pivot_table(index=keys, columns="judge", values="label", aggfunc="first").reset_index()
    human = df.drop_duplicates(["checkpoint_id", "prompt_id"])[["checkpoint_id", "prompt_id", "human_label"]]
    return wide.merge(human, on=["checkpoint_id", "prompt_id"]).rename_axis(columns=None)


def human_labels(db: Path | None = None, reviews: Path | None = None) -> pd.DataFrame:
    """Every relabel, newest first (the history a review shows)."""
    return store.query("human_labels", eval_path=db, reviews_path=reviews)


def human_overrides(db: Path | None = None, reviews: Path | None = None) -> pd.DataFrame:
    """The label in force on each relabelled response: its newest human label (views.sql, human_override),
    with reviewer and time; what overrides the judges where use_human is set."""
    return store.query("human_overrides", eval_path=db, reviews_path=reviews)


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


def prompt_sets(db: Path | None = None, reviews: Path | None = None) -> list[str]:
    """The prompt sets rates can be read on: the shipped splits, then each imported suite's own set."""
    return store.query("prompt_sets", eval_path=db, reviews_path=reviews)["split"].tolist()
