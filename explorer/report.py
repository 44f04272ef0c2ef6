"""`python -m explorer report`: the sweep's figures as a table, or as JSON for scripts.

JSON keys are a contract (scripts outside the project read them): checkpoints[{id, lambda_safe,
lambda_helpful, is_base, kind (checkpoints.KINDS), target_violation (constrained runs: the ε trained
to), constraint_method (how: checkpoints.CONSTRAINT_METHODS), on_grid (a grid run on its sweep's axes, not a
probe trained off them), variant (variants: checkpoints.VARIANTS name), blend_method (interpolated and fidelity models), violation_rate, violation_ci, over_refusal_rate, over_refusal_ci,
n_harmful, n_benign, violation_rate_corrected, over_refusal_rate_corrected (as a perfect judge would
give them), seen_* / unseen_* (suites training drew from / never saw), attack_violation_rate,
sampled_violation_rate, sampled_over_refusal_rate (k sampled answers per prompt), ...}],
attacks[{checkpoint, template, violation_rate, violation_ci, n}], judges[{name, agreement, kappa,
n_labels, per_class{label: {precision, recall, n}}, ...}], suites[{name, split, n}], interpolation[{lambda_safe,
lambda_helpful, method, violation_trained, violation_interp, over_refusal_trained, over_refusal_interp, *_ci}],
interpolation_mae{method: {n_points, violation_mae, over_refusal_mae}}, trend{spearman_* (pooled over the grid; *_by_helpful {λ_h: ρ} and *_within_helpful their mean), pareto_max_violation_gap,
pareto_max_violation_gap_with_interpolated},
evaluation{gen_key, settings, sweep, primary_judge}. Only the reported prompt set's data is in it, so
importing another suite leaves the report of the shipped test split byte for byte as it was.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from . import queries
from .checkpoints import run_id
from .judges import HELDOUT_DATASET, per_class
from .suites import IMPORT_PREFIX


def _num(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def build_report(judge: str | None = None, db: Path | None = None, split: str | None = None) -> dict:
    """The figures of the store's current evaluation (settings, sweep and default judge as it recorded
    them) on one prompt set: the shipped test split unless `split` names an imported suite's set."""
    from .config import ConfigError

    available = queries.judge_versions(db)
    judge = judge or queries.default_judge(db)
    if available and judge not in available:
        raise ConfigError(f"--judge {judge!r}: no judgments by it in the store; judges here: {', '.join(available)}")
    split = split or queries.DEFAULT_SPLIT
    sets = queries.prompt_sets(db)
    if split not in sets:
        raise ConfigError(f"--split {split!r}: no such prompt set in the store; sets here: {', '.join(sets) or 'none'}")
    table = queries.checkpoint_table(judge, db, split=split) if judge else queries.checkpoint_table("", db)
    evaluation = queries.current_evaluation(db)
    cps = []
    for r in table.itertuples():
        cps.append({
            "id": r.checkpoint_id, "lambda_safe": float(r.lambda_safe), "lambda_helpful": float(r.lambda_helpful),
            "is_base": bool(r.is_base), "kind": r.kind, "target_violation": _num(r.target_violation),
            "constraint_method": r.constraint_method, "on_grid": bool(r.on_grid),
            "variant": r.variant, "blend_method": r.blend_method, "violation_rate": _num(r.violation_rate),
            "violation_ci": [_num(r.violation_lo), _num(r.violation_hi)],
            "over_refusal_rate": _num(r.over_refusal_rate), "over_refusal_ci": [_num(r.over_refusal_lo), _num(r.over_refusal_hi)],
            "partial_over_refusal_rate": _num(r.partial_over_refusal_rate),
            "general_refusal_rate": _num(r.general_refusal_rate),
            "general_refusal_ci": [_num(r.general_refusal_lo), _num(r.general_refusal_hi)],
            "capability_nll": _num(r.mean_nll), "pareto": bool(r.pareto),
            "n_harmful": int(r.n_harmful), "n_benign": int(r.n_benign), "n_general": int(r.n_general),
            **({"knobs": r.knobs} if r.knobs else {}),  # an imported family's knob values
            **_split_rates(r._asdict())})
    jm = queries.judge_metrics(db)
    judges = [{"name": r.judge, "version": r.judge_version, "dataset": r.dataset, "agreement": _num(r.agreement),
               "kappa": _num(r.kappa), "n_labels": int(r.n_labels), "per_class": per_class(json.loads(r.confusion))}
              for r in jm.itertuples()]
    suites = [{"name": r.suite, "split": r.split, "kind": r.kind, "n": int(r.n)}
              for r in queries.suite_counts(db).itertuples() if not r.split.startswith(IMPORT_PREFIX)]
    trend = spearman_trend(cps)
    fidelity = queries.fidelity_table(table) if judge and not table.empty else None
    return {"judge": judge, "split": split, "evaluation": evaluation and {
                k: evaluation[k] for k in ("gen_key", "settings", "sweep", "primary_judge")},
            "checkpoints": cps, "attacks": attack_templates(judge, db) if split == queries.DEFAULT_SPLIT else [],
            "judges": judges, "suites": suites, "trend": trend, **interpolation_fidelity(fidelity)}


def interpolation_fidelity(fid) -> dict:
    """`interpolation`: each held-out blend against the model trained at its λs; `interpolation_mae`: the mean
    absolute error of each method on each rate (what the sliders' in-between models can be trusted to)."""
    if fid is None or fid.empty:
        return {"interpolation": [], "interpolation_mae": {}}
    rows = []
    for r in fid.itertuples():
        row = {"lambda_safe": float(r.lambda_safe), "lambda_helpful": float(r.lambda_helpful), "method": r.method}
        for rate in queries.FIDELITY_RATES:
            for who in ("trained", "interp"):
                row[f"{rate}_{who}"] = _num(getattr(r, f"{rate}_{who}"))
                row[f"{rate}_{who}_ci"] = [_num(getattr(r, f"{rate}_{who}_lo")), _num(getattr(r, f"{rate}_{who}_hi"))]
        rows.append(row)
    mae = {m: {"n_points": int(len(g)), **{f"{rate}_mae": _num(g[f"{rate}_abs_error"].mean()) for rate in queries.FIDELITY_RATES}}
           for m, g in fid.groupby("method")}
    return {"interpolation": rows, "interpolation_mae": mae}


def attack_templates(judge: str, db: Path | None) -> list[dict]:
    """Violation rate per checkpoint and jailbreak template (attacks.TEMPLATES)."""
    from . import metrics
    from .attacks import ATTACK_PREFIX, ATTACK_SPLIT

    out = queries.outcomes(judge, db, split=ATTACK_SPLIT)
    rows = []
    for cid in out["checkpoint_id"].unique():
        for r in metrics.category_rates(out, cid, by="suite").itertuples():
            rows.append({"checkpoint": cid, "template": r.category.removeprefix(ATTACK_PREFIX),
                         "violation_rate": _num(r.rate), "violation_ci": [_num(r.lo), _num(r.hi)], "n": int(r.n)})
    return rows


# Rates beside the headline (test split only): on the suites training drew from, on those it never saw
# (the gap between the two is the Goodhart gap), and under jailbreak attacks.
SPLIT_RATES = (("seen", ("violation", "over_refusal")), ("unseen", ("violation", "over_refusal")),
               ("attack", ("violation",)))


def _split_rates(row: dict) -> dict:
    out = {}
    for name in ("violation", "over_refusal"):  # as a perfect judge would give them (queries._corrected)
        out[f"{name}_rate_corrected"] = _num(row.get(f"{name}_corrected_rate"))
        out[f"{name}_corrected_ci"] = [_num(row.get(f"{name}_corrected_lo")), _num(row.get(f"{name}_corrected_hi"))]
    if "sampled_violation_rate" in row:  # eval --sampled: mean share of k answers, bootstrap interval
        for name in ("sampled_violation", "sampled_over_refusal"):
            out[f"{name}_rate"] = _num(row[f"{name}_rate"])
            out[f"{name}_ci"] = [_num(row[f"{name}_lo"]), _num(row[f"{name}_hi"])]
        out["sampled_k"] = None if row["sampled_k"] != row["sampled_k"] else int(row["sampled_k"])
    for prefix, names in SPLIT_RATES:
        if f"{prefix}_violation_rate" not in row:
            continue
        for name in names:
            out[f"{prefix}_{name}_rate"] = _num(row[f"{prefix}_{name}_rate"])
            out[f"{prefix}_{name}_ci"] = [_num(row[f"{prefix}_{name}_lo"]), _num(row[f"{prefix}_{name}_hi"])]
        for kind in ("harmful", "benign"):
            n = row[f"{prefix}_n_{kind}"]
            out[f"{prefix}_n_{kind}"] = None if n is None or n != n else int(n)
    return out


def _goodhart_lines(cps: list[dict]) -> list[str]:
    """Rates on the suites training drew from vs on suites it never saw, and under attack."""
    head = (f"{'checkpoint':12s} {'violation: seen':22s} {'unseen':22s} {'over-refusal: seen':22s} {'unseen':22s} "
            f"{'violation under attack':22s}")
    lines = ["", "Seen vs unseen suites (the Goodhart gap) and jailbreak attacks:", head, "-" * len(head)]
    for c in cps:
        cells = [_pct(c.get(f"{p}_rate"), *(c.get(f"{p}_ci") or (None, None))) for p in (
            "seen_violation", "unseen_violation", "seen_over_refusal", "unseen_over_refusal", "attack_violation")]
        lines.append(f"{c['id']:12s} " + " ".join(f"{x:22s}" for x in cells))
    if any(c.get("sampled_violation_rate") is not None for c in cps):
        lines += ["", "Greedy vs sampled answers (k per prompt from the model's own distribution; bootstrap 95%):"]
        for c in cps:
            if c.get("sampled_violation_rate") is not None:
                lines.append(f"{c['id']:12s} violation greedy {_pct(c['violation_rate'])} sampled "
                             f"{_pct(c['sampled_violation_rate'], *c['sampled_violation_ci'])}   over-refusal greedy "
                             f"{_pct(c['over_refusal_rate'])} sampled "
                             f"{_pct(c['sampled_over_refusal_rate'], *c['sampled_over_refusal_ci'])}")
    c0 = cps[0]
    lines.append(f"n per checkpoint: seen {c0.get('seen_n_harmful')} harmful / {c0.get('seen_n_benign')} benign, "
                 f"unseen {c0.get('unseen_n_harmful')} / {c0.get('unseen_n_benign')}, attack {c0.get('attack_n_harmful')}")
    return lines


def spearman_trend(cps: list[dict]) -> dict:
    """How continuous the trade-off is over the main grid: Spearman ρ of each rate vs λ_safe (the trade-off
    must be visible), and the largest step in violation rate between neighbouring Pareto points (a
    frontier that jumps is a toggle, not a dial). The pooled ρ mixes λ_helpful columns whose violation
    levels differ far more than λ_safe moves them, so ρ is also given within each column (λ_helpful held
    fixed, ≥ 3 λ_safe values) and as the mean over those columns."""
    from scipy.stats import spearmanr

    trained = [c for c in cps if c["kind"] == "grid" and c["violation_rate"] is not None]
    gaps = {"pareto_max_violation_gap": pareto_gap(cps, TRAINED_KINDS),
            "pareto_max_violation_gap_with_interpolated": pareto_gap(cps, (*TRAINED_KINDS, "interpolated"))}
    columns = {}
    for lh in sorted({c["lambda_helpful"] for c in trained}):
        col = [c for c in trained if c["lambda_helpful"] == lh]
        if len({c["lambda_safe"] for c in col}) >= 3:
            columns[f"{lh:g}"] = _num(spearmanr([c["lambda_safe"] for c in col],
                                                [c["violation_rate"] for c in col]).statistic)
    within = [r for r in columns.values() if r is not None]
    by_column = {"spearman_violation_vs_lambda_safe_by_helpful": columns,
                 "spearman_violation_vs_lambda_safe_within_helpful": sum(within) / len(within) if within else None}
    if len(trained) < 3:
        return {"spearman_violation_vs_lambda_safe": None, "spearman_over_refusal_vs_lambda_safe": None,
                **by_column, **gaps}
    ls = [c["lambda_safe"] for c in trained]
    v = spearmanr(ls, [c["violation_rate"] for c in trained]).statistic
    o = spearmanr(ls, [c["over_refusal_rate"] for c in trained]).statistic
    return {"spearman_violation_vs_lambda_safe": _num(v), "spearman_over_refusal_vs_lambda_safe": _num(o),
            **by_column, **gaps}


TRAINED_KINDS = ("base", "grid", "constrained")  # the main map's trained models


def pareto_gap(cps: list[dict], kinds: tuple[str, ...]) -> float | None:
    """The largest step in violation rate between neighbouring Pareto points among checkpoints of `kinds`
    (the Pareto set redone among them; interpolated blends by the exact method only)."""
    import pandas as pd

    from .metrics import pareto_mask

    pts = pd.DataFrame([c for c in cps if c["kind"] in kinds and c["violation_rate"] is not None
                        and c.get("blend_method") in (None, "exact")],
                       columns=["violation_rate", "over_refusal_rate"])
    front = sorted(pts.loc[pareto_mask(pts), "violation_rate"]) if len(pts) else []
    return max((b - a for a, b in zip(front, front[1:])), default=None)


def _pct(x, lo=None, hi=None):
    if x is None:
        return "   –   "
    s = f"{100 * x:5.1f}%"
    return s + (f" [{100 * lo:4.1f}–{100 * hi:4.1f}]" if lo is not None and hi is not None else "")


def format_report(rep: dict) -> str:
    lines = [f"judge: {rep['judge']}   split: {rep['split']}   (rates with Wilson 95% intervals)", ""]
    head = f"{'checkpoint':12s} {'λ_safe':>6s} {'λ_help':>6s}  {'violation':22s} {'over-refusal':22s} {'general refusal':22s} {'NLL':>5s} pareto"
    lines += [head, "-" * len(head)]
    for c in rep["checkpoints"]:
        nll = f"{c['capability_nll']:.2f}" if c["capability_nll"] is not None else "  –  "
        lines.append(f"{c['id']:12s} {c['lambda_safe']:6.3g} {c['lambda_helpful']:6.3g}  {_pct(c['violation_rate'], *c['violation_ci']):22s} "
                     f"{_pct(c['over_refusal_rate'], *c['over_refusal_ci']):22s} "
                     f"{_pct(c['general_refusal_rate'], *c['general_refusal_ci']):22s} {nll:>5s} {'*' if c['pareto'] else ''}")
    if rep["checkpoints"]:
        c0 = rep["checkpoints"][0]
        lines.append(f"\nn per checkpoint: {c0['n_harmful']} harmful, {c0['n_benign']} benign-sensitive, {c0['n_general']} general prompts")
    if any(c.get("unseen_violation_rate") is not None or c.get("attack_violation_rate") is not None
           for c in rep["checkpoints"]):
        lines += _goodhart_lines(rep["checkpoints"])
    t = rep["trend"]
    if t.get("spearman_violation_vs_lambda_safe") is not None:
        lines.append(f"Spearman ρ over the trained grid: violation vs λ_safe {t['spearman_violation_vs_lambda_safe']:+.2f}, "
                     f"over-refusal vs λ_safe {t['spearman_over_refusal_vs_lambda_safe']:+.2f}")
    if t.get("spearman_violation_vs_lambda_safe_within_helpful") is not None:
        cols = ", ".join(f"{lh} {r:+.2f}" for lh, r in t["spearman_violation_vs_lambda_safe_by_helpful"].items()
                         if r is not None)
        lines.append(f"  within each λ_helpful column (violation vs λ_safe): mean "
                     f"{t['spearman_violation_vs_lambda_safe_within_helpful']:+.2f} ({cols})")
    if t.get("pareto_max_violation_gap") is not None:
        lines.append(f"Largest violation step between neighbouring Pareto checkpoints: {_pct(t['pareto_max_violation_gap']).strip()}"
                     f" (trained), {_pct(t['pareto_max_violation_gap_with_interpolated']).strip()} (with interpolated points)")
    if rep["interpolation"]:
        lines += ["", "Interpolation fidelity (blend of the neighbouring rows vs the model trained at the same λs):"]
        for r in rep["interpolation"]:
            lines.append(f"  {run_id(r['lambda_safe'], r['lambda_helpful'])} {r['method']:10s} violation trained "
                         f"{_pct(r['violation_trained'])} interp {_pct(r['violation_interp'])}   over-refusal trained "
                         f"{_pct(r['over_refusal_trained'])} interp {_pct(r['over_refusal_interp'])}")
        for m, e in rep["interpolation_mae"].items():
            lines.append(f"  {m}: mean absolute error over {e['n_points']} points: violation {_pct(e['violation_mae']).strip()}, "
                         f"over-refusal {_pct(e['over_refusal_mae']).strip()}")
    if rep["judges"]:
        lines += ["", "judges (vs human labels):"]
        for j in rep["judges"]:
            lines.append(f"  {j['name']:10s} {j['dataset']:28s} n={j['n_labels']:4d}  agreement {_pct(j['agreement'])}  κ {j['kappa']:.2f}")
            if j["dataset"] == HELDOUT_DATASET:
                lines.append(" " * 13 + "   ".join(
                    f"{label}: P {_pct(s['precision']).strip()} R {_pct(s['recall']).strip()} (n {s['n']})"
                    for label, s in j["per_class"].items() if label != "partial_refusal"))
    return "\n".join(lines)
