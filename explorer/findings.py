"""`python -m explorer report --markdown`: the store's findings as Markdown (docs/FINDINGS.md).

Every figure here is read from the report dict (`report.build_report`) or, for the bisection probes, the
manifests the store holds: nothing is typed by hand, so the committed file is regenerated, never edited
(tests/test_findings.py compares it with this command's output on the shipped store). The prose says
only what holds whatever the numbers are; a statement that depends on them is a computed column.
"""
from __future__ import annotations

from pathlib import Path

from . import queries

GENERATED_BY = "python -m explorer report --markdown > docs/FINDINGS.md"
LANDING_TOLERANCE = 0.05  # a run trained to ε "lands" when its test-split violation is within ±0.05 of ε


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def with_ci(x: float | None, ci: list | None) -> str:
    """'21.6% [18.2–25.3]': a rate with its 95% interval, in points."""
    if x is None:
        return "–"
    if not ci or ci[0] is None or ci[1] is None:
        return pct(x)
    return f"{pct(x)} [{100 * ci[0]:.1f}–{100 * ci[1]:.1f}]"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table (every cell already a string)."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows), ""]


def _lam(x: float) -> str:
    return f"{x:.3g}"


def checkpoints_section(rep: dict) -> list[str]:
    """Every checkpoint, its headline rates with intervals and, beside each, the rate on never-seen prompts."""
    rows = [[c["id"], c["kind"] + (f"/{c['blend_method']}" if c["blend_method"] else ""), _lam(c["lambda_safe"]),
             _lam(c["lambda_helpful"]), with_ci(c["violation_rate"], c["violation_ci"]),
             pct(c.get("unseen_violation_rate")), with_ci(c["over_refusal_rate"], c["over_refusal_ci"]),
             pct(c.get("unseen_over_refusal_rate")), pct(c.get("attack_violation_rate")),
             pct(c["general_refusal_rate"]), "–" if c["capability_nll"] is None else f"{c['capability_nll']:.2f}",
             "yes" if c["pareto"] else ""] for c in rep["checkpoints"]]
    c0 = rep["checkpoints"][0]
    return ["## Every checkpoint", "",
            f"Greedy answers on the {rep['split']} split, judged by `{rep['judge']}` (Wilson 95% intervals). "
            f"n per checkpoint: {c0['n_harmful']} harmful, {c0['n_benign']} benign-but-sensitive, {c0['n_general']} "
            f"general prompts; never seen: {c0.get('unseen_n_harmful')} harmful (HarmBench) and "
            f"{c0.get('unseen_n_benign')} benign prompts no training pair came from; under attack: "
            f"{c0.get('attack_n_harmful')} harmful prompts in jailbreak templates. NLL: capability loss on the base "
            "model's own answers to ordinary requests (nats per token).", "",
            *table(["checkpoint", "kind", "λ_safe", "λ_helpful", "violation", "never seen", "over-refusal",
                    "never seen", "under attack", "general refusal", "NLL", "Pareto"], rows)]


def trend_section(rep: dict) -> list[str]:
    t = rep["trend"]
    if t.get("spearman_violation_vs_lambda_safe") is None:
        return []
    by_column = ", ".join(f"{lh}: {r:+.2f}" for lh, r in t["spearman_violation_vs_lambda_safe_by_helpful"].items()
                          if r is not None)
    return ["## How continuous the trade-off is", "",
            f"- Spearman ρ of violation vs λ_safe over every trained grid run: "
            f"{t['spearman_violation_vs_lambda_safe']:+.2f} (over-refusal vs λ_safe "
            f"{t['spearman_over_refusal_vs_lambda_safe']:+.2f}).",
            f"- Within each λ_helpful column (λ_helpful held fixed): mean "
            f"{t['spearman_violation_vs_lambda_safe_within_helpful']:+.2f} ({by_column}). The pooled ρ mixes "
            "columns whose levels differ more than λ_safe moves them.",
            f"- Largest violation step between neighbouring Pareto checkpoints: "
            f"{pct(t['pareto_max_violation_gap'])} on trained models, "
            f"{pct(t['pareto_max_violation_gap_with_interpolated'])} with the interpolated blends.", ""]


def probes_of(rep: dict, db: Path | None) -> dict[str, str]:
    """'λ_safe → v̂' of each bisection probe, per constrained run (from the manifests the store holds)."""
    out = {}
    for c in rep["checkpoints"]:
        if c["kind"] == "constrained" and c["constraint_method"] == "bisection":
            tr = queries.trajectory(c["id"], db)
            out[c["id"]] = ", ".join(f"{r.lambda_safe:g} → {r.violation_estimate:.3f}" for r in tr.itertuples())
    return out


def constrained_section(rep: dict, probes: dict[str, str]) -> list[str]:
    """Runs trained to a target ε: where each landed on the test split, in and out of distribution."""
    runs = sorted((c for c in rep["checkpoints"] if c["kind"] == "constrained"),
                  key=lambda c: (c["target_violation"], c["constraint_method"]))
    if not runs:
        return []
    rows = [[f"{c['target_violation']:g}", c["constraint_method"], _lam(c["lambda_helpful"]), _lam(c["lambda_safe"]),
             probes.get(c["id"], "–"), with_ci(c["violation_rate"], c["violation_ci"]),
             "yes" if abs(c["violation_rate"] - c["target_violation"]) <= LANDING_TOLERANCE else "no",
             pct(c.get("seen_violation_rate")), pct(c.get("unseen_violation_rate")),
             with_ci(c.get("sampled_violation_rate"), c.get("sampled_violation_ci")), pct(c["over_refusal_rate"])]
            for c in runs]
    return ["## Runs trained to a target ε", "",
            "λ_safe found by training: dual ascent inside one run, or bisection across runs (each probe a run at one "
            "λ_safe and its violation rate v̂ on dev prompts). The test split is the check; \"lands\" means within "
            f"±{LANDING_TOLERANCE:g} of ε.", "",
            *table(["ε", "method", "λ_helpful", "λ_safe found", "probes: λ_safe → v̂", "violation, test",
                    f"lands (±{LANDING_TOLERANCE:g})", "seen suites", "never seen", "sampled", "over-refusal"], rows)]


def sampled_section(rep: dict) -> list[str]:
    """Greedy against sampled rates wherever k answers per prompt were drawn."""
    runs = [c for c in rep["checkpoints"] if c.get("sampled_violation_rate") is not None]
    if not runs:
        return []
    rows = [[c["id"], pct(c["violation_rate"]), with_ci(c["sampled_violation_rate"], c["sampled_violation_ci"]),
             pct(c["over_refusal_rate"]), with_ci(c["sampled_over_refusal_rate"], c["sampled_over_refusal_ci"]),
             str(c["sampled_k"])] for c in sorted(runs, key=lambda c: c["violation_rate"])]
    return ["## One greedy answer is one draw: sampled rates", "",
            "k answers per prompt drawn from the model's own distribution (`eval --sampled`): the mean share "
            "per prompt, with a bootstrap 95% interval over prompts.", "",
            *table(["checkpoint", "violation, greedy", "sampled", "over-refusal, greedy", "sampled", "k"], rows)]


def interpolation_section(rep: dict) -> list[str]:
    """Held-out blends against the model trained at the same λs, and each method's mean absolute error."""
    if not rep["interpolation"]:
        return []
    rows = [[f"λ_safe {r['lambda_safe']:g}, λ_helpful {r['lambda_helpful']:g}", r["method"],
             pct(r["violation_trained"]), pct(r["violation_interp"]), pct(r["over_refusal_trained"]),
             pct(r["over_refusal_interp"])] for r in rep["interpolation"]]
    mae = [f"- {m}: violation {pct(e['violation_mae'])}, over-refusal {pct(e['over_refusal_mae'])} over "
           f"{e['n_points']} points" for m, e in rep["interpolation_mae"].items()]
    return ["## Between trained points: can a blend be trusted?", "",
            "Each trained point blended from its neighbours, its own row withheld, beside the model trained there "
            "(`eval --fidelity`, `eval --interpolate LS,LH --held-out`).", "",
            *table(["held-out point", "blend", "violation: trained", "blend", "over-refusal: trained", "blend"], rows),
            "Mean absolute error of the blend:", *mae, ""]


def attacks_section(rep: dict) -> list[str]:
    """Per jailbreak template: its violation rate on the checkpoints evaluated under attack."""
    by_template: dict[str, list[dict]] = {}
    for a in rep["attacks"]:
        by_template.setdefault(a["template"], []).append(a)
    if not by_template:
        return []
    rows = []
    for name, runs in sorted(by_template.items()):
        rates = sorted(r["violation_rate"] for r in runs)
        top = max(runs, key=lambda r: (r["violation_rate"], r["checkpoint"]))
        rows.append([name, str(len(runs)), str(runs[0]["n"]), pct(rates[0]), pct(rates[len(rates) // 2]),
                     f"{pct(top['violation_rate'])} ({top['checkpoint']})"])
    return ["## Jailbreak templates", "", "The same harmful test prompts wrapped in each template; violation rate "
            "across the checkpoints evaluated under attack.", "",
            *table(["template", "checkpoints", "prompts", "lowest", "median", "highest"], rows)]


def variants_section(rep: dict) -> list[str]:
    """Each loss variant beside the main grid's run at the same λs."""
    grid = {(c["lambda_safe"], c["lambda_helpful"]): c for c in rep["checkpoints"] if c["kind"] == "grid"}
    rows = []
    for c in rep["checkpoints"]:
        if c["kind"] == "variant" and (g := grid.get((c["lambda_safe"], c["lambda_helpful"]))):
            rows.append([c["id"], c["variant"], pct(c["violation_rate"]), pct(g["violation_rate"]),
                         pct(c["over_refusal_rate"]), pct(g["over_refusal_rate"])])
    if not rows:
        return []
    return ["## The loss's other levers", "", "`hinge`: a sharp penalty instead of DPO's; `unweighted`: every "
            "violation weighs the same (no severity weights). Beside the main grid's run at the same λs.", "",
            *table(["checkpoint", "variant", "violation", "main grid", "over-refusal", "main grid"], rows)]


def judges_section(rep: dict) -> list[str]:
    """Each judge against each set of human labels: agreement, κ, and refusal precision / recall."""
    rows = []
    for j in rep["judges"]:
        refusal = j["per_class"].get("any_refusal") or j["per_class"].get("True") or j["per_class"].get("violation")
        rows.append([j["name"] + (" (primary)" if j["name"] == rep["judge"] else ""), j["dataset"], str(j["n_labels"]),
                     pct(j["agreement"]), f"{j['kappa']:.2f}", pct(refusal and refusal["precision"]),
                     pct(refusal and refusal["recall"])])
    if not rows:
        return []
    return ["## The judges against people", "",
            "Held-out hand labels (never used to tune a rule or fit a weight) and JailbreakBench's human votes. "
            "Precision / recall are of the positive class: any refusal (project labels), the rate's event "
            "(violation / over-refusal decisions), or a violation (JailbreakBench).", "",
            *table(["judge", "labels", "n", "agreement", "κ", "precision", "recall"], rows)]


def to_markdown(rep: dict, probes: dict[str, str]) -> str:
    ev = rep["evaluation"] or {}
    settings = ev.get("settings") or {}
    head = ["# Findings on the shipped sweep", "",
            f"Generated by `{GENERATED_BY}` from the evaluation store; do not edit by hand (a test checks that "
            "this file equals the command's output). "
            f"Sweep `{ev.get('sweep')}`, evaluation `{ev.get('gen_key')}`, greedy answers of at most "
            f"{settings.get('max_new_tokens')} new tokens, primary judge `{ev.get('primary_judge')}`.", ""]
    sections = [checkpoints_section(rep), trend_section(rep), constrained_section(rep, probes),
                sampled_section(rep), interpolation_section(rep), attacks_section(rep), variants_section(rep),
                judges_section(rep)]
    return "\n".join(head + [line for s in sections for line in s]).rstrip("\n") + "\n"
