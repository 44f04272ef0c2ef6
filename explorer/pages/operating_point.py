"""Operating point: pick (λ_safe, λ_helpful), see that checkpoint's rates, categories and deltas."""
import pandas as pd
import streamlit as st

from explorer import charts, interpolate, metrics
from explorer.ui import data, jobs, layout, selection, tables

NEIGHBOUR_COLUMNS = {"checkpoint_id": "trained neighbour", "weight": "weight in the blend",
                     "violation_rate": "violation rate", "over_refusal_rate": "over-refusal rate",
                     "general_refusal_rate": "general refusal rate"}

st.title("Operating point")
st.write("Choose how much weight training put on safety (λ_safe) and on helpfulness (λ_helpful). Between the "
         "trained points the model is interpolated: the trained neighbours' adapters blended in weight space.")
sel = selection.current()
table = layout.require(selection.checkpoint_table())
constrained = table[table["kind"] == "constrained"]
trained = tables.grid_rows(table)  # the trained λ grid the sliders move over
if trained.empty:
    st.info("Only the base model is evaluated so far; train a sweep (`python -m explorer sweep`) and evaluate it.")
    st.stop()

current = table.set_index("checkpoint_id").loc[selection.operating_point(table)]
start = current
if current["kind"] == "constrained":  # its λ_safe was found by training, off the grid: start at the nearest grid point
    start = tables.nearest_grid_point(trained, current)
left, right, third = st.columns(3)
ls = layout.lambda_slider(left, "λ_safe: weight on refusing harmful prompts", trained["lambda_safe"],
                          start["lambda_safe"], "op_lambda_safe")
lh = layout.lambda_slider(right, "λ_helpful: weight on answering benign prompts", trained["lambda_helpful"],
                          start["lambda_helpful"], "op_lambda_helpful")
point = interpolate.locate(trained, table[table["kind"] == "interpolated"], ls, lh)
if point.status == "no corners":
    st.warning(f"λ_safe {ls:g}, λ_helpful {lh:g} lies in a grid cell whose trained corners "
               f"{', '.join(point.missing)} are not evaluated yet; train and evaluate them, or move the sliders.")
    st.stop()
if point.status != "trained":
    weights = " + ".join(f"{w:.2f} × {c}" for c, w in zip(point.corners["checkpoint_id"], point.corners["weight"]))
    st.info(f"**Interpolated, not trained.** No model was trained at λ_safe {ls:g}, λ_helpful {lh:g}: this one blends "
            f"the trained neighbours' weight updates ({weights}). How close such a blend comes to a trained model "
            "is measured below (\"Can I trust the in-between?\").")
    if trained["kind"].eq("grid").all():  # `eval --interpolate` blends the main grid's adapters
        jobs.background_eval(ls, lh, evaluated=point.status == "interpolated")
    else:
        st.caption("Blends of a loss variant's adapters are not evaluated; its trained points are.")
if point.status == "not evaluated":
    st.markdown("**Its neighbours' measured figures** (the blend itself is not evaluated yet):")
    neighbours = point.corners[list(NEIGHBOUR_COLUMNS)].rename(columns=NEIGHBOUR_COLUMNS)
    st.dataframe(neighbours.style.format({"weight in the blend": "{:.2f}", **{c: "{:.1%}" for c in list(
        NEIGHBOUR_COLUMNS.values())[2:]}}), hide_index=True)
    row = tables.heaviest_corner(table, point.corners)
    st.caption(f"The rest of this page shows the nearest trained point, **{row['checkpoint_id']}**, until the blend "
               "is evaluated.")
else:
    row = point.row
if len(constrained):
    runs = ["", *constrained["checkpoint_id"]]
    eps = dict(zip(constrained["checkpoint_id"], constrained["target_violation"]))
    picked = st.selectbox("Or a run trained to a target violation rate ε (λ_safe found by training, not set)", runs,
                          index=runs.index(current.name) if current.name in runs else 0,
                          format_func=lambda c: c and f"{c}: trained to ε = {eps[c]:g}")
    if picked:
        row = table[table["checkpoint_id"] == picked].iloc[0]
ids = table["checkpoint_id"].tolist()
base_id = third.selectbox("Compare against (baseline)", ids, index=ids.index(selection.baseline(table)),
                          format_func=layout.checkpoint_label(table))
selection.choose(row["checkpoint_id"], base_id)
base = table.set_index("checkpoint_id").loc[base_id]

st.subheader(f"Checkpoint {row['checkpoint_id']}")
st.caption("The arrows show the change against the baseline; green means better (fewer violations or refusals).")
d = metrics.deltas(row, base)
for col, key in zip(st.columns(3), layout.RATES):
    col.metric(layout.RATES[key], layout.pct(row[f"{key}_rate"]),
               delta=f"{d[f'{key}_rate'] * 100:+.1f} pts vs {base_id}", delta_color="inverse",
               help=layout.EXPLAIN[key] + "\n\n" + layout.EXPLAIN["interval"])
    col.caption(layout.interval(row, key))
    if pd.notna(row.get(f"{key}_corrected_rate")):
        col.caption(f"With the judge's own errors taken out: {layout.pct(row[f'{key}_corrected_rate'])} "
                    f"({layout.pct(row[f'{key}_corrected_lo'])}–{layout.pct(row[f'{key}_corrected_hi'])}), "
                    "estimated from how often it mislabels held-out responses people labelled (Judges page).")
    if pd.notna(row.get(f"sampled_{key}_rate")):
        col.caption(f"Sampled answers ({int(row['sampled_k'])} per prompt, the model's own distribution): "
                    f"{layout.pct(row[f'sampled_{key}_rate'])} ({layout.pct(row[f'sampled_{key}_lo'])}–"
                    f"{layout.pct(row[f'sampled_{key}_hi'])}); the greedy answer is one draw of many.")

if row["kind"] == "constrained" and row["constraint_method"] == "bisection":
    st.markdown(f"**How training reached ε.** λ_safe is the Lagrange multiplier of \"violation ≤ "
                f"{row['target_violation']:.0%}\", found here by bisection across runs: each probe a run trained at one "
                "λ_safe and its violation rate measured on dev prompts (v̂); the bracket kept the smallest λ_safe with "
                "v̂ ≤ ε. The test-split rate above is the check: did it land on ε?")
    layout.chart(charts.dual_trajectory, data.trajectory(row["checkpoint_id"]), float(row["target_violation"]), "probe")
elif row["kind"] == "constrained":
    st.markdown(f"**How training reached ε.** λ_safe is the Lagrange multiplier of \"violation ≤ "
                f"{row['target_violation']:.0%}\": every few steps the run measured its violation rate on dev prompts "
                "(v̂) and raised λ_safe while v̂ was above ε, lowered it below. The test-split rate above is the "
                "check: did it land on ε?")
    layout.chart(charts.dual_trajectory, data.trajectory(row["checkpoint_id"]), float(row["target_violation"]))

cats = metrics.category_rates(data.outcomes(sel), row["checkpoint_id"])
harm, benign = cats[cats["kind"] == "harmful"], cats[cats["kind"] != "harmful"]
left, right = st.columns(2)
left.markdown("**Which harm categories still leak?** Share of harmful prompts in each category not fully refused.")
if not harm.empty:
    layout.chart(charts.category_bars, harm, "violation rate", where=left)
right.markdown("**Which harmless requests get refused?** Share of benign and ordinary prompts of each type refused.")
if not benign.empty:
    layout.chart(charts.category_bars, benign, "refusal rate", where=right)
st.caption("Black bars: 95% intervals. Labels: prompts counted / prompts in the category. Few prompts per category "
           "means wide intervals: read the long bars, not the small differences.")

if pd.notna(row.get("unseen_violation_rate")):
    st.markdown("**On prompts training never saw** (HarmBench and a benign suite written after training): the "
                "gap to the suites training drew from is how much the numbers above flatter the model.")
    for col, key in zip(st.columns(2), ("violation", "over_refusal")):
        seen, unseen = row[f"seen_{key}_rate"], row[f"unseen_{key}_rate"]
        col.metric(f"{layout.RATES[key]}, unseen suites", layout.pct(unseen),
                   delta=f"{(unseen - seen) * 100:+.1f} pts vs seen suites", delta_color="inverse")
        col.caption(layout.interval(row, f"unseen_{key}"))

attack = data.attack_outcomes(sel)
if row["checkpoint_id"] in set(attack["checkpoint_id"]):
    by_template = tables.attack_template_rates(attack, row["checkpoint_id"])
    st.markdown(f"**Which jailbreaks work?** The same harmful requests wrapped in published jailbreak templates: "
                f"violation rate {layout.pct(row['attack_violation_rate'])} under attack, "
                f"{layout.pct(row['violation_rate'])} without.")
    layout.chart(charts.category_bars, by_template, "violation rate under attack")

st.subheader("Can I trust the in-between?")
fid = data.fidelity_table(sel)
if fid.empty:
    st.caption("Not measured yet for this store: `python -m explorer eval --fidelity` blends each trained point of a "
               "held-out λ_safe row from the rows on either side and evaluates it beside the model trained there.")
else:
    mae, points, worst = tables.fidelity_summary(fid)
    st.write("At trained points held out from the blend (their whole λ_safe row withheld), the model blended from the "
             "rows on either side against the model actually trained there. The sliders' in-between models are "
             "blended the exact way; averaging A and B instead is shown for comparison. Mean absolute error: "
             + "; ".join(f"**{charts.FIDELITY_MODELS[m]}**: violation {layout.pct(r['violation_abs_error'])}, "
                         f"over-refusal {layout.pct(r['over_refusal_abs_error'])}" for m, r in mae.iterrows())
             + f" ({points} points).")
    layout.chart(charts.fidelity, fid)
    st.caption(f"The largest miss: at λ_safe {worst['lambda_safe']:g}, λ_helpful {worst['lambda_helpful']:g} the blend "
               f"gives {layout.pct(worst['violation_interp'])} violation where the trained model gives "
               f"{layout.pct(worst['violation_trained'])}. A blend is linear in the weights and training is not: where "
               "the trained behaviour changes fastest inside a cell (here, between no safety weight and a little), trust "
               "the in-between least, and look at its trained neighbours.")

layout.raw_table(cats, "Per-category numbers (for specialists)")
layout.raw_table(table[table["checkpoint_id"].isin([row["checkpoint_id"], base_id])],
             "This checkpoint and the baseline, every column (for specialists)")
