"""The λ sweep: one training run per (λ_safe, λ_helpful) grid point, resumable, local or on Ray.

A finished run is a directory with manifest.json (written last, by one rename), so a killed sweep
restarted with the same command skips finished runs and redoes only the unfinished one.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Callable

from .atomic import write_text
from .checkpoints import (CHECKPOINTS_ROOT, bisection_id, clean_partial, constrained_id, is_finished, read_manifest,
                          run_id, save_copy, sweep_dir, variant_of)
from .config import VARIANTS, ConfigError, Recipe


@dataclass(frozen=True)
class Point:
    lambda_safe: float
    lambda_helpful: float
    variant: str = ""  # '' = the main grid's loss; else a name in config.VARIANTS

    @property
    def run_id(self) -> str:
        return run_id(self.lambda_safe, self.lambda_helpful, self.variant)

    def recipe(self, recipe: Recipe) -> Recipe:
        """The recipe of this point: the λs, and the variant's change to the loss."""
        return recipe.with_loss(lambda_safe=self.lambda_safe, lambda_helpful=self.lambda_helpful,
                                **VARIANTS.get(self.variant, {}))


def grid(recipe: Recipe) -> list[Point]:
    """The main grid, then each variant at its own (smaller) grid of points."""
    s = recipe.sweep
    return ([Point(ls, lh) for ls, lh in product(s.lambda_safe, s.lambda_helpful)]
            + [Point(ls, lh, v) for v in s.variants for ls, lh in product(s.variant_lambda_safe, s.variant_lambda_helpful)])


def run_sweep(recipe: Recipe, root: Path = CHECKPOINTS_ROOT, progress: bool = True, base=None) -> list[Path]:
    """Train every missing grid point; returns the run directories in grid order."""
    if recipe.sweep.launcher == "ray":
        return run_sweep_ray(recipe, root, progress)
    from tqdm.auto import tqdm

    from .model import load_base
    from .pairs import cached_pairs
    from .suites import load_prompts
    from .train import encode_pairs, reference_logps

    out = sweep_dir(recipe.sweep.name, root)
    out.mkdir(parents=True, exist_ok=True)
    clean_partial(out)
    base = base or load_base(recipe.model, training=True, progress=progress)
    ps = cached_pairs(base, load_prompts(), recipe, progress=progress)
    ref = reference_logps(base, encode_pairs(base.tokenizer, ps, recipe), ps.fingerprint,
                          dtype_setting=recipe.model.dtype)
    points = grid(recipe)
    dirs = []
    bar = tqdm(points, desc=f"sweep {recipe.sweep.name}", disable=not progress)
    for pt in bar:
        d = out / pt.run_id
        dirs.append(d)
        bar.set_postfix(run=pt.run_id)
        train_missing(base, ps, pt.recipe(recipe), d, ref=ref, progress=progress)
    return dirs


def train_point(recipe: Recipe, out: Path | None = None, root: Path = CHECKPOINTS_ROOT):
    """`train`: one run at the recipe's λs, into `out` (default: its run id in the recipe's sweep folder; a
    variant's run carries its name, 's1-h0.1-hinge', as in the sweep). Returns (directory, result),
    the result (train.RunResult) None when a run finished on these pairs is there already (left as it is)."""
    from dataclasses import asdict

    from .model import load_base
    from .pairs import cached_pairs
    from .suites import load_prompts
    from .train import train_run

    loss = recipe.loss
    out = out or sweep_dir(recipe.sweep.name, root) / run_id(loss.lambda_safe, loss.lambda_helpful,
                                                            variant_of(asdict(loss)))
    base = load_base(recipe.model, training=True)
    ps = cached_pairs(base, load_prompts(), recipe)
    if is_finished(out, ps.fingerprint):
        return out, None
    return out, train_run(base, ps, recipe, out)


def train_missing(base, ps, recipe: Recipe, d: Path, ref: dict | None = None, progress: bool = True,
                  dual: Callable[[object], float] | None = None) -> Path:
    """Train the run at `d` unless it is finished on these pairs (one finished on other pairs is stale: retrained).
    A run killed before it finished left nothing at `d` (checkpoints are renamed into place whole): it is
    trained again from the start, which gives the same adapter and, with `dual`, the same λ trajectory."""
    from .train import train_run

    if not is_finished(d, ps.fingerprint):
        if d.exists():
            shutil.rmtree(d)
        train_run(base, ps, recipe, d, ref=ref, progress=progress, dual=dual)
    return d


def _ray_train_point(recipe_dict: dict, point: tuple[float, float, str], root: str, pairs_dir: str) -> str:
    """One grid point inside a Ray worker (its own process): loads its own base model and trains.
    Pairs and reference log-probs come from the shared cache directory, built by whichever worker
    gets there first (writes are atomic renames)."""
    from . import pairs
    from .config import load_recipe
    from .model import load_base
    from .suites import load_prompts

    pairs.PAIRS_DIR = Path(pairs_dir)
    pt = Point(*point)
    recipe = pt.recipe(load_recipe(None, overrides=recipe_dict))
    base = load_base(recipe.model, training=True, progress=False)
    ps = pairs.cached_pairs(base, load_prompts(), recipe, progress=False)
    return str(train_missing(base, ps, recipe, sweep_dir(recipe.sweep.name, Path(root)) / pt.run_id, progress=False))


def run_sweep_ray(recipe: Recipe, root: Path = CHECKPOINTS_ROOT, progress: bool = True) -> list[Path]:
    """Each grid point a Ray task with 1 GPU (if present) or sweep.cpus_per_run CPUs. Connects to the
    cluster in RAY_ADDRESS if set, else starts a local one."""
    try:
        import ray
    except ImportError:
        raise ConfigError("sweep.launcher is 'ray' but ray is not installed; pip install -r requirements-ray.txt "
                          "or use launcher: local") from None
    import os

    import torch

    from . import pairs

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False, log_to_driver=False)
    resources = {"num_gpus": 1} if torch.cuda.is_available() else {"num_cpus": recipe.sweep.cpus_per_run}
    task = ray.remote(**resources)(_ray_train_point)
    out = sweep_dir(recipe.sweep.name, root)
    out.mkdir(parents=True, exist_ok=True)
    clean_partial(out)
    futures = [task.remote(recipe.to_dict(), (p.lambda_safe, p.lambda_helpful, p.variant), str(root), str(pairs.PAIRS_DIR))
               for p in grid(recipe)]
    return [Path(p) for p in ray.get(futures)]


DUAL_PROMPTS = 64  # dev-split harmful prompts behind each v̂: a standard error of about 0.06 at v = 0.3


def dual_estimator(base, prompts, recipe: Recipe, n: int = DUAL_PROMPTS):
    """v̂ for the constrained mode: the greedy violation rate on n dev-split harmful prompts (never the
    test split, where the run is then judged), as the evaluation's primary judge reads it."""
    from .generate import generate_many
    from .judges import get_judge, is_violation

    dev = prompts[(prompts["split"] == "dev") & (prompts["kind"] == "harmful")]
    dev = dev.sample(min(n, len(dev)), random_state=0)  # across the suites, the same prompts every run
    judge = get_judge(recipe.eval.primary_judge)

    def estimate(model) -> float:
        view = dataclasses.replace(base, model=model)
        outs = generate_many(view, dev["text"].tolist(), recipe.eval.max_new_tokens, batch_size=recipe.eval.batch_size)
        verdicts = judge.judge(dev["text"].tolist(), [g.response for g in outs])
        return sum(is_violation("harmful", v.label) for v in verdicts) / max(1, len(verdicts))

    return estimate


def run_constrained(recipe: Recipe, root: Path = CHECKPOINTS_ROOT, progress: bool = True) -> Path:
    """The constrained problem max helpfulness s.t. E[violation] ≤ ε, solved by its Lagrangian: one run
    in which λ_safe is the multiplier, moved by dual ascent toward ε (train.DualAscent)."""
    from .model import load_base
    from .pairs import cached_pairs
    from .suites import load_prompts

    eps = recipe.sweep.target_violation
    if eps is None:
        raise ConfigError("constrained mode needs --target-violation ε (a rate in [0, 1])")
    base = load_base(recipe.model, training=True, progress=progress)
    prompts = load_prompts()
    ps = cached_pairs(base, prompts, recipe, progress=progress)
    d = sweep_dir(recipe.sweep.name, root) / constrained_id(eps, recipe.loss.lambda_helpful)
    if is_finished(d, ps.fingerprint):
        return d
    clean_partial(d.parent)  # a save killed half-way (one process writes here: Ray workers never train this)
    return train_missing(base, ps, recipe, d, progress=progress, dual=dual_estimator(base, prompts, recipe))


class OutOfReach(ConfigError):
    """ε is not met anywhere in the bracket: no λ_safe there is feasible."""


def bisect_lambda_safe(violation_at: Callable[[float], float], target: float, low: float, high: float,
                       steps: int) -> tuple[float | None, list[dict]]:
    """Bisection on the multiplier: the smallest λ_safe in [low, high] found with v(λ_safe) ≤ ε (the most
    helpful feasible run, if violation falls as λ_safe rises), after checking both ends and halving the
    bracket `steps` times; None when even `high` violates ε. Returns it with every probe
    {probe, lambda_safe, violation_estimate} in the order run."""
    probes = []

    def probe(lam: float) -> float:
        v = violation_at(lam)
        probes.append({"probe": len(probes) + 1, "lambda_safe": lam, "violation_estimate": v})
        return v

    if probe(high) > target:
        return None, probes
    if probe(low) <= target:
        return low, probes  # the constraint does not bind: no safety weight is needed
    for _ in range(steps):
        mid = round((low + high) / 2, 6)
        if probe(mid) <= target:
            high = mid
        else:
            low = mid
    return high, probes


def _cached_estimate(key: str, compute: Callable[[], float]) -> float:
    """v̂ of one adapter on the dev prompts, kept in the cache by (adapter digest, judge, prompts), so a
    rerun after a kill, or another ε probing the same run, does not generate again."""
    from .model import CACHE_DIR

    path = CACHE_DIR / "violation_estimates.json"
    known = json.loads(path.read_text()) if path.is_file() else {}
    if key not in known:
        known[key] = compute()
        write_text(path, json.dumps(known, indent=1))
    return known[key]


def run_bisection(recipe: Recipe, root: Path = CHECKPOINTS_ROOT, progress: bool = True) -> Path:
    """The constrained problem by the other classical route: bisection on λ_safe across runs. Each probe is
    an ordinary run at (λ_safe, recipe λ_helpful), reused when already trained (the grid's own points are
    probes too), scored by v̂ on every dev-split harmful prompt. The answer is saved as its own checkpoint,
    bisect-eps<ε>-h<λ_helpful>: that probe's adapter (same digest, so its evaluation is shared) with the
    probes in its manifest. Raises OutOfReach when the bracket's top still violates ε (its probes stay)."""
    from .model import load_base
    from .pairs import cached_pairs
    from .suites import load_prompts

    eps, lh = recipe.sweep.target_violation, recipe.loss.lambda_helpful
    if eps is None:
        raise ConfigError("--bisect needs --target-violation ε (a rate in [0, 1])")
    out = sweep_dir(recipe.sweep.name, root) / bisection_id(eps, lh)
    base = load_base(recipe.model, training=True, progress=progress)
    prompts = load_prompts()
    ps = cached_pairs(base, prompts, recipe, progress=progress)
    if is_finished(out, ps.fingerprint):
        return out
    clean_partial(out.parent)
    runs = BisectionProbes(base, ps, prompts, recipe, root, progress)
    low, high = recipe.sweep.bisect_lambda_safe
    chosen, probes = bisect_lambda_safe(runs.violation_at, eps, low, high, recipe.sweep.bisect_steps)
    if chosen is None:
        raise OutOfReach(f"ε = {eps:g} is out of reach at λ_helpful {lh:g}: at the bracket's top λ_safe {high:g} the "
                         f"dev violation estimate is {probes[0]['violation_estimate']:.3f}; raise the top "
                         "(--set sweep.bisect_lambda_safe=[low,high]) or lower λ_helpful (--set loss.lambda_helpful=...)")
    src = runs.run_at(chosen)
    save_copy(src, bisection_manifest(read_manifest(src), recipe, out.name, chosen, src.name, probes, len(runs.dev)), out)
    return out


class BisectionProbes:
    """The runs bisection probes: each an ordinary run at (λ_safe, the recipe's λ_helpful) of the main grid's
    loss, trained unless already finished, and its v̂ on every dev-split harmful prompt (cached per adapter)."""

    def __init__(self, base, ps, prompts, recipe: Recipe, root: Path, progress: bool):
        self.base, self.ps, self.recipe, self.root, self.progress = base, ps, recipe, root, progress
        self.dev = prompts[(prompts["split"] == "dev") & (prompts["kind"] == "harmful")]
        self.estimate = dual_estimator(base, prompts, recipe, n=len(self.dev))
        self.plain = dataclasses.replace(recipe, sweep=dataclasses.replace(recipe.sweep, target_violation=None))

    def run_at(self, lam: float) -> Path:
        d = sweep_dir(self.recipe.sweep.name, self.root) / run_id(lam, self.recipe.loss.lambda_helpful)
        return train_missing(self.base, self.ps, self.plain.with_loss(lambda_safe=lam), d, progress=self.progress)

    def violation_at(self, lam: float) -> float:
        d = self.run_at(lam)
        digest = read_manifest(d)["adapter_sha256"][:16]
        v = _cached_estimate(f"{digest}:{self.recipe.eval.primary_judge}:dev-harmful-{len(self.dev)}",
                             lambda: self._measure(d))
        if self.progress:
            print(f"probe λ_safe {lam:g}: v̂ = {v:.3f} (ε {self.recipe.sweep.target_violation:g})")
        return v

    def _measure(self, d: Path) -> float:
        from peft import PeftModel

        model = PeftModel.from_pretrained(self.base.model, str(d), is_trainable=False)
        try:
            model.eval()
            return self.estimate(model)
        finally:
            model.unload()  # the shared base back without LoRA layers, for the next probe


def bisection_manifest(chosen_manifest: dict, recipe: Recipe, name: str, chosen: float, chosen_run: str,
                       probes: list[dict], dev_prompts: int) -> dict:
    """The bisection's checkpoint: the chosen probe's manifest, renamed, with the λ_safe found and every probe."""
    lh, (low, high) = recipe.loss.lambda_helpful, recipe.sweep.bisect_lambda_safe
    return {**chosen_manifest, "run_id": name, "recipe": recipe.with_loss(lambda_safe=chosen).to_dict(),
            "final_lambda_safe": chosen,
            # the probes in the shape of a dual-ascent trajectory, one row per run, for the same chart
            "lambda_trajectory": [{"step": p["probe"], "violation_estimate": p["violation_estimate"],
                                   "lambda_safe": p["lambda_safe"]} for p in probes],
            "bisection": {"lambda_helpful": lh, "bracket": [low, high], "steps": recipe.sweep.bisect_steps,
                          "dev_prompts": dev_prompts, "chosen_run": chosen_run,
                          "probes": [{**p, "run_id": run_id(p["lambda_safe"], lh)} for p in probes]}}
