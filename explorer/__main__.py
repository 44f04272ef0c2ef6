"""Command line: python -m explorer {setup,suites,pairs,train,sweep,eval,judges,report,app,bench}.

Errors print one line naming the problem and the fix, exit code 2 for bad input; --debug shows the
traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import DEFAULT_RECIPE, ROOT, ConfigError


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

    df = build_prompt_table()
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
    from .sweep import train_point

    out, result = train_point(_recipe(args), Path(args.out) if args.out else None)
    if result is None:
        print(f"{out}: already trained on these pairs (delete it to retrain)")
    else:
        print(f"saved {result.directory} ({result.manifest['wall_time_s']['total']} s)")
    return 0


def cmd_sweep(args) -> int:
    from .checkpoints import CHECKPOINTS_ROOT
    from .sweep import run_bisection, run_constrained, run_sweep

    recipe = _recipe(args)
    if args.bisect and recipe.sweep.target_violation is None:
        raise ConfigError("--bisect needs --target-violation ε (a rate in [0, 1])")
    root = Path(args.root) if args.root else CHECKPOINTS_ROOT
    if recipe.sweep.target_violation is not None:
        print(f"saved {(run_bisection if args.bisect else run_constrained)(recipe, root)}")
        return 0
    for d in run_sweep(recipe, root=root):
        print(d.relative_to(ROOT) if d.is_relative_to(ROOT) else d)
    return 0


def eval_request(args):
    """The `eval` options as a plan.EvalRequest (what the dashboard's background job builds directly)."""
    from .plan import EvalRequest, Launcher

    return EvalRequest(recipe_path=args.recipe, suite_file=args.suite_file, format=args.format, columns=args.columns,
                       checkpoints=args.checkpoints, only=tuple(args.only or ()), judges=tuple(args.judge or ()),
                       limit=args.limit, db=args.db, interpolate=args.interpolate, method=args.method,
                       held_out=args.held_out, densify=args.densify, fidelity=args.fidelity,
                       launcher=Launcher(args.launcher), sampled=args.sampled)


def cmd_eval(args) -> int:
    from .plan import describe_blends, plan_eval, run_plan

    recipe = _recipe(args)
    plan = plan_eval(eval_request(args), recipe)
    for line in [*plan.notes, *describe_blends(plan)]:
        print(line)
    if not plan.checkpoints:
        return 0
    out = run_plan(plan)
    print(f"evaluated {len(plan.checkpoints)} checkpoints × {out['what']}: {out['generated']} new generations, "
          f"{out['judged']} new judgments → {plan.db}")
    return 0


def cmd_import_family(args) -> int:
    from .family import import_family

    out = import_family(Path(args.directory), Path(args.family), name=args.name, link=args.link,
                        allow_mixed_ranks=args.allow_mixed_ranks)
    n = len([d for d in out.iterdir() if d.is_dir()])
    print(f"imported {n} checkpoints into {out}; evaluate them with `python -m explorer eval --checkpoints {out} "
          f"--db data/{out.name}.duckdb`")
    return 0


def _lambda_pair(text: str) -> tuple[float, float]:
    """'2,0.05' → (2.0, 0.05): a (λ_safe, λ_helpful) position for --interpolate."""
    import math

    try:
        ls, lh = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LS,LH (two numbers, e.g. 2,0.05), got {text!r}") from None
    if not (math.isfinite(ls) and math.isfinite(lh)):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return ls, lh


def cmd_judges(args) -> int:
    from .judge_eval import score_judges, train_from_labels

    if args.train:
        print(train_from_labels())
    for row in score_judges(db=Path(args.db) if args.db else None):
        print(f"{row['judge']:10s} {row['dataset']:28s} n={row['n_labels']:4d} agreement={row['agreement']:.3f} "
              f"kappa={row['kappa']:.3f}")
    return 0


def cmd_report(args) -> int:
    from . import queries, store
    from .report import build_report, format_report

    db = Path(args.db) if args.db else store.EVAL_DB
    if not db.is_file():
        raise ConfigError(f"{db}: no evaluation store there; run `python -m explorer eval` first, or pass --db "
                          "with the path of an existing store")
    rep = build_report(judge=args.judge, db=db, split=args.split)
    if args.json:
        print(json.dumps(rep, indent=1, default=float))
        return 0
    if args.markdown:
        from . import findings

        print(findings.to_markdown(rep, findings.probes_of(rep, db)), end="")
        return 0
    print(format_report(rep))
    if others := [s for s in queries.prompt_sets(db) if s != rep["split"] and s not in ("train", "dev")]:
        print(f"\nother prompt sets in this store (report --split NAME): {', '.join(others)}")
    return 0


def cmd_compact(args) -> int:
    from . import store

    before, after = store.compact(Path(args.db) if args.db else store.EVAL_DB)
    print(f"compacted: {before / 2**20:.1f} MB → {after / 2**20:.1f} MB")
    return 0


def cmd_app(args) -> int:
    import os
    import subprocess

    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.address", args.address,
           "--server.port", str(args.port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    env = dict(os.environ)  # another store and its family: the dashboard reads where these point (ui/data.py)
    for var, value in (("EXPLORER_DB", args.db), ("EXPLORER_CHECKPOINTS", args.checkpoints)):
        if value:
            if not Path(value).exists():
                raise ConfigError(f"{value}: no such {'store' if var == 'EXPLORER_DB' else 'sweep directory'}; "
                                  "evaluate the family first (python -m explorer eval --checkpoints DIR --db FILE)")
            env[var] = str(Path(value).resolve())
    return subprocess.call(cmd, env=env)


def cmd_bench(args) -> int:
    sys.path.insert(0, str(ROOT))
    from bench.run import main as bench_main

    return bench_main(args.only)


def _unit_rate(text: str) -> float:
    """A rate in (0, 1], e.g. --densify 0.1."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a rate between 0 and 1, e.g. 0.1, got {text!r}") from None
    if not 0 < x <= 1:
        raise argparse.ArgumentTypeError(f"expected a rate in (0, 1], got {text!r}")
    return x


def _positive_int(text: str) -> int:
    """argparse type for counts where 0 or a negative number would silently mean something else."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value} (leave the option out for no limit)")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m explorer", description="Safety-tradeoff explorer")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    command = _command_factory(sub)
    s = command("setup", cmd_setup, "provision the base model, build the prompt table, create stores", recipe=True)
    s.add_argument("--check-load", action="store_true", help="also load the base model once")
    command("suites", cmd_suites, "rebuild data/prompts.csv (suites, categories, splits)")
    command("pairs", cmd_pairs, "build (or reuse) the training pairs", recipe=True)
    s = command("train", cmd_train, "train one adapter at the recipe's λs", recipe=True)
    s.add_argument("--out", help="output directory (default: checkpoints/<sweep>/<run-id>)")
    s = command("sweep", cmd_sweep, "train every grid point (resumable)", recipe=True)
    s.add_argument("--target-violation", type=float, help="constrained mode: dual ascent on λ_safe toward ε")
    s.add_argument("--bisect", action="store_true", help="with --target-violation: bisection on λ_safe across runs "
                   "(sweep.bisect_lambda_safe, sweep.bisect_steps) instead of dual ascent inside one")
    s.add_argument("--root", help="checkpoint root (default: checkpoints/)")
    _eval_options(command("eval", cmd_eval, "generate + judge every checkpoint on the test split (incremental)",
                          recipe=True, db=True))
    s = command("import-family", cmd_import_family, "import checkpoints trained elsewhere with their knob values")
    s.add_argument("directory", help="folder of checkpoint folders (PEFT LoRA adapters or full HF checkpoints)")
    s.add_argument("--family", required=True, help="YAML or CSV: each folder's knob values and the base model")
    s.add_argument("--name", help="the family's sweep name (default: the folder's name)")
    s.add_argument("--link", action="store_true", help="link the weights instead of copying them")
    s.add_argument("--allow-mixed-ranks", action="store_true", help="import adapters of different LoRA ranks")
    s = command("judges", cmd_judges, "score judges against the human labels (and --train the embedding judge)", db=True)
    s.add_argument("--train", action="store_true")
    s = command("report", cmd_report, "print the sweep's figures", db=True)
    form = s.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="every figure as JSON")
    form.add_argument("--markdown", action="store_true", help="the findings as Markdown (docs/FINDINGS.md)")
    s.add_argument("--judge", default=None, help="judge to report (default: the evaluation's primary judge)")
    s.add_argument("--split", default=None,
                   help="prompt set: test (default) or an imported suite's set, e.g. import:my_suite")
    command("compact", cmd_compact, "rewrite the evaluation store without free space (before committing it)", db=True)
    s = command("app", cmd_app, "open the dashboard", db=True)
    s.add_argument("--checkpoints", help="the sweep directory its live view serves (default: checkpoints/<sweep>)")
    s.add_argument("--address", default="localhost", help="listen address (default localhost only)")
    s.add_argument("--port", type=int, default=8501)
    s = command("bench", cmd_bench, "run the benchmarks in bench/ and write bench/results.json")
    s.add_argument("--only", nargs="*", help="run only these benchmarks")
    return p


def _command_factory(sub):
    """`command(name, fn, help, recipe=, db=)` adds a subcommand with the shared options it takes, declared
    once each as parent parsers (SUPPRESS: --debug after the subcommand must not reset one before it)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    recipe_opts = argparse.ArgumentParser(add_help=False)
    recipe_opts.add_argument("--recipe", default=str(DEFAULT_RECIPE), help="recipe YAML (default: configs/default.yaml)")
    recipe_opts.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a recipe value")
    db_opts = argparse.ArgumentParser(add_help=False)
    db_opts.add_argument("--db", help="store path (default: data/eval.duckdb)")

    def command(name: str, fn, help: str, recipe: bool = False, db: bool = False) -> argparse.ArgumentParser:
        parents = [common, *([recipe_opts] if recipe else []), *([db_opts] if db else [])]
        s = sub.add_parser(name, help=help, parents=parents)
        s.set_defaults(fn=fn)
        return s

    return command


def _eval_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--suite-file", help="evaluate on your own suite file instead (CSV/JSONL), as its own prompt set")
    s.add_argument("--format", default="auto", help="suite file format: auto | xstest | orbench | jbb")
    s.add_argument("--columns", help="column map for other files: text=COL,category=COL[,id=COL][,label=COL]")
    s.add_argument("--checkpoints", help="sweep directory (default: checkpoints/<sweep name>)")
    s.add_argument("--only", nargs="+", help="evaluate only these checkpoint ids")
    s.add_argument("--judge", action="append", help="judge name(s) (default: the recipe's)")
    s.add_argument("--limit", type=_positive_int, help="at most N prompts per suite (quick looks)")
    s.add_argument("--interpolate", type=_lambda_pair, metavar="LS,LH",
                   help="evaluate the model blended from the trained grid at λ_safe=LS, λ_helpful=LH")
    s.add_argument("--method", choices=("exact", "ab_average"), default="exact",
                   help="blend for --interpolate: exact (ΔW = Σ w·B·A) or ab_average (A and B averaged; to compare)")
    s.add_argument("--held-out", action="store_true",
                   help="with --interpolate at a trained point: blend it from the rows beside it, its own row withheld")
    s.add_argument("--densify", type=_unit_rate, metavar="GAP",
                   help="evaluate exact blends along the stored frontier wherever neighbouring Pareto points differ in "
                        "violation rate by more than GAP (e.g. 0.1); rerun to refine")
    s.add_argument("--fidelity", action="store_true",
                   help="blend every trained point of the recipe's eval.fidelity_lambda_safe rows from the rows beside "
                        "it (both methods), to compare with the trained models (report: interpolation)")
    s.add_argument("--launcher", choices=("local", "ray"), default="local",
                   help="ray: one task per checkpoint (one GPU each where there are GPUs); this process writes the store")
    s.add_argument("--sampled", action="store_true",
                   help="k answers per prompt sampled from the model (eval.samples, eval.sampled_prompts), on the "
                        "Pareto checkpoints unless --only names others: the sampled violation rate")


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
