"""Trade-off map: every checkpoint's violation vs over-refusal, the Pareto set, and the ε ceiling."""
import streamlit as st

from explorer import charts, metrics
from explorer.ui import layout, selection, tables

st.title("Trade-off map")
st.write("Each point is one checkpoint: the same small model fine-tuned with a different balance between "
         "refusing harmful requests (λ_safe) and answering benign ones (λ_helpful). Down and to the left is better "
         "on both counts; no checkpoint gets there for free.")
table = layout.require(selection.checkpoint_table())
if len(views := tables.available_views(table)) > 1:
    view = st.radio("Rates measured on", views, format_func=tables.PROMPT_VIEWS.get, horizontal=True,
                    help="Suites training never saw are the honest test: a model can look safe and helpful on "
                         "prompts like those it was trained on and worse on new ones (the Goodhart gap).")
    table = tables.rates_on(table, view)

with st.expander("How to read this chart"):
    st.markdown("\n\n".join([layout.EXPLAIN["violation"], layout.EXPLAIN["over_refusal"], layout.EXPLAIN["interval"],
                             "The thin bars through each point are those intervals. **Pareto-optimal** (red) "
                             "checkpoints are those no other checkpoint beats on both rates at once; the dashed "
                             "line joins them. The grey diamond is the untrained base model."]))

epsilon = st.slider("Maximum acceptable violation rate (ε)", 0.0, 1.0, selection.DEFAULT_EPSILON, 0.01, format="%.2f",
                    help="Checkpoints above this violation rate are ruled out (shaded region); among the rest we "
                         "pick the one that refuses the fewest benign prompts.")
best = metrics.best_under_ceiling(table, epsilon)
if best is None:
    st.warning(f"No checkpoint has a violation rate of at most {epsilon:.0%}. Raise ε, or train with a larger λ_safe.")
else:
    st.success(f"Most helpful checkpoint with violation rate ≤ {epsilon:.0%}: **{best['checkpoint_id']}** "
               f"(λ_safe {best['lambda_safe']:.3g}, λ_helpful {best['lambda_helpful']:.3g}) — violation "
               f"{layout.pct(best['violation_rate'])}, over-refusal {layout.pct(best['over_refusal_rate'])}.")

if not (knobs := tables.knob_table(table)).empty:
    with st.expander("Knob values of this imported family"):
        st.dataframe(knobs, hide_index=True, width="stretch")

# the chart is built once per table; ε and the ringed checkpoint are its parameters, set per rerun
layout.chart(charts.frontier, table, selection.DEFAULT_EPSILON, "",
         params={"epsilon": epsilon, "best": "" if best is None else best["checkpoint_id"]})

st.subheader("Each rate over the λ grid")
st.caption("Rows: λ_safe, the weight on refusing harmful prompts (higher going up). Columns: λ_helpful, the "
           "weight on answering benign prompts. Capability loss is how surprised each checkpoint is by the base "
           "model's own answers to ordinary questions (nats per token; lower = less drift). The base model is not "
           "on the grid.")
HEATMAPS = {"violation_rate": ("Violation rate", ".0%"), "over_refusal_rate": ("Over-refusal rate", ".0%"),
            "general_refusal_rate": ("General refusal rate", ".0%"),
            "mean_nll": ("Capability loss (NLL)", ".2f")}
metric = st.radio("Metric", list(HEATMAPS), format_func=lambda m: HEATMAPS[m][0], horizontal=True)
if (grid := tables.grid_rows(table))[metric].notna().any():
    layout.chart(charts.heatmap, grid, metric, *HEATMAPS[metric])
else:
    st.info("This metric has not been computed for these checkpoints yet.")

layout.raw_table(table)
