"""What one evaluation covers, decided in one place: prompts × checkpoints × judges × mode.

inspect_ai's Task (dataset × solver × scorer) is the model. An `EvalRequest` is what was asked (the
`eval` command's options, or the dashboard's "evaluate this position" button, which runs the same command
in the background); `plan_eval` turns it into an `EvalPlan` (every input checked before the model loads or
anything is written); `run_plan` generates, judges and stores it, on the local engine or on Ray.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import pandas as pd

from . import store
from .checkpoints import BASE_ID, CHECKPOINTS_ROOT, CheckpointInfo, discover, manifests, sweep_dir
from .config import ConfigError, Recipe


class Mode(str, Enum):
    GREEDY = "greedy"  # one greedy answer per prompt
    SAMPLED = "sampled"  # eval.samples sampled answers per prompt (the sampled violation rate)


class Launcher(str, Enum):
    LOCAL = "local"  # this process: every adapter attached to one base, switched by name
    RAY = "ray"  # one Ray task per checkpoint (one GPU each where there are GPUs); this process writes


@dataclass(frozen=True)
class EvalRequest:
    """An evaluation as asked for; defaults are the plain `python -m explorer eval`."""
    recipe_path: str | None = None  # given to the background job's command line (None: the default recipe)
    suite_file: str | None = None  # the team's own prompts, evaluated as their own prompt set
    format: str = "auto"
    columns: str | None = None
    checkpoints: str | None = None  # sweep directory (None: checkpoints/<sweep name>)
    only: tuple[str, ...] = ()
    judges: tuple[str, ...] = ()  # () → the recipe's
    limit: int | None = None
    db: str | None = None
    interpolate: tuple[float, float] | None = None
    method: str = "exact"
    held_out: bool = False
    densify: float | None = None
    fidelity: bool = False
    launcher: Launcher = Launcher.LOCAL
    sampled: bool = False

    @property
    def blending(self) -> list[str]:
        """The blending options given (at most one is allowed)."""
        return [f for f, on in (("--interpolate", self.interpolate is not None), ("--fidelity", self.fidelity),
                                ("--densify", self.densify is not None)) if on]

    def to_args(self) -> list[str]:
        """The `python -m explorer eval` command line that makes this request (for background jobs)."""
        args = ["eval"]
        if self.interpolate is not None:
            args += ["--interpolate", f"{self.interpolate[0]:g},{self.interpolate[1]:g}", "--method", self.method]
        for flag, value in (("--db", self.db), ("--checkpoints", self.checkpoints), ("--recipe", self.recipe_path),
                            ("--suite-file", self.suite_file), ("--columns", self.columns)):
            if value is not None:
                args += [flag, str(value)]
        if self.format != "auto":
            args += ["--format", self.format]
        args += [f for f, on in (("--held-out", self.held_out), ("--fidelity", self.fidelity),
                                 ("--sampled", self.sampled)) if on]
        if self.densify is not None:
            args += ["--densify", f"{self.densify:g}"]
        if self.only:
            args += ["--only", *self.only]
        for judge in self.judges:
            args += ["--judge", judge]
        if self.limit:
            args += ["--limit", str(self.limit)]
        if self.launcher is not Launcher.LOCAL:
            args += ["--launcher", self.launcher.value]
        return args


@dataclass(frozen=True)
class Blend:
    """A model between trained points: the corners' adapters weighted (interpolate.blend)."""
    info: CheckpointInfo
    weights: dict[str, float]
    method: str


@dataclass(frozen=True, eq=False)
class EvalPlan:
    recipe: Recipe  # the request's, with an imported family's base model and sweep name
    prompts: pd.DataFrame
    checkpoints: list[CheckpointInfo]  # in evaluation order; for blends, the blended models
    judges: list
    mode: Mode
    launcher: Launcher
    db: Path
    base: object = field(repr=False)  # model.Base, loaded once
    corners: list[CheckpointInfo] = field(default_factory=list)  # the trained adapters the blends are made of
    blends: list[Blend] = field(default_factory=list)
    imported: bool = False  # prompts from a suite file: their own prompt set, no capability score
    notes: list[str] = field(default_factory=list)  # what the command tells its user about the plan

    @property
    def scores_capability(self) -> bool:
        """The general-capability score goes with a greedy evaluation of trained checkpoints on our prompts."""
        return self.mode is Mode.GREEDY and not self.imported and not self.blends


def check_engine(req: EvalRequest, recipe: Recipe) -> None:
    """What the vLLM engine does here: greedy answers of trained checkpoints, on the local launcher."""
    if recipe.eval.engine != "vllm":
        return
    if req.sampled or req.blending or req.launcher is Launcher.RAY:
        raise ConfigError("eval.engine vllm evaluates greedy answers of trained checkpoints with the local launcher; "
                          "for --sampled, blends and --launcher ray use eval.engine hf (--set eval.engine=hf)")
    from .vllm_engine import vllm_python

    vllm_python()  # its environment exists, before the model loads


def check_options(req: EvalRequest) -> None:
    """Options that contradict each other, named with the fix."""
    if req.sampled and req.suite_file:
        raise ConfigError("--sampled samples the shipped test prompts; leave out --suite-file")
    if req.sampled and req.launcher is Launcher.RAY:
        raise ConfigError("--launcher ray runs the greedy evaluation; sample with the local launcher (leave it out)")
    if len(req.blending) > 1:
        raise ConfigError(f"{' and '.join(req.blending)}: give one of them per run")
    if req.blending and ((req.sampled and req.interpolate is None) or req.launcher is Launcher.RAY
                         or req.suite_file or req.only):
        raise ConfigError(f"{req.blending[0]} evaluates blended models on the shipped test split; leave out --launcher "
                          "ray, --suite-file and --only (and --sampled, which goes with --interpolate only)")
    if req.held_out and req.interpolate is None:
        raise ConfigError("--held-out goes with --interpolate LS,LH (a trained point, blended without its own row); "
                          "--fidelity does it for every held-out point of the recipe")


def select_prompts(req: EvalRequest, recipe: Recipe) -> tuple[pd.DataFrame, list[str]]:
    """The prompts to answer (the recipe's splits, or the request's suite file), and a note on them."""
    from .suites import import_suite_file, load_prompts, parse_column_map

    notes = []
    if req.suite_file:
        cmap = parse_column_map(req.columns) if req.columns else None
        prompts = import_suite_file(Path(req.suite_file), req.format, cmap)
        notes.append(f"{req.suite_file}: {len(prompts)} prompts ({prompts['kind'].value_counts().to_dict()}), "
                     f"evaluated as their own set '{prompts['split'].iloc[0]}' (never part of the shipped test split)")
    else:
        prompts = load_prompts()
        prompts = prompts[prompts["split"].isin(recipe.eval.splits)]
    if req.limit:
        prompts = prompts.groupby("suite", group_keys=False).head(req.limit)
    return prompts, notes


def check_sweep_dir(root: Path, given: bool, base_only: bool) -> None:
    """A sweep directory that does not exist, or holds no finished run, is an error (not 'base only'),
    unless only the base model was asked for."""
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


def check_only(root: Path, only: set[str]) -> None:
    if only and (unknown := sorted(only - {BASE_ID, *manifests(root)})):
        raise ConfigError(f"--only: no checkpoint {', '.join(map(repr, unknown))} in {root}; "
                          f"found: {', '.join([BASE_ID, *manifests(root)])}")


def pareto_ids(db: Path) -> list[str]:
    """The Pareto checkpoints of the stored greedy evaluation (the primary judge), where --sampled spends
    its compute unless --only says otherwise: the interior of the frontier first (violation nearest 50%),
    where a review's choice lies, so an interrupted run has measured those."""
    table = _stored_frontier(db)
    if table.empty:
        raise ConfigError("--sampled picks the Pareto checkpoints of the greedy evaluation, and there is none "
                          "yet: run `python -m explorer eval` first, or name checkpoints with --only")
    pareto = table[table["pareto"]]
    return pareto.assign(d=(pareto["violation_rate"] - 0.5).abs()).sort_values("d")["checkpoint_id"].tolist()


def _stored_frontier(db: Path) -> pd.DataFrame:
    from . import queries

    return queries.checkpoint_table(queries.default_judge(db) or "", db)


def blends_of(req: EvalRequest, infos: list[CheckpointInfo], recipe: Recipe, db: Path) -> list[Blend] | None:
    """Each blended model the request evaluates (None: not a blending request): one with --interpolate;
    with --densify, exact blends where the stored frontier steps by more than the gap; with --fidelity each
    held-out point of the recipe's eval.fidelity_lambda_safe rows by every method."""
    from .interpolate import METHODS, densify_plan, fidelity_points, interpolated_info

    if req.interpolate is not None:
        info, weights = interpolated_info(infos, *req.interpolate, method=req.method, held_out=req.held_out)
        return [Blend(info, weights, req.method)]
    if req.densify is not None:
        table = _stored_frontier(db)
        if table.empty:
            raise ConfigError("--densify reads the stored frontier, and there is none yet: run `python -m explorer "
                              "eval` first")
        return [Blend(*interpolated_info(infos, ls, lh), "exact") for ls, lh in densify_plan(table, req.densify)]
    if not req.fidelity:
        return None
    points = fidelity_points(infos, list(recipe.eval.fidelity_lambda_safe))
    if not points:
        raise ConfigError(f"--fidelity: no trained grid point in the rows λ_safe ∈ {list(recipe.eval.fidelity_lambda_safe)} "
                          "with trained rows on both sides; train them, or set eval.fidelity_lambda_safe")
    return [Blend(*interpolated_info(infos, ls, lh, method=m, held_out=True), m) for ls, lh in points for m in METHODS]


def plan_eval(req: EvalRequest, recipe: Recipe) -> EvalPlan:
    """Check the request, load the base model, and decide what is evaluated. A plan with no checkpoints
    has nothing to do (a --densify with no step left to fill; its notes say so)."""
    from .judges import get_judge
    from .model import load_base

    check_options(req)
    check_engine(req, recipe)
    prompts, notes = select_prompts(req, recipe)
    judges = [get_judge(n) for n in (req.judges or recipe.eval.judges)]
    root = Path(req.checkpoints) if req.checkpoints else sweep_dir(recipe.sweep.name)
    only = set(req.only)
    check_sweep_dir(root, bool(req.checkpoints), bool(only) and only <= {BASE_ID})
    check_only(root, only)
    recipe = for_family(recipe, root)
    db = Path(req.db) if req.db else store.EVAL_DB
    pareto_sampling = req.sampled and not only and not req.blending  # a blend's corners need not be Pareto points
    order = pareto_ids(db) if pareto_sampling else sorted(only)
    base = load_base(recipe.model)
    infos = sorted((i for i in discover(root, base) if not order or i.id in order),
                   key=lambda i: order.index(i.id) if i.id in order else -1)
    if pareto_sampling and (blended := [i for i in order if i not in {x.id for x in infos}]):
        notes.append(f"not sampled here, being blends of trained runs: {', '.join(blended)}; sample one with "
                     "`eval --interpolate LS,LH --sampled`")
    if req.launcher is Launcher.RAY and (full := [i.id for i in infos if i.is_full]):
        raise ConfigError(f"--launcher ray serves adapters; {', '.join(full)} are full checkpoints: evaluate them "
                          "with the local launcher (leave out --launcher)")
    plan = dict(recipe=recipe, prompts=prompts, judges=judges, mode=Mode.SAMPLED if req.sampled else Mode.GREEDY,
                launcher=req.launcher, db=db, base=base, imported=bool(req.suite_file), notes=notes)
    blends = blends_of(req, [i for i in infos if not i.is_full], recipe, db)  # full fine-tunes do not blend
    if blends == []:
        notes.append(f"--densify {req.densify:g}: no step between neighbouring Pareto points is larger; nothing to add")
        return EvalPlan(checkpoints=[], **plan)
    if blends:
        corners = {c for b in blends for c in b.weights}
        return EvalPlan(checkpoints=[b.info for b in blends], corners=[i for i in infos if i.id in corners],
                        blends=blends, **plan)
    return EvalPlan(checkpoints=infos, **plan)


def for_family(recipe: Recipe, root: Path) -> Recipe:
    """The recipe for evaluating the sweep at `root`: an imported family (family.py) brings its own base
    model and is stored under its own sweep name; a sweep trained here is evaluated as its recipe says."""
    import dataclasses

    from .checkpoints import imported_base

    base = imported_base(root) if root.is_dir() else None
    if base is None:
        return recipe
    return dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, base_model=base),
                               sweep=dataclasses.replace(recipe.sweep, name=root.name))


def run_plan(plan: EvalPlan) -> dict:
    """Generate, judge and store what the plan covers (resumable: stored answers are skipped). Returns
    counts of new rows and a description of what was evaluated."""
    from .evaluate import evaluate_ray, register, sampled_prompt_set

    recipe = plan.recipe
    # refuses prompts that would rewrite stored ones (then nothing is written)
    register(plan.checkpoints, plan.prompts, recipe, plan.db, imported=plan.imported)
    if plan.mode is Mode.SAMPLED:
        prompts = sampled_prompt_set(plan.prompts, recipe.eval.sampled_prompts)
        return {**_on_each_engine(plan, prompts), "what": f"{recipe.eval.samples} sampled answers × {len(prompts)} prompts"}
    if plan.launcher is Launcher.RAY:
        out = evaluate_ray(plan.base, plan.checkpoints, plan.prompts, recipe, plan.judges, plan.db)
        if plan.scores_capability:
            _on_each_engine(plan, plan.prompts, generate=False)
        return {**out, "what": f"{len(plan.prompts)} prompts (one Ray task per checkpoint)"}
    return {**_on_each_engine(plan, plan.prompts), "what": f"{len(plan.prompts)} prompts"}


def model_groups(plan: EvalPlan) -> list[tuple[Path | None, list[CheckpointInfo]]]:
    """The checkpoints by the model that serves them: None, the base (with every adapter, switched by name),
    then each full checkpoint's own directory; a group with no checkpoint is left out."""
    shared = [i for i in plan.checkpoints if not i.is_full]
    groups = [(None, shared), *((i.directory, [i]) for i in plan.checkpoints if i.is_full)]
    return [(model, infos) for model, infos in groups if infos]


def _add(counts: dict, out: dict) -> dict:
    return {k: counts.get(k, 0) + out[k] for k in ("generated", "judged")}


def _on_each_engine(plan: EvalPlan, prompts: pd.DataFrame, generate: bool = True) -> dict:
    """Answer (greedy or sampled) and score capability where the plan does, engine by engine (model_groups),
    a full checkpoint's loaded only while its turn lasts."""
    from .evaluate import capability, evaluate, evaluate_sampled, full_engine

    recipe, counts = plan.recipe, {"generated": 0, "judged": 0}
    if generate and recipe.eval.engine == "vllm":
        counts, generate = _with_vllm(plan, prompts), False  # the HF engines below only score capability
    if not (generate or plan.scores_capability):
        return counts
    for model, infos in model_groups(plan):
        engine = _engine(plan, infos) if model is None else full_engine(infos[0], recipe.model)
        if generate:
            run = evaluate_sampled if plan.mode is Mode.SAMPLED else evaluate
            counts = _add(counts, run(engine, infos, prompts, recipe, plan.judges, plan.db))
        if plan.scores_capability:
            capability(engine, infos, recipe, plan.db)
        del engine  # a full checkpoint's weights go before the next one loads
    return counts


def _with_vllm(plan: EvalPlan, prompts: pd.DataFrame) -> dict:
    """Every group of model_groups answered by a vLLM worker of its own (vllm_engine.py), in turn: the base
    with every adapter in one, each full checkpoint alone."""
    from .evaluate import evaluate_vllm
    from .model import pick_dtype, provision
    from .vllm_engine import start

    recipe, counts = plan.recipe, {"generated": 0, "judged": 0}
    dtype = str(pick_dtype(recipe.model, plan.base.device, False)).removeprefix("torch.")
    for model, infos in model_groups(plan):
        with start(plan.base, model or provision(recipe.model, progress=False), infos, dtype) as engine:
            counts = _add(counts, evaluate_vllm(engine, infos, prompts, recipe, plan.judges, plan.db))
    return counts


def _engine(plan: EvalPlan, infos: list[CheckpointInfo]):
    """The base with these adapters attached, switched by name. Blends: their corners attached once, each
    blend made its own adapter."""
    from .evaluate import attach_adapters
    from .generate import adapter_name

    if not plan.blends:
        return attach_adapters(plan.base, infos)
    from .interpolate import blend

    engine = attach_adapters(plan.base, plan.corners)
    for b in plan.blends:
        blend(engine.model, b.weights, adapter_name(b.info.id), method=b.method)
    return engine


def describe_blends(plan: EvalPlan) -> list[str]:
    return [f"{b.info.id}: {' + '.join(f'{w:.3g}·{c}' for c, w in b.weights.items())} ({b.method} blend)"
            for b in plan.blends]
