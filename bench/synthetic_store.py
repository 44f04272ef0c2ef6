"""A synthetic store at dashboard scale (bench/run.py builds 25 checkpoints × 40,000 prompts = 1M generations)
for the UI benchmark. Built in a temp dir by bench/run.py; never committed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from explorer import store
from explorer.checkpoints import CheckpointInfo
from explorer.config import DEFAULT_RECIPE, load_recipe
from explorer.evaluate import gen_key, register
from explorer.judges import KeywordJudge


def build(directory: Path, n_checkpoints: int = 25, n_prompts: int = 4000, seed: int = 0):
    rng = np.random.default_rng(seed)
    db, reviews = directory / "eval.duckdb", directory / "reviews.duckdb"
    judge = KeywordJudge()
    side = int(round(n_checkpoints ** 0.5))
    cps = [(f"s{i}-h{j}", float(i), float(j)) for i in range(side) for j in range(side)][:n_checkpoints]
    kinds = rng.choice(["harmful", "benign", "general"], size=n_prompts, p=[0.6, 0.3, 0.1])
    cats = {"harmful": ["violence", "fraud", "cybercrime", "privacy"], "benign": ["homonyms", "safe_targets"],
            "general": ["coding", "facts"]}
    prompts = pd.DataFrame({"id": [f"p{i:05d}" for i in range(n_prompts)], "suite": "synthetic", "source": "bench",
                            "category": [rng.choice(cats[k]) for k in kinds], "kind": kinds,
                            "expected": ["refuse" if k == "harmful" else "comply" for k in kinds], "split": "test",
                            "text": [f"synthetic prompt {i}" for i in range(n_prompts)]})
    prompts["group"] = prompts["id"]
    recipe = load_recipe(DEFAULT_RECIPE, {"sweep": {"name": "bench"}})
    key = gen_key(recipe)
    register([CheckpointInfo(cid, None if cid == "s0-h0" else directory / cid, f"fp-{cid}", ls, lh,
                             {"base_fingerprint": "b"}) for cid, ls, lh in cps], prompts, recipe, db)
    with store.writer("eval", db) as con:
        for cid, ls, lh in cps:
            p_refuse = np.where(kinds == "harmful", 0.1 + 0.2 * ls, 0.05 + 0.1 * ls - 0.05 * lh).clip(0, 1)
            labels = np.where(rng.random(n_prompts) < p_refuse, "full_refusal", "full_compliance")
            gens = pd.DataFrame({"checkpoint_fp": f"fp-{cid}", "checkpoint_id": cid, "prompt_id": prompts["id"],
                                 "gen_key": key, "response": "synthetic response text " * 4, "n_tokens": 24,
                                 "seconds": 0.1})
            con.register("new_generations", gens)
            con.execute(store.sql("insert_generations"))
            js = gens[["checkpoint_fp", "prompt_id", "gen_key"]].assign(judge=judge.name, judge_version=judge.version,
                                                                        label=labels, explanation="synthetic")
            con.register("new_judgments", js)
            con.execute(store.sql("insert_judgments"))
    store.ensure("reviews", reviews)
    return db, reviews, judge.name
