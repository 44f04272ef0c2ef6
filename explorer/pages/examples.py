"""Concrete examples: prompts whose outcome flips between two checkpoints, both responses side by side."""
import streamlit as st

from explorer.metrics import FLIP_MEANINGS
from explorer.ui import data, layout, selection, tables

st.title("Concrete examples")
st.write("Rates hide the prompts behind them. Here are the prompts whose outcome changes when you move from "
         "checkpoint A to checkpoint B, with both responses side by side.")
sel = selection.current()
table = layout.require(selection.checkpoint_table())
a, b = layout.checkpoint_pair(table, ("From checkpoint A (baseline)", "To checkpoint B (operating point)"),
                         (selection.baseline(table), selection.operating_point(table)))
if a == b:
    st.info("Pick two different checkpoints to see what changes between them.")
    st.stop()

flips = data.flips(sel, a, b)
for col, (flip, help_text) in zip(st.columns(len(FLIP_MEANINGS)), FLIP_MEANINGS.items()):
    col.metric(flip.capitalize(), int((flips["flip"] == flip).sum()) if len(flips) else 0, help=help_text)
st.caption("Over-refusal made concrete: a *newly refused* prompt is a harmless question a person asked and "
           f"{b} now declines. For harmful prompts only a full refusal counts as refused.")
if flips.empty:
    st.info(f"No prompt changes outcome between {a} and {b} under this judge.")
    st.stop()

f1, f2, f3 = st.columns(3)
changes = f1.multiselect("Kind of change", list(FLIP_MEANINGS), default=sorted(set(flips["flip"])))
suites = f2.multiselect("Suite", sorted(set(flips["suite"])), placeholder="all suites")
categories = f3.multiselect("Category", sorted(set(flips["category"])), placeholder="all categories")
shown = tables.filter_flips(flips, changes, suites, categories)

if len(shown) > layout.SHOWN_FLIPS:
    st.caption(f"Showing the first {layout.SHOWN_FLIPS} of {len(shown)} changed prompts (by suite, category and id); "
               "filter by kind of change, suite or category to see the others.")
shown = data.with_sampled_refusals(sel, data.with_texts(sel, shown.head(layout.SHOWN_FLIPS), a, b), a, b)
st.dataframe(
    shown[["flip", "kind", "category", "text", "label_a", "response_a", "label_b", "response_b", "sampled_a",
           "sampled_b"]],
    hide_index=True, width="stretch",
    column_config={"flip": "change", "text": st.column_config.TextColumn("prompt", width="medium"),
                   "label_a": f"judge on {a}", "response_a": st.column_config.TextColumn(f"{a} said", width="large"),
                   "label_b": f"judge on {b}", "response_b": st.column_config.TextColumn(f"{b} said", width="large"),
                   "sampled_a": st.column_config.TextColumn(f"{a}, sampled", help=layout.SAMPLED_HELP),
                   "sampled_b": st.column_config.TextColumn(f"{b}, sampled", help=layout.SAMPLED_HELP)})

if not shown.empty:
    st.subheader("Read one in full")
    by_id = shown.set_index("prompt_id")
    pick = st.selectbox("Prompt", by_id.index.tolist(), format_func=lambda p: f"{p}: {by_id.loc[p, 'text'][:90]}")
    r = by_id.loc[pick]
    st.text(r["text"])
    left, right = st.columns(2)
    for col, cid, side in ((left, a, "a"), (right, b, "b")):
        col.markdown(f"**{cid}** · judged `{r[f'label_{side}']}`")
        col.text(r[f"response_{side}"])
        if r[f"sampled_{side}"]:
            col.caption(f"Sampled answers: {r[f'sampled_{side}']}")

layout.raw_table(shown, "All columns of the filtered flips (for specialists)")
