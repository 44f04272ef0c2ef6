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
    from .model import load_base
    from .pairs import cached_pairs
    from .suites import load_prompts
    from dataclasses import asdict

    from .checkpoints import is_finished, run_id, sweep_dir, variant_of
    from .train import train_run

    recipe = _recipe(args)
    base = load_base(recipe.model, training=True)
    ps = cached_pairs(base, load_prompts(), recipe)
    loss = recipe.loss  # a variant's run carries its name ('s1-h0.1-hinge'), as in the sweep
    out = Path(args.out) if args.out else sweep_dir(recipe.sweep.name) / run_id(loss.lambda_safe, loss.lambda_helpful,
                                                                                 variant_of(asdict(loss)))
    if is_finished(out, ps.fingerprint):
        print(f"{out}: already trained on these pairs (delete it to retrain)")
        return 0
    res = train_run(base, ps, recipe, out)
    print(f"saved {res.directory} ({res.manifest['wall_time_s']['total']} s)")
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


def cmd_eval(args) -> int:
    from . import store
    from .checkpoints import BASE_ID, discover, manifests, sweep_dir
    from .evaluate import (attach_adapters, capability, evaluate, evaluate_ray, evaluate_sampled, register,
                           sampled_prompt_set)
    from .generate import adapter_name
    from .judges import get_judge
    from .model import load_base
    from .suites import import_suite_file, load_prompts, parse_column_map

    recipe = _recipe(args)
    # every input is checked before the model loads or anything is written
    if args.suite_file:
        cmap = parse_column_map(args.columns) if args.columns else None
        prompts = import_suite_file(Path(args.suite_file), args.format, cmap)
        print(f"{args.suite_file}: {len(prompts)} prompts ({prompts['kind'].value_counts().to_dict()}), "
              f"evaluated as their own set '{prompts['split'].iloc[0]}' (never part of the shipped test split)")
    else:
        prompts = load_prompts()
        prompts = prompts[prompts["split"].isin(recipe.eval.splits)]
    judges = [get_judge(n) for n in (args.judge or recipe.eval.judges)]
    if args.limit:
        prompts = prompts.groupby("suite", group_keys=False).head(args.limit)
    root = Path(args.checkpoints) if args.checkpoints else sweep_dir(recipe.sweep.name)
    only = set(args.only or ())
    _check_sweep_dir(root, bool(args.checkpoints), bool(only) and only <= {BASE_ID})
    if only and (unknown := sorted(only - {BASE_ID, *manifests(root)})):
        raise ConfigError(f"--only: no checkpoint {', '.join(map(repr, unknown))} in {root}; "
                          f"found: {', '.join([BASE_ID, *manifests(root)])}")
    db = Path(args.db) if args.db else store.EVAL_DB
    if args.sampled and args.suite_file:
        raise ConfigError("--sampled samples the shipped test prompts; leave out --suite-file")
    if args.sampled and args.launcher == "ray":
        raise ConfigError("--launcher ray runs the greedy evaluation; sample with the local launcher (leave it out)")
    blending = [f for f, on in (("--interpolate", args.interpolate), ("--fidelity", args.fidelity),
                                ("--densify", args.densify is not None)) if on]
    if len(blending) > 1:
        raise ConfigError(f"{' and '.join(blending)}: give one of them per run")
    if blending and ((args.sampled and not args.interpolate) or args.launcher == "ray" or args.suite_file
                     or args.only):
        raise ConfigError(f"{blending[0]} evaluates blended models on the shipped test split; leave out --launcher "
                          "ray, --suite-file and --only (and --sampled, which goes with --interpolate only)")
    if args.held_out and not args.interpolate:
        raise ConfigError("--held-out goes with --interpolate LS,LH (a trained point, blended without its own row); "
                          "--fidelity does it for every held-out point of the recipe")
    pareto_sampling = args.sampled and not only and not blending  # a blend's corners need not be Pareto points
    order = _pareto_ids(db) if pareto_sampling else sorted(only)
    only = set(order)
    base = load_base(recipe.model)
    infos = sorted((i for i in discover(root, base) if not only or i.id in only),
                   key=lambda i: order.index(i.id) if i.id in order else -1)
    if pareto_sampling and (blended := [i for i in order if i not in {x.id for x in infos}]):
        print(f"not sampled here, being blends of trained runs: {', '.join(blended)}; sample one with "
              "`eval --interpolate LS,LH --sampled`")
    blends = _blends(args, infos, recipe, db)
    if blends == []:
        print(f"--densify {args.densify:g}: no step between neighbouring Pareto points is larger; nothing to add")
        return 0
    if blends:  # models between trained points: their corners attached once, each blend its own adapter
        from .interpolate import blend

        corners = {c for _, weights, _ in blends for c in weights}
        engine = attach_adapters(base, [i for i in infos if i.id in corners])
        for info, weights, method in blends:
            blend(engine.model, weights, adapter_name(info.id), method=method)
            print(f"{info.id}: {' + '.join(f'{w:.3g}·{c}' for c, w in weights.items())} ({method} blend)")
        infos = [info for info, _, _ in blends]
    # refuses prompts that would rewrite stored ones (then nothing is written)
    register(infos, prompts, recipe, db, imported=bool(args.suite_file))
    if not blends:
        engine = attach_adapters(base, infos) if args.launcher == "local" else None  # every adapter, switched by name
    if args.sampled:
        prompts = sampled_prompt_set(prompts, recipe.eval.sampled_prompts)
        out = evaluate_sampled(engine, infos, prompts, recipe, judges, db)
        what = f"{recipe.eval.samples} sampled answers × {len(prompts)} prompts"
    elif args.launcher == "ray":
        out = evaluate_ray(base, infos, prompts, recipe, judges, db)
        if not args.suite_file:
            capability(attach_adapters(base, infos), infos, recipe, db)
        what = f"{len(prompts)} prompts (one Ray task per checkpoint)"
    else:
        out = evaluate(engine, infos, prompts, recipe, judges, db)
        if not args.suite_file and not blends:
            capability(engine, infos, recipe, db)
        what = f"{len(prompts)} prompts"
    print(f"evaluated {len(infos)} checkpoints × {what}: {out['generated']} new generations, "
          f"{out['judged']} new judgments → {db}")
    return 0


def _blends(args, infos: list, recipe, db: Path) -> list[tuple] | None:
    """(info, corner weights, method) of each blended model the command evaluates (None: not a blending
    command): one with --interpolate; with --densify, exact blends where the stored frontier steps by more
    than the gap; with --fidelity each held-out point of the recipe's eval.fidelity_lambda_safe rows by every
    method."""
    from .interpolate import METHODS, densify_plan, fidelity_points, interpolated_info

    if args.interpolate:
        return [(*interpolated_info(infos, *args.interpolate, method=args.method, held_out=args.held_out), args.method)]
    if args.densify is not None:
        from . import queries

        table = queries.checkpoint_table(queries.default_judge(db) or "", db)
        if table.empty:
            raise ConfigError("--densify reads the stored frontier, and there is none yet: run `python -m explorer "
                              "eval` first")
        return [(*interpolated_info(infos, ls, lh), "exact") for ls, lh in densify_plan(table, args.densify)]
    if not args.fidelity:
        return None
    points = fidelity_points(infos, list(recipe.eval.fidelity_lambda_safe))
    if not points:
        raise ConfigError(f"--fidelity: no trained grid point in the rows λ_safe ∈ {list(recipe.eval.fidelity_lambda_safe)} "
                          "with trained rows on both sides; train them, or set eval.fidelity_lambda_safe")
    return [(*interpolated_info(infos, ls, lh, method=m, held_out=True), m) for ls, lh in points for m in METHODS]


def _pareto_ids(db: Path) -> list[str]:
    """The Pareto checkpoints of the stored greedy evaluation (the primary judge), where --sampled spends
    its compute unless --only says otherwise: the interior of the frontier first (violation nearest 50%),
    where a review's choice lies, so an interrupted run has measured those."""
    from . import queries

    table = queries.checkpoint_table(queries.default_judge(db) or "", db)
    if table.empty:
        raise ConfigError("--sampled picks the Pareto checkpoints of the greedy evaluation, and there is none "
                          "yet: run `python -m explorer eval` first, or name checkpoints with --only")
    pareto = table[table["pareto"]]
    return pareto.assign(d=(pareto["violation_rate"] - 0.5).abs()).sort_values("d")["checkpoint_id"].tolist()


def _check_sweep_dir(root: Path, given: bool, base_only: bool) -> None:
    """A sweep directory that does not exist, or holds no finished run, is an error (not 'base only'),
    unless only the base model was asked for."""
    from .checkpoints import CHECKPOINTS_ROOT, manifests

    where = "--checkpoints" if given else f"sweep.name '{root.name}'"
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{where}: {root} is a file; give the sweep's directory (e.g. checkpoints/default)")
    if base_only:
        return
    if not root.is_dir():
        found = sorted(p.name for p in CHECKPOINTS_ROOT.iterdir() if p.is_dir()) if CHECKPOINTS_ROOT.is_dir() else []
        raise ConfigError(f"{where}: no sweep directory {root} (sweeps here: {', '.join(found) or 'none'}); "
                          "train it with `python -m explorer sweep`, or pass --only base")
    if not manifests(root):
        raise ConfigError(f"{where}: {root} holds no finished run; finish it with `python -m explorer sweep`, "
                          "or pass --only base")


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
    import subprocess

    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.address", args.address,
           "--server.port", str(args.port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    return subprocess.call(cmd)


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
    # shared options, as parent parsers; SUPPRESS: --debug after the subcommand must not reset one before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    recipe = argparse.ArgumentParser(add_help=False)
    recipe.add_argument("--recipe", default=str(DEFAULT_RECIPE), help="recipe YAML (default: configs/default.yaml)")
    recipe.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a recipe value")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, fn, help: str, takes_recipe: bool = False) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help, parents=[common, recipe] if takes_recipe else [common])
        s.set_defaults(fn=fn)
        return s

    s = command("setup", cmd_setup, "provision the base model, build the prompt table, create stores", True)
    s.add_argument("--check-load", action="store_true", help="also load the base model once")
    command("suites", cmd_suites, "rebuild data/prompts.csv (suites, categories, splits)")
    command("pairs", cmd_pairs, "build (or reuse) the training pairs", True)
    s = command("train", cmd_train, "train one adapter at the recipe's λs", True)
    s.add_argument("--out", help="output directory (default: checkpoints/<sweep>/<run-id>)")
    s = command("sweep", cmd_sweep, "train every grid point (resumable)", True)
    s.add_argument("--target-violation", type=float, help="constrained mode: dual ascent on λ_safe toward ε")
    s.add_argument("--bisect", action="store_true", help="with --target-violation: bisection on λ_safe across runs "
                   "(sweep.bisect_lambda_safe, sweep.bisect_steps) instead of dual ascent inside one")
    s.add_argument("--root", help="checkpoint root (default: checkpoints/)")
    s = command("eval", cmd_eval, "generate + judge every checkpoint on the test split (incremental)", True)
    s.add_argument("--suite-file", help="evaluate on your own suite file instead (CSV/JSONL), as its own prompt set")
    s.add_argument("--format", default="auto", help="suite file format: auto | xstest | orbench | jbb")
    s.add_argument("--columns", help="column map for other files: text=COL,category=COL[,id=COL][,label=COL]")
    s.add_argument("--checkpoints", help="sweep directory (default: checkpoints/<sweep name>)")
    s.add_argument("--only", nargs="+", help="evaluate only these checkpoint ids")
    s.add_argument("--judge", action="append", help="judge name(s) (default: the recipe's)")
    s.add_argument("--limit", type=_positive_int, help="at most N prompts per suite (quick looks)")
    s.add_argument("--db", help="store path (default: data/eval.duckdb)")
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
    s = command("judges", cmd_judges, "score judges against the human labels (and --train the embedding judge)")
    s.add_argument("--train", action="store_true")
    s.add_argument("--db", help="store path")
    s = command("report", cmd_report, "print the sweep's figures")
    s.add_argument("--json", action="store_true")
    s.add_argument("--judge", default=None, help="judge to report (default: the evaluation's primary judge)")
    s.add_argument("--split", default=None,
                   help="prompt set: test (default) or an imported suite's set, e.g. import:my_suite")
    s.add_argument("--db", help="store path (default: data/eval.duckdb)")
    s = command("compact", cmd_compact, "rewrite the evaluation store without free space (before committing it)")
    s.add_argument("--db", help="store path (default: data/eval.duckdb)")
    s = command("app", cmd_app, "open the dashboard")
    s.add_argument("--address", default="localhost", help="listen address (default localhost only)")
    s.add_argument("--port", type=int, default=8501)
    s = command("bench", cmd_bench, "run the benchmarks in bench/ and write bench/results.json")
    s.add_argument("--only", nargs="*", help="run only these benchmarks")
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
