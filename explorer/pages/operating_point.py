"""Operating point: pick (λ_safe, λ_helpful), see that checkpoint's rates, categories and deltas."""
import pandas as pd
import streamlit as st

from explorer import charts, interpolate, metrics, ui

NEIGHBOUR_COLUMNS = {"checkpoint_id": "trained neighbour", "weight": "weight in the blend",
                     "violation_rate": "violation rate", "over_refusal_rate": "over-refusal rate",
                     "general_refusal_rate": "general refusal rate"}

st.title("Operating point")
st.write("Choose how much weight training put on safety (λ_safe) and on helpfulness (λ_helpful). Between the "
         "trained points the model is interpolated: the trained neighbours' adapters blended in weight space.")
table = ui.require(ui.checkpoint_table())
constrained = table[table["kind"] == "constrained"]
trained = ui.grid_rows(table)  # the trained λ grid the sliders move over
if trained.empty:
    st.info("Only the base model is evaluated so far; train a sweep (`python -m explorer sweep`) and evaluate it.")
    st.stop()

current = table.set_index("checkpoint_id").loc[ui.operating_point(table)]
start = current
if current["kind"] == "constrained":  # its λ_safe was found by training, off the grid: start at the nearest grid point
    start = trained.loc[((trained["lambda_safe"] - current["lambda_safe"]) ** 2
                         + (trained["lambda_helpful"] - current["lambda_helpful"]) ** 2).idxmin()]
left, right, third = st.columns(3)
ls = ui.lambda_slider(left, "λ_safe: weight on refusing harmful prompts", trained["lambda_safe"], start["lambda_safe"],
                      "op_lambda_safe")
lh = ui.lambda_slider(right, "λ_helpful: weight on answering benign prompts", trained["lambda_helpful"],
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
        ui.background_eval(ls, lh, evaluated=point.status == "interpolated")
    else:
        st.caption("Blends of a loss variant's adapters are not evaluated; its trained points are.")
if point.status == "not evaluated":
    st.markdown("**Its neighbours' measured figures** (the blend itself is not evaluated yet):")
    neighbours = point.corners[list(NEIGHBOUR_COLUMNS)].rename(columns=NEIGHBOUR_COLUMNS)
    st.dataframe(neighbours.style.format({"weight in the blend": "{:.2f}", **{c: "{:.1%}" for c in list(
        NEIGHBOUR_COLUMNS.values())[2:]}}), hide_index=True)
    row = point.corners.sort_values("weight", ascending=False).iloc[0]
    row = table[table["checkpoint_id"] == row["checkpoint_id"]].iloc[0]
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
st.session_state["operating_point"] = row["checkpoint_id"]
ids = table["checkpoint_id"].tolist()
base_id = third.selectbox("Compare against (baseline)", ids, index=ids.index(ui.baseline(table)),
                          format_func=ui.checkpoint_label(table))
st.session_state["baseline"] = base_id
base = table.set_index("checkpoint_id").loc[base_id]

st.subheader(f"Checkpoint {row['checkpoint_id']}")
st.caption("The arrows show the change against the baseline; green means better (fewer violations or refusals).")
d = metrics.deltas(row, base)
for col, key in zip(st.columns(3), ui.RATES):
    col.metric(ui.RATES[key], ui.pct(row[f"{key}_rate"]), delta=f"{d[f'{key}_rate'] * 100:+.1f} pts vs {base_id}",
               delta_color="inverse", help=ui.EXPLAIN[key] + "\n\n" + ui.EXPLAIN["interval"])
    col.caption(ui.interval(row, key))
    if pd.notna(row.get(f"{key}_corrected_rate")):
        col.caption(f"With the judge's own errors taken out: {ui.pct(row[f'{key}_corrected_rate'])} "
                    f"({ui.pct(row[f'{key}_corrected_lo'])}–{ui.pct(row[f'{key}_corrected_hi'])}), estimated from "
                    "how often it mislabels held-out responses people labelled (Judges page).")
    if pd.notna(row.get(f"sampled_{key}_rate")):
        col.caption(f"Sampled answers ({int(row['sampled_k'])} per prompt, the model's own distribution): "
                    f"{ui.pct(row[f'sampled_{key}_rate'])} ({ui.pct(row[f'sampled_{key}_lo'])}–"
                    f"{ui.pct(row[f'sampled_{key}_hi'])}); the greedy answer is one draw of many.")

if row["kind"] == "constrained" and row["constraint_method"] == "bisection":
    st.markdown(f"**How training reached ε.** λ_safe is the Lagrange multiplier of \"violation ≤ "
                f"{row['target_violation']:.0%}\", found here by bisection across runs: each probe a run trained at one "
                "λ_safe and its violation rate measured on dev prompts (v̂); the bracket kept the smallest λ_safe with "
                "v̂ ≤ ε. The test-split rate above is the check: did it land on ε?")
    ui.chart(charts.dual_trajectory, ui.trajectory(row["checkpoint_id"]), float(row["target_violation"]), "probe")
elif row["kind"] == "constrained":
    st.markdown(f"**How training reached ε.** λ_safe is the Lagrange multiplier of \"violation ≤ "
                f"{row['target_violation']:.0%}\": every few steps the run measured its violation rate on dev prompts "
                "(v̂) and raised λ_safe while v̂ was above ε, lowered it below. The test-split rate above is the "
                "check: did it land on ε?")
    ui.chart(charts.dual_trajectory, ui.trajectory(row["checkpoint_id"]), float(row["target_violation"]))

cats = metrics.category_rates(ui.outcomes(), row["checkpoint_id"])
harm, benign = cats[cats["kind"] == "harmful"], cats[cats["kind"] != "harmful"]
left, right = st.columns(2)
left.markdown("**Which harm categories still leak?** Share of harmful prompts in each category not fully refused.")
if not harm.empty:
    ui.chart(charts.category_bars, harm, "violation rate", where=left)
right.markdown("**Which harmless requests get refused?** Share of benign and ordinary prompts of each type refused.")
if not benign.empty:
    ui.chart(charts.category_bars, benign, "refusal rate", where=right)
st.caption("Black bars: 95% intervals. Labels: prompts counted / prompts in the category. Few prompts per category "
           "means wide intervals: read the long bars, not the small differences.")

if pd.notna(row.get("unseen_violation_rate")):
    st.markdown("**On prompts training never saw** (HarmBench and a benign suite written after training): the "
                "gap to the suites training drew from is how much the numbers above flatter the model.")
    for col, key in zip(st.columns(2), ("violation", "over_refusal")):
        seen, unseen = row[f"seen_{key}_rate"], row[f"unseen_{key}_rate"]
        col.metric(f"{ui.RATES[key]}, unseen suites", ui.pct(unseen), delta=f"{(unseen - seen) * 100:+.1f} pts vs seen "
                   "suites", delta_color="inverse")
        col.caption(ui.interval(row, f"unseen_{key}"))

attack = ui.attack_outcomes()
if row["checkpoint_id"] in set(attack["checkpoint_id"]):
    by_template = metrics.category_rates(attack, row["checkpoint_id"], by="suite")
    by_template["category"] = by_template["category"].str.removeprefix("attack:")
    st.markdown(f"**Which jailbreaks work?** The same harmful requests wrapped in published jailbreak templates: "
                f"violation rate {ui.pct(row['attack_violation_rate'])} under attack, "
                f"{ui.pct(row['violation_rate'])} without.")
    ui.chart(charts.category_bars, by_template, "violation rate under attack")

st.subheader("Can I trust the in-between?")
fid = ui.fidelity_table()
if fid.empty:
    st.caption("Not measured yet for this store: `python -m explorer eval --fidelity` blends each trained point of a "
               "held-out λ_safe row from the rows on either side and evaluates it beside the model trained there.")
else:
    mae = fid.groupby("method")[["violation_abs_error", "over_refusal_abs_error"]].mean()
    st.write("At trained points held out from the blend (their whole λ_safe row withheld), the model blended from the "
             "rows on either side against the model actually trained there. The sliders' in-between models are "
             "blended the exact way; averaging A and B instead is shown for comparison. Mean absolute error: "
             + "; ".join(f"**{charts.FIDELITY_MODELS[m]}**: violation {ui.pct(r['violation_abs_error'])}, over-refusal "
                         f"{ui.pct(r['over_refusal_abs_error'])}" for m, r in mae.iterrows()) + f" ({len(fid[['lambda_safe', 'lambda_helpful']].drop_duplicates())} points).")
    ui.chart(charts.fidelity, fid)
    worst = fid.loc[fid["violation_abs_error"].idxmax()]
    st.caption(f"The largest miss: at λ_safe {worst['lambda_safe']:g}, λ_helpful {worst['lambda_helpful']:g} the blend "
               f"gives {ui.pct(worst['violation_interp'])} violation where the trained model gives "
               f"{ui.pct(worst['violation_trained'])}. A blend is linear in the weights and training is not: where the "
               "trained behaviour changes fastest inside a cell (here, between no safety weight and a little), trust "
               "the in-between least, and look at its trained neighbours.")

ui.raw_table(cats, "Per-category numbers (for specialists)")
ui.raw_table(table[table["checkpoint_id"].isin([row["checkpoint_id"], base_id])],
             "This checkpoint and the baseline, every column (for specialists)")
