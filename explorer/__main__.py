"""Command line: python -m explorer {setup,suites,pairs,train,sweep,eval,judges,report,app,bench}.

Errors print one line naming the problem and the fix, exit code 2 for bad input; --debug shows the
traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import ROOT, ConfigError

DEFAULT_RECIPE = ROOT / "configs" / "default.yaml"


def _recipe(args):
    from .config import load_recipe, parse_overrides

    overrides = parse_overrides(getattr(args, "set", None))
    if getattr(args, "target_violation", None) is not None:
        overrides.setdefault("sweep", {})["target_violation"] = args.target_violation
    return load_recipe(args.recipe, overrides)


def cmd_setup(args) -> int:
    from .model import load_base, provision
    from .suites import PROMPTS_PATH, build_prompt_table, load_prompts, write_prompt_table

    recipe = _recipe(args)
    path = provision(recipe.model)
    print(f"base model ready: {path}")
    if not PROMPTS_PATH.is_file():
        write_prompt_table(build_prompt_table())
    print(f"prompt table: {len(load_prompts())} prompts in {PROMPTS_PATH.relative_to(ROOT)}")
    from . import store

    store.ensure("eval")
    store.ensure("reviews")
    if args.check_load:
        load_base(recipe.model, progress=False)
    return 0


def cmd_suites(args) -> int:
    from .suites import build_prompt_table, counts, write_prompt_table

    df = build_prompt_table(use_embeddings=not args.no_embeddings)
    write_prompt_table(df)
    print(counts(df).to_string(index=False))
    return 0


def cmd_pairs(args) -> int:
    from .model import load_base
    from .pairs import cached_pairs
    from .suites import load_prompts

    recipe = _recipe(args)
    ps = cached_pairs(load_base(recipe.model), load_prompts(), recipe)
    print(json.dumps({"fingerprint": ps.fingerprint, **ps.stats}, indent=1))
    return 0


def cmd_train(args) -> int:
    from .model import load_base
    from .pairs import cached_pairs
    from .suites import load_prompts
    from .sweep import sweep_dir
    from .train import run_id, train_run

    recipe = _recipe(args)
    base = load_base(recipe.model, training=True)
    ps = cached_pairs(base, load_prompts(), recipe)
    out = Path(args.out) if args.out else sweep_dir(recipe) / run_id(recipe.loss.lambda_safe, recipe.loss.lambda_helpful)
    res = train_run(base, ps, recipe, out)
    print(f"saved {res.directory} ({res.manifest['wall_time_s']['total']} s)")
    return 0


def cmd_sweep(args) -> int:
    from .sweep import run_constrained, run_sweep

    recipe = _recipe(args)
    if recipe.sweep.target_violation is not None:
        print(f"saved {run_constrained(recipe)}")
        return 0
    for d in run_sweep(recipe, root=Path(args.root) if args.root else ROOT / "checkpoints"):
        print(d.relative_to(ROOT) if d.is_relative_to(ROOT) else d)
    return 0


def cmd_eval(args) -> int:
    from . import store
    from .evaluate import capability, discover, evaluate, register, attach_adapters
    from .judges import get_judge
    from .model import load_base
    from .suites import import_suite_file, load_prompts, parse_column_map
    from .sweep import sweep_dir

    recipe = _recipe(args)
    if args.suite_file:
        cmap = parse_column_map(args.columns) if args.columns else None
        prompts = import_suite_file(Path(args.suite_file), args.format, cmap)
        print(f"{args.suite_file}: {len(prompts)} prompts ({prompts['kind'].value_counts().to_dict()})")
    else:
        prompts = load_prompts()
        prompts = prompts[prompts["split"].isin(recipe.eval.splits)]
    judges = [get_judge(n) for n in (args.judge or recipe.eval.judges)]
    if args.limit:
        prompts = prompts.groupby("suite", group_keys=False).head(args.limit)
    base = load_base(recipe.model)
    infos = discover(Path(args.checkpoints) if args.checkpoints else sweep_dir(recipe), base)
    if args.only:
        infos = [i for i in infos if i.id in set(args.only)]
    db = Path(args.db) if args.db else None
    register(infos, prompts, recipe.sweep.name, db)
    engine = attach_adapters(base, infos)  # one model, every adapter attached and switched by name
    out = evaluate(engine, infos, prompts, recipe, judges, db)
    if not args.suite_file:
        capability(engine, infos, recipe, db)
    print(f"evaluated {len(infos)} checkpoints × {len(prompts)} prompts: {out['generated']} new generations, "
          f"{out['judged']} new judgments → {db or store.EVAL_DB}")
    return 0


def cmd_judges(args) -> int:
    from .judge_eval import score_judges, train_from_labels

    if args.train:
        print(train_from_labels())
    for row in score_judges(db=Path(args.db) if args.db else None):
        print(f"{row['judge']:10s} {row['dataset']:28s} n={row['n_labels']:4d} agreement={row['agreement']:.3f} "
              f"kappa={row['kappa']:.3f}")
    return 0


def cmd_report(args) -> int:
    from .report import build_report, format_report

    rep = build_report(judge=args.judge, db=Path(args.db) if args.db else None)
    print(json.dumps(rep, indent=1, default=float) if args.json else format_report(rep))
    return 0


def cmd_app(args) -> int:
    import subprocess

    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.address", args.address,
           "--server.port", str(args.port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    return subprocess.call(cmd)


def cmd_bench(args) -> int:
    sys.path.insert(0, str(ROOT))
    from bench.run import main as bench_main

    return bench_main(args.only)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m explorer", description="Safety-tradeoff explorer")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    def with_recipe(sp):
        sp.add_argument("--recipe", default=str(DEFAULT_RECIPE), help="recipe YAML (default: configs/default.yaml)")
        sp.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a recipe value")
        return sp

    s = with_recipe(sub.add_parser("setup", help="provision the base model, build the prompt table, create stores"))
    s.add_argument("--check-load", action="store_true", help="also load the base model once")
    s.set_defaults(fn=cmd_setup)
    s = sub.add_parser("suites", help="rebuild data/prompts.csv (suites, categories, splits)")
    s.add_argument("--no-embeddings", action="store_true", help="skip embedding near-duplicate detection")
    s.set_defaults(fn=cmd_suites)
    with_recipe(sub.add_parser("pairs", help="build (or reuse) the training pairs")).set_defaults(fn=cmd_pairs)
    s = with_recipe(sub.add_parser("train", help="train one adapter at the recipe's λs"))
    s.add_argument("--out", help="output directory (default: checkpoints/<sweep>/<run-id>)")
    s.set_defaults(fn=cmd_train)
    s = with_recipe(sub.add_parser("sweep", help="train every grid point (resumable)"))
    s.add_argument("--target-violation", type=float, help="constrained mode: dual ascent on λ_safe toward ε")
    s.add_argument("--root", help="checkpoint root (default: checkpoints/)")
    s.set_defaults(fn=cmd_sweep)
    s = with_recipe(sub.add_parser("eval", help="generate + judge every checkpoint on the test split (incremental)"))
    s.add_argument("--suite-file", help="evaluate on your own suite file instead (CSV/JSONL)")
    s.add_argument("--format", default="auto", help="suite file format: auto | xstest | orbench | jbb")
    s.add_argument("--columns", help="column map for other files: text=COL,category=COL[,id=COL][,label=COL]")
    s.add_argument("--checkpoints", help="sweep directory (default: checkpoints/<sweep name>)")
    s.add_argument("--only", nargs="*", help="evaluate only these checkpoint ids")
    s.add_argument("--judge", action="append", help="judge name(s) (default: the recipe's)")
    s.add_argument("--limit", type=int, help="at most N prompts per suite (quick looks)")
    s.add_argument("--db", help="store path (default: data/eval.duckdb)")
    s.set_defaults(fn=cmd_eval)
    s = sub.add_parser("judges", help="score judges against the human labels (and --train the embedding judge)")
    s.add_argument("--train", action="store_true")
    s.add_argument("--db", help="store path")
    s.set_defaults(fn=cmd_judges)
    s = sub.add_parser("report", help="print the sweep's figures")
    s.add_argument("--json", action="store_true")
    s.add_argument("--judge", default=None, help="judge to report (default: the recipe's primary judge)")
    s.add_argument("--db", help="store path")
    s.set_defaults(fn=cmd_report)
    s = sub.add_parser("app", help="open the dashboard")
    s.add_argument("--address", default="localhost", help="listen address (default localhost only)")
    s.add_argument("--port", type=int, default=8501)
    s.set_defaults(fn=cmd_app)
    s = sub.add_parser("bench", help="run the benchmarks in bench/ and write bench/results.json")
    s.add_argument("--only", nargs="*", help="run only these benchmarks")
    s.set_defaults(fn=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
