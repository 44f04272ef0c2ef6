"""Pilot: do more varied training pairs make the trade-off hold on prompts training never saw?

    python -m bench.pilot_pairs [--work DIR] [--lambda-safe 3] [--lambda-helpful 0.1]

Trains one grid point with the intent twins of data/suites/benign_varied.csv added to the pool the pairs
are drawn from (training only: the prompt table, its splits and every test suite stay as they are), then
evaluates it on the suites training never saw (HarmBench, benign_unseen) with the store's primary judge,
beside the shipped checkpoint at the same λs as the shipped store has it. Violation + over-refusal on
those suites is the figure: 1 for a model refusing at random whatever its rate, lower is better
discrimination. Everything it writes goes under --work (pairs, adapter, a store of its own).

It reads the twins straight from the CSV, all 240 groups, as the pilot behind the README's figures was run;
the prompt table's training-only `intent_twins` suite (train.intent_twins) leaves out the few groups that
come close to a measured prompt.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from explorer import pairs, queries
from explorer.checkpoints import run_id
from explorer.config import DEFAULT_RECIPE, ROOT, load_recipe
from explorer.suites import SUITES_DIR, UNSEEN_SUITES, _row, load_prompts, read_table


def varied_twins() -> pd.DataFrame:
    """benign_varied.csv as training rows: each benign prompt and its harmful twin, one group."""
    df = read_table(SUITES_DIR / "benign_varied.csv", ["id", "prompt", "type", "contrast_prompt", "contrast_category"])
    rows = []
    for r in df.itertuples():
        rows.append({**_row("benign_varied", "project", r.id, r.type, r.prompt, group=r.id), "kind": "benign",
                     "expected": "comply", "split": "train"})
        rows.append({**_row("contrast_varied", "project", f"{r.id}-twin", r.contrast_category, r.contrast_prompt,
                            group=r.id), "kind": "harmful", "expected": "refuse", "split": "train"})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=str(ROOT / ".cache" / "pilot-pairs"))
    ap.add_argument("--lambda-safe", type=float, default=3.0)
    ap.add_argument("--lambda-helpful", type=float, default=0.1)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    from explorer.checkpoints import discover
    from explorer.evaluate import attach_adapters, evaluate, register
    from explorer.judges import get_judge
    from explorer.model import load_base
    from explorer.train import train_run

    recipe = load_recipe(DEFAULT_RECIPE).with_loss(lambda_safe=args.lambda_safe, lambda_helpful=args.lambda_helpful)
    shipped = load_prompts()
    pool = pd.concat([shipped, varied_twins()], ignore_index=True)
    pairs.PAIRS_DIR = work / "pairs"
    base = load_base(recipe.model, training=True)
    ps = pairs.cached_pairs(base, pool, recipe)
    from_twins = {k: sum(p.prompt_id.startswith("bv-") for p in getattr(ps, k)) for k in ("safe", "helpful")}
    cid = run_id(args.lambda_safe, args.lambda_helpful)
    out = work / "checkpoints" / "pilot" / cid
    if not (out / "manifest.json").is_file():
        train_run(base, ps, recipe, out)

    db = work / "pilot.duckdb"
    unseen = shipped[shipped["suite"].isin(UNSEEN_SUITES) & (shipped["split"] == "test")]
    judge = queries.default_judge(ROOT / "data" / "eval.duckdb") or recipe.eval.primary_judge
    base = load_base(recipe.model)  # evaluated as the shipped store was: the inference settings
    infos = [i for i in discover(out.parent, base) if i.id == cid]
    register(infos, unseen, recipe, db)
    evaluate(attach_adapters(base, infos), infos, unseen, recipe, [get_judge(judge)], db)

    def unseen_rates(store: Path) -> dict:
        row = queries.checkpoint_table(judge, store).set_index("checkpoint_id").loc[cid]
        return {k: float(row[f"unseen_{k}_rate"]) for k in ("violation", "over_refusal")}

    result = {"checkpoint": cid, "judge": judge, "pairs_from_twins": from_twins, "pairs": ps.stats,
              "shipped_pairs": unseen_rates(ROOT / "data" / "eval.duckdb"), "varied_pairs": unseen_rates(db)}
    for k in ("shipped_pairs", "varied_pairs"):
        result[k]["sum"] = result[k]["violation"] + result[k]["over_refusal"]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
