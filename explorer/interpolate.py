"""Models between trained grid points: the corner adapters of a grid cell blended in weight space.

A slider position (λ_safe, λ_helpful) inside a cell of the trained grid gets bilinear weights w_i on the
cell's corners. The blended model's update of each adapted weight is Σ w_i ΔW_i with ΔW_i = s_i·B_i·A_i
(s_i the adapter's α/r). Blending A and B separately instead ("ab_average": Σ w_i B_i · Σ w_j A_j)
adds the cross terms B_i·A_j, which no trained model has; it is kept only to measure how much worse it
is. The exact blend is PEFT's `combination_type="cat"`: the corners' A (scaled by w_i·s_i) and B
stacked into one adapter of rank Σ r_i.
"""
from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd

from .checkpoints import BASE_ID, CheckpointInfo, describe, run_id
from .config import ConfigError
from .generate import activate, adapter_name

METHODS = ("exact", "ab_average")


def cell_weights(lambda_safe: list[float], lambda_helpful: list[float], ls: float, lh: float) -> dict[tuple, float]:
    """Bilinear weights of the grid points (λ_safe, λ_helpful) around (ls, lh); corners with weight 0 are
    left out, so a trained point is its own single corner. The grid is the product of the two axes."""
    def bracket(axis: list[float], x: float, name: str) -> list[tuple[float, float]]:
        axis = sorted(set(axis))
        if not axis[0] <= x <= axis[-1]:
            raise ConfigError(f"{name} = {x:g} is outside the trained range [{axis[0]:g}, {axis[-1]:g}]; "
                              "interpolation never extrapolates")
        i = min(bisect_right(axis, x), len(axis) - 1)
        lo, hi = axis[i - 1] if i else axis[0], axis[i]
        if x == hi or hi == lo:
            return [(hi, 1.0)]
        t = (x - lo) / (hi - lo)
        return [(lo, 1.0 - t), (hi, t)]

    out = {}
    for s, ws in bracket(lambda_safe, ls, "λ_safe"):
        for h, wh in bracket(lambda_helpful, lh, "λ_helpful"):
            if ws * wh > 0:
                out[(s, h)] = ws * wh
    return out


def check_blendable(model, names: list[str]) -> None:
    """Adapters blend only when they adapt the same layers of the same base with the same rank."""
    configs = [model.peft_config[n] for n in names]
    first = configs[0]
    for n, c in zip(names, configs):
        if set(c.target_modules) != set(first.target_modules) or c.r != first.r:
            raise ConfigError(f"adapters {names[0]} and {n} cannot be blended: target modules "
                              f"{sorted(first.target_modules)} r={first.r} vs {sorted(c.target_modules)} r={c.r}")
        # the base's name, not its path: the same base cached in another folder (another machine or checkout)
        # is the same model; attach_adapters has already checked each adapter's base fingerprint
        if Path(c.base_model_name_or_path).name != Path(first.base_model_name_or_path).name:
            raise ConfigError(f"adapters {names[0]} and {n} were trained on different base models "
                              f"({first.base_model_name_or_path} vs {c.base_model_name_or_path})")


def blend(model, weights: dict[str, float], name: str, method: str = "exact") -> str:
    """Add adapter `name` to a PeftModel: the checkpoints in `weights` (checkpoint id → w) blended by
    `method` (METHODS). Returns the adapter's name; activate it with generate.activate."""
    if method not in METHODS:
        raise ConfigError(f"unknown interpolation method {method!r}; one of {', '.join(METHODS)}")
    names = [adapter_name(c) for c in weights]
    missing = [c for c, n in zip(weights, names) if n not in model.peft_config]
    if missing:
        raise ConfigError(f"checkpoint(s) {', '.join(missing)} are not loaded; attach them first")
    check_blendable(model, names)
    activate(model, BASE_ID)  # every adapter back at its own scale (a live mix scales its corners): PEFT reads them
    if name in model.peft_config:
        model.delete_adapter(name)
    if method == "exact":
        model.add_weighted_adapter(names, list(weights.values()), name, combination_type="cat")
    else:
        _ab_average(model, names, list(weights.values()), name)
    return name


def _ab_average(model, names: list[str], ws: list[float], name: str) -> None:
    """The naive blend: A and B averaged separately, same rank and scale as the corners."""
    import torch
    from peft.tuners.lora import LoraLayer

    model.add_weighted_adapter(names[:1], [1.0], name, combination_type="linear")  # a same-shaped adapter
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, LoraLayer) and name in layer.lora_A:
                layer.lora_A[name].weight.copy_(sum(w * layer.lora_A[n].weight for n, w in zip(names, ws)))
                layer.lora_B[name].weight.copy_(sum(w * layer.lora_B[n].weight for n, w in zip(names, ws)))
                layer.scaling[name] = layer.scaling[names[0]]


# ---------------------------------------------------------------- a settled mix served as one adapter

SETTLED_BLENDS = 4  # merged blends a live engine keeps loaded (the most recently asked for)


def several_corners(checkpoint) -> dict[str, float] | None:
    """The corners of a mix {id: w} that carry weight, when there are two or more (None: one trained
    adapter or the base, which need no blend)."""
    if not isinstance(checkpoint, Mapping):
        return None
    corners = {c: float(w) for c, w in checkpoint.items() if w != 0}
    return corners if len(corners) > 1 else None


class SettledBlends:
    """Mixes of several adapters served as one merged adapter each, the `size` most recently asked for kept.

    With the corners active together each adapted layer runs one LoRA product per corner, and at batch 1
    that overhead is most of the cost (bench/NOTES.md: four active adapters decode at about half the speed
    of one). A request for a mix therefore decodes with its exact blend (the corners' updates stacked into
    one adapter of rank Σ r_i: the same Σ w_i ΔW_i), built once when first asked for. Moving a slider still
    only sets scales; the blend is built by the engine that answers, under its lock. `build(name, weights)`
    makes adapter `name`; `free(name)` drops it."""

    def __init__(self, build: Callable[[str, dict[str, float]], None], free: Callable[[str], None],
                 size: int = SETTLED_BLENDS):
        self._build, self._free, self._size = build, free, size
        self._names: OrderedDict[tuple, str] = OrderedDict()

    def resolve(self, checkpoint):
        """What to decode `checkpoint` with: a mix of several corners → its blend's name; anything else as
        it is. Call with the engine's lock held."""
        corners = several_corners(checkpoint)
        if corners is None:
            return checkpoint
        key = tuple(sorted((c, round(w, 9)) for c, w in corners.items()))
        if key in self._names:
            self._names.move_to_end(key)
            return self._names[key]
        name = "blend-" + hashlib.sha1(repr(key).encode()).hexdigest()[:12]
        self._build(name, corners)
        self._names[key] = name
        while len(self._names) > self._size:
            self._free(self._names.popitem(last=False)[1])
        return name

    @property
    def names(self) -> list[str]:
        return list(self._names.values())


def interpolated_id(lambda_safe: float, lambda_helpful: float, method: str = "exact", held_out: bool = False) -> str:
    """'interp-s2-h0.05' (exact) or 'abavg-s2-h0.05' (the naive blend, for the fidelity comparison); a
    held-out blend at a trained point (fidelity_points) ends in '-heldout'."""
    return (f"{'interp' if method == 'exact' else 'abavg'}-{run_id(lambda_safe, lambda_helpful)}"
            + ("-heldout" if held_out else ""))


def _grid_points(infos: list[CheckpointInfo], corners_only: bool = True) -> list[CheckpointInfo]:
    """The main grid's trained runs; with corners_only those on its axes, the corners a blend may use (a run
    trained off them, such as a bisection probe, would leave the cells around it without corners; it can
    still be held out and compared with a blend)."""
    described = [(i, describe(i.manifest, False)) for i in infos if not i.is_base]
    return [i for i, d in described if (d["on_grid"] if corners_only else d["kind"] == "grid")]


def interpolated_info(infos: list[CheckpointInfo], lambda_safe: float, lambda_helpful: float,
                      method: str = "exact", held_out: bool = False) -> tuple[CheckpointInfo, dict[str, float]]:
    """The model at (λ_safe, λ_helpful) blended from the main grid's trained points among `infos`, and its
    corners' weights (checkpoint id → w). Its fingerprint names its corners, weights and method, so a
    retrained corner makes it a new model.

    held_out: the fidelity measure. The point is a trained one, and its whole λ_safe row is withheld from
    the corners (a product grid has no cell around a single missing point), so the blend comes from the
    rows on either side and can be compared with the model actually trained there."""
    grid = _grid_points(infos)
    if held_out:
        if not any(i.lambda_safe == lambda_safe and i.lambda_helpful == lambda_helpful
                   for i in _grid_points(infos, corners_only=False)):
            raise ConfigError(f"no trained grid point at λ_safe {lambda_safe:g}, λ_helpful {lambda_helpful:g} to hold "
                              "out; a held-out blend is compared with the model trained at the same λs")
        grid = [i for i in grid if i.lambda_safe != lambda_safe]
    if not grid:
        raise ConfigError("no trained grid points to interpolate between; train a sweep first")
    by_lambdas = {(i.lambda_safe, i.lambda_helpful): i for i in grid}
    corners = cell_weights([i.lambda_safe for i in grid], [i.lambda_helpful for i in grid], lambda_safe, lambda_helpful)
    if missing := [c for c in corners if c not in by_lambdas]:
        raise ConfigError(f"the grid cell around λ_safe {lambda_safe:g}, λ_helpful {lambda_helpful:g} lacks trained "
                          f"corner(s) {', '.join(run_id(s, h) for s, h in missing)}; train them first")
    weights = {by_lambdas[c].id: w for c, w in corners.items()}
    key = ";".join(f"{by_lambdas[c].fingerprint}:{w:.6f}" for c, w in sorted(corners.items())) + f";{method}"
    first = by_lambdas[next(iter(corners))].manifest
    manifest = {"lambda_safe": lambda_safe, "lambda_helpful": lambda_helpful, "base_fingerprint": first["base_fingerprint"],
                "recipe": first.get("recipe"),
                "interpolated": {"method": method, "corners": weights, **({"held_out": True} if held_out else {})}}
    info = CheckpointInfo(interpolated_id(lambda_safe, lambda_helpful, method, held_out), None,
                          "interp-" + hashlib.sha256(key.encode()).hexdigest()[:16], lambda_safe, lambda_helpful, manifest)
    return info, weights


def fidelity_points(infos: list[CheckpointInfo], hold_out_lambda_safe: list[float]) -> list[tuple[float, float]]:
    """The trained grid points where a held-out blend can be measured: in a held-out λ_safe row, with
    trained points at the same λ_helpful in rows on both sides."""
    corners = {(i.lambda_safe, i.lambda_helpful) for i in _grid_points(infos)}
    out = []
    for ls, lh in sorted({(i.lambda_safe, i.lambda_helpful) for i in _grid_points(infos, corners_only=False)}):
        if ls in hold_out_lambda_safe:
            rows = {s for s, h in corners if h == lh and s != ls}
            if any(s < ls for s in rows) and any(s > ls for s in rows):
                out.append((ls, lh))
    return out


@dataclass(frozen=True)
class SliderPoint:
    """What the dashboard has at a slider position: a trained checkpoint, an evaluated blend, or neither yet
    (then the trained corners a blend would be made of, with their weights)."""
    lambda_safe: float
    lambda_helpful: float
    status: str  # 'trained' | 'interpolated' (a blend, evaluated) | 'not evaluated' | 'no corners'
    row: pd.Series | None  # the evaluated checkpoint's checkpoint_table row
    corners: pd.DataFrame  # trained corner rows + `weight` (empty at a trained point)
    missing: tuple[str, ...] = ()  # run ids of corners not trained (or not evaluated) yet


def _same(a, b) -> bool:
    return abs(float(a) - float(b)) < 1e-9


def locate(grid: pd.DataFrame, blends: pd.DataFrame, lambda_safe: float, lambda_helpful: float) -> SliderPoint:
    """The model at (λ_safe, λ_helpful) among checkpoint_table rows: `grid` the trained grid the sliders move
    over, `blends` the evaluated interpolated models. Raises ConfigError outside the trained range."""
    at = grid[grid["lambda_safe"].map(lambda x: _same(x, lambda_safe)) & grid["lambda_helpful"].map(
        lambda x: _same(x, lambda_helpful))]
    if len(at):
        return SliderPoint(lambda_safe, lambda_helpful, "trained", at.iloc[0], grid.iloc[0:0].assign(weight=[]))
    if {"kind", "on_grid"} <= set(grid):  # a main-grid run trained off the axes is found above, never a corner
        grid = grid[(grid["kind"] != "grid") | grid["on_grid"].astype(bool)]
    weights = cell_weights(grid["lambda_safe"].tolist(), grid["lambda_helpful"].tolist(), lambda_safe, lambda_helpful)
    rows, missing = [], []
    for (s, h), w in weights.items():
        hit = grid[grid["lambda_safe"].map(lambda x: _same(x, s)) & grid["lambda_helpful"].map(lambda x: _same(x, h))]
        if len(hit):
            rows.append(hit.iloc[0].to_frame().T.assign(weight=w))
        else:
            missing.append(run_id(s, h))
    corners = pd.concat(rows, ignore_index=True) if rows else grid.iloc[0:0].assign(weight=[])
    if missing:
        return SliderPoint(lambda_safe, lambda_helpful, "no corners", None, corners, tuple(missing))
    exact = blends[(blends["blend_method"] == "exact") & blends["lambda_safe"].map(lambda x: _same(x, lambda_safe))
                   & blends["lambda_helpful"].map(lambda x: _same(x, lambda_helpful))]
    if len(exact):
        return SliderPoint(lambda_safe, lambda_helpful, "interpolated", exact.iloc[0], corners)
    return SliderPoint(lambda_safe, lambda_helpful, "not evaluated", None, corners)


def densify_plan(table: pd.DataFrame, max_gap: float, digits: int = 3) -> list[tuple[float, float]]:
    """Slider positions to evaluate so the frontier has no violation step above `max_gap`: between each pair
    of neighbouring Pareto points of the main grid (checkpoint_table rows of kind 'grid' and the exact blends
    already evaluated) whose violation rates differ by more, evenly spaced positions on the straight line
    between their (λ_safe, λ_helpful). The rates of a blend need not be linear in λ, so a gap can survive
    one round: plan again once these are evaluated."""
    from .metrics import pareto_mask

    pts = table[(table["kind"] == "grid") | ((table["kind"] == "interpolated") & (table["blend_method"] == "exact"))]
    front = pts[pareto_mask(pts)].sort_values("violation_rate")
    have = {(round(a, digits), round(b, digits)) for a, b in zip(pts["lambda_safe"], pts["lambda_helpful"])}
    plan = []
    for (_, a), (_, b) in zip(front.iterrows(), front.iloc[1:].iterrows()):
        steps = math.ceil((b["violation_rate"] - a["violation_rate"]) / max_gap - 1e-9)  # a step ≤ max_gap is fine
        for k in range(1, steps):
            t = k / steps
            pos = (round(a["lambda_safe"] + t * (b["lambda_safe"] - a["lambda_safe"]), digits),
                   round(a["lambda_helpful"] + t * (b["lambda_helpful"] - a["lambda_helpful"]), digits))
            if pos not in have and pos not in plan:
                plan.append(pos)
    return plan
