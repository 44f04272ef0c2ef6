"""Judges against humans: train the embedding judge on the labelled train part, score every judge on
the held-out part (three classes) and on JailbreakBench's human-labelled classifier comparison
(violation yes/no), and store agreement, Cohen's κ and the confusion matrix in the store.

data/labels/labels.csv holds responses labelled by hand against data/labels/GUIDE.md; its
`part` column (train | heldout, by stable hash of the prompt id) keeps validation honest.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from . import store
from .config import ROOT, ConfigError, package_file
from .judges import HELDOUT_DATASET, LABELS, REGISTRY, agreement, get_judge, is_over_refusal, is_violation, train_embedding_judge
from .suites import read_table

LABELS_PATH = ROOT / "data" / "labels" / "labels.csv"
HELDOUT_FRACTION = 0.35


def part_of(prompt_id: str) -> str:
    """Held out by prompt, so two checkpoints' responses to one prompt never straddle the split."""
    u = int(hashlib.sha256(f"labels:{prompt_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "heldout" if u < HELDOUT_FRACTION else "train"


def load_labels(path: Path = LABELS_PATH) -> pd.DataFrame:
    df = read_table(path, ["id", "prompt", "response", "label"])
    bad = df[~df["label"].isin(LABELS)]
    if len(bad):
        raise ConfigError(f"{path}: row {int(bad.index[0]) + 2}: label {bad['label'].iloc[0]!r} is not one of {LABELS}")
    df["part"] = df["prompt_id"].map(part_of)
    return df


def train_from_labels(path: Path = LABELS_PATH) -> str:
    """Fit the learned judges (embedding, probe) on the train part of the labels; never the held-out part."""
    from .probe import train_probe_judge

    df = load_labels(path)
    tr = df[df["part"] == "train"]
    responses = tr["response"].fillna("").tolist()
    emb = train_embedding_judge(responses, tr["label"].tolist())
    probe = train_probe_judge(tr["prompt"].tolist(), responses, tr["label"].tolist())
    return (f"embedding judge trained on {len(tr)} labels → {emb.relative_to(ROOT)}\n"
            f"probe judge trained on {len(tr)} labels → {probe.relative_to(ROOT)}")


def jbb_comparison() -> pd.DataFrame:
    """JailbreakBench classifier_comparison.csv: 100 responses with a human majority vote
    (1 = jailbroken, i.e. a violation)."""
    df = pd.read_csv(package_file("jailbreakbench", "data", "classifier_comparison.csv"))
    return df[["goal", "target_response", "human_majority"]].rename(columns={"goal": "prompt", "target_response": "response"})


# Binary decisions behind the two headline rates, scored on the held-out labels of the prompts they
# concern: their confusion matrices correct the rates for the judge's errors (metrics.corrected_rate).
DECISIONS = {"heldout_violation": ("harmful", is_violation), "heldout_over_refusal": ("benign", is_over_refusal)}


def score_judges(db: Path | None = None, names: list[str] | None = None) -> list[dict]:
    """Every judge against the held-out labels (three classes, and the violation and over-refusal
    decisions) and against JailbreakBench's human majority vote; stored in judge_metrics."""
    labels = load_labels()
    held = labels[labels["part"] == "heldout"]
    jbb = jbb_comparison()
    rows = []
    for name in names or list(REGISTRY):
        try:
            judge = get_judge(name)
        except ConfigError as e:
            print(f"skipping judge {name}: {e}")
            continue
        pred = [v.label for v in judge.judge(held["prompt"].tolist(), held["response"].fillna("").tolist())]
        rows.append(_metric_row(judge, HELDOUT_DATASET, held["label"].tolist(), pred, LABELS))
        for dataset, (kind, counts_against) in DECISIONS.items():
            part = (held["kind"] == "harmful") if kind == "harmful" else (held["kind"] != "harmful")
            truth = [str(counts_against(k, lab)) for k, lab in zip(held["kind"][part], held["label"][part])]
            called = [str(counts_against(k, lab)) for k, lab, m in zip(held["kind"], pred, part) if m]
            rows.append(_metric_row(judge, dataset, truth, called, ("False", "True")))
        verdicts = judge.judge(jbb["prompt"].tolist(), jbb["response"].fillna("").tolist())
        called = ["violation" if is_violation("harmful", v.label) else "no_violation" for v in verdicts]
        truth = ["violation" if h == 1 else "no_violation" for h in jbb["human_majority"]]
        rows.append(_metric_row(judge, "jbb_classifier_comparison", truth, called, ("no_violation", "violation")))
    with store.writer("eval", db) as con:
        con.register("new_metrics", pd.DataFrame(rows))
        con.execute(store.sql("insert_judge_metrics"))
    return rows


def _metric_row(judge, dataset: str, truth: list[str], called: list[str], labels: tuple[str, ...]) -> dict:
    a = agreement(truth, called, labels)
    return {"judge": judge.name, "judge_version": judge.version, "dataset": dataset, "n_labels": a["n"],
            "agreement": a["agreement"], "kappa": a["kappa"],
            "confusion": json.dumps({"labels": a["labels"], "matrix": a["confusion"]})}


def sample_for_labelling(db: Path, out: Path, per_checkpoint_kind: int = 40, seed: int = 0) -> pd.DataFrame:
    """Draw responses to label from a store of dev-split generations (never the test split, so the
    embedding judge never trains on the responses it later judges), balanced over checkpoints and
    prompt kinds; written without any judge output (see data/labels/GUIDE.md)."""
    with store.reader(db) as con:
        df = con.execute(store.sql("labelling_pool")).df()
    df["_order"] = [hashlib.sha256(f"{seed}:{c}:{p}".encode()).hexdigest() for c, p in zip(df["checkpoint_id"], df["prompt_id"])]
    sample = (df.sort_values("_order").groupby(["checkpoint_id", "kind"], group_keys=False).head(per_checkpoint_kind)
              .drop(columns="_order").reset_index(drop=True))
    sample.insert(0, "id", [f"lab-{i:04d}" for i in range(len(sample))])
    sample["label"] = ""
    sample["labeller"] = ""
    sample["note"] = ""
    sample.to_csv(out, index=False)
    return sample
