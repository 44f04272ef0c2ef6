"""Synthetic evaluation stores: `write_answers`, the one way tests and benches write a checkpoint's answers
and their judgments into a store (tests/conftest.py builds the dashboard tests' store with it), and
`build`, a store at dashboard scale for the UI bench (bench/ui.py: 25 checkpoints × 40,000 prompts = 1M
generations), built in a temp dir and never committed."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from explorer import store
from explorer.checkpoints import CheckpointInfo, run_id
from explorer.config import DEFAULT_RECIPE, load_recipe
from explorer.evaluate import gen_key, register
from explorer.judges import KeywordJudge, Verdict


def write_answers(con, checkpoint, prompts: pd.DataFrame, responses: Sequence[str], key: str, judges: Sequence,
                  n_tokens: int = 12, seconds: float = 0.1) -> None:
    """Insert one checkpoint's answers to `prompts` (columns id and text; the prompts and the checkpoint
    registered already) and every judge's verdicts on them, inside an open store.writer("eval") transaction.
    `checkpoint` is anything with .id and .fingerprint (a CheckpointInfo, a row of queries.checkpoints);
    `key` the generation settings' key (evaluate.gen_key); each judge has name, version and
    judge(prompt_texts, responses) -> [Verdict], as explorer/judges.py's."""
    gens = pd.DataFrame({"checkpoint_fp": checkpoint.fingerprint, "checkpoint_id": checkpoint.id,
                         "prompt_id": prompts["id"].to_numpy(), "gen_key": key, "response": list(responses),
                         "n_tokens": n_tokens, "seconds": seconds})
    con.register("new_generations", gens)
    con.execute(store.sql("insert_generations"))
    con.unregister("new_generations")
    texts = prompts["text"].tolist()
    for j in judges:
        verdicts = j.judge(texts, gens["response"].tolist())
        rows = gens[["checkpoint_fp", "prompt_id", "gen_key"]].assign(
            judge=j.name, judge_version=j.version, label=[v.label for v in verdicts],
            explanation=[v.explanation for v in verdicts])
        con.register("new_judgments", rows)
        con.execute(store.sql("insert_judgments"))
        con.unregister("new_judgments")


@dataclass(frozen=True)
class GivenLabels:
    """A judge whose verdicts are drawn in advance, one label per response, under a real judge's name and
    version (the bench draws a million labels; judging a million canned texts would measure the judge)."""
    name: str
    version: str
    labels: Sequence[str]

    def judge(self, prompts: list[str], responses: list[str]) -> list[Verdict]:
        assert len(self.labels) == len(responses)
        return [Verdict(label, "synthetic") for label in self.labels]


CATEGORIES = {"harmful": ["violence", "fraud", "cybercrime", "privacy"], "benign": ["homonyms", "safe_targets"],
              "general": ["coding", "facts"]}


def synthetic_prompts(n_prompts: int, rng: np.random.Generator) -> pd.DataFrame:
    kinds = rng.choice(["harmful", "benign", "general"], size=n_prompts, p=[0.6, 0.3, 0.1])
    ids = [f"p{i:05d}" for i in range(n_prompts)]
    return pd.DataFrame({"id": ids, "suite": "synthetic", "source": "bench",
                         "category": [rng.choice(CATEGORIES[k]) for k in kinds], "kind": kinds,
                         "expected": ["refuse" if k == "harmful" else "comply" for k in kinds], "split": "test",
                         "text": [f"synthetic prompt {i}" for i in range(n_prompts)], "group": ids})


def build(directory: Path, n_checkpoints: int = 25, n_prompts: int = 4000, seed: int = 0):
    """A store of n_checkpoints grid points (λ_safe, λ_helpful on a square grid of integers) answering
    n_prompts prompts, refusing more with λ_safe and less with λ_helpful. Returns (store, reviews store,
    judge name)."""
    rng = np.random.default_rng(seed)
    db, reviews = directory / "eval.duckdb", directory / "reviews.duckdb"
    side = int(round(n_checkpoints ** 0.5))
    grid = [(float(i), float(j)) for i in range(side) for j in range(side)][:n_checkpoints]
    infos = [CheckpointInfo(run_id(ls, lh), None if (ls, lh) == (0, 0) else directory / run_id(ls, lh),
                            f"fp-{run_id(ls, lh)}", ls, lh, {"base_fingerprint": "b"}) for ls, lh in grid]
    prompts = synthetic_prompts(n_prompts, rng)
    recipe = load_recipe(DEFAULT_RECIPE, {"sweep": {"name": "bench"}})
    register(infos, prompts, recipe, db)
    kw, harmful = KeywordJudge(), (prompts["kind"] == "harmful").to_numpy()
    with store.writer("eval", db) as con:
        for info in infos:
            ls, lh = info.lambda_safe, info.lambda_helpful
            p_refuse = np.where(harmful, 0.1 + 0.2 * ls, 0.05 + 0.1 * ls - 0.05 * lh).clip(0, 1)
            labels = np.where(rng.random(n_prompts) < p_refuse, "full_refusal", "full_compliance")
            write_answers(con, info, prompts, ["synthetic response text " * 4] * n_prompts, gen_key(recipe),
                          [GivenLabels(kw.name, kw.version, labels)], n_tokens=24)
    store.ensure("reviews", reviews)
    return db, reviews, kw.name
