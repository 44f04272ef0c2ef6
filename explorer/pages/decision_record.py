"""Decision record: freeze an operating point with its evidence and rationale; list past records."""
import pandas as pd
import streamlit as st

from explorer import decisions
from explorer.config import ConfigError
from explorer.ui import layout, reviews, selection

st.title("Decision record")
st.write("Write down which checkpoint we would ship and why. Saving freezes its λs, its rates with intervals, the "
         "per-category table and a sample of concrete flips against the baseline. Records are never edited or "
         "deleted, and each carries a content hash that is checked every time it is read.")
table = layout.require(selection.checkpoint_table())
cid, base_id = layout.checkpoint_pair(table, ("Operating point", "Baseline to compare against"),
                                      (selection.operating_point(table), selection.baseline(table)))
row = table.set_index("checkpoint_id").loc[cid]
for col, key in zip(st.columns(3), layout.RATES):
    col.metric(layout.RATES[key], layout.pct(row[f"{key}_rate"]), help=layout.EXPLAIN[key])
    col.caption(layout.interval(row, key))

rationale = st.text_area("Rationale: where are we trading helpfulness for safety, and why?", height=140,
                         key="rationale", placeholder="e.g. We accept 3 points more over-refusal on medical "
                                                      "questions to halve weapon-related leaks, because …")
author = st.text_input("Author", key="author")
if st.button("Save decision record", type="primary"):
    try:
        saved = reviews.save_decision(selection.current(), table, cid, base_id, rationale, author)
    except ConfigError as e:
        st.error(str(e))
    else:
        st.session_state["decision_view"] = saved.id
        st.success(f"Saved decision #{saved.id} (content hash {saved.content_hash[:12]}…).")

st.subheader("Past decisions")
past = reviews.decision_records()
if not past:
    st.info("No decision recorded yet.")
    st.stop()
st.dataframe(pd.DataFrame([{
    "#": d.id, "created (UTC)": d.record["created_at"][:19], "author": d.record["author"],
    "checkpoint": d.record["checkpoint_id"], "λ_safe": d.record["lambda_safe"], "λ_helpful": d.record["lambda_helpful"],
    "judge": d.record["judge"],
    "violation": layout.pct(d.record["metrics"]["violation"]["rate"]),
    "over-refusal": layout.pct(d.record["metrics"]["over_refusal"]["rate"]),
    "integrity": "TAMPERED" if d.tampered else "verified"} for d in past]), hide_index=True, width="stretch")

by_id = {d.id: d for d in past}
default = st.session_state.get("decision_view")
view = st.selectbox("View record", list(by_id), index=list(by_id).index(default) if default in by_id else 0,
                    format_func=lambda i: f"#{i}: {by_id[i].record['checkpoint_id']} by {by_id[i].record['author']}")
d = by_id[view]
if d.tampered:
    st.error(f"Record #{d.id} does not match its content hash: it was changed after it was saved. Do not rely on it.")
else:
    st.success(f"Record #{d.id} matches its content hash `{d.content_hash[:16]}…`: it is exactly as saved.")
md = decisions.to_markdown(d)
st.download_button("Download as Markdown", md, file_name=f"decision-{d.id}-{d.record['checkpoint_id']}.md",
                   mime="text/markdown")
st.caption("Rationale")
st.text(d.record["rationale"])
st.caption(f"Rates of {d.record['checkpoint_id']} and of the baseline {d.record['baseline_id']}")
rates = pd.DataFrame({"this checkpoint": d.record["metrics"], "baseline": d.record["baseline_metrics"]})
rates = rates.loc[[k for k in decisions.HEADLINE if k in rates.index]].rename(index=lambda k: k.replace("_", " ") + " rate")
st.dataframe(rates.map(lambda m: f"{layout.pct(m['rate'])} [{layout.pct(m['lo'])}–{layout.pct(m['hi'])}] "
                                 f"({m['k']}/{m['n']})"), width="stretch")
with st.expander("Per-category table and sample flips (as frozen)"):
    st.dataframe(pd.DataFrame(d.record["categories"]), hide_index=True, width="stretch")
    st.dataframe(pd.DataFrame(d.record["flips"]), hide_index=True, width="stretch")
with st.expander("The Markdown document"):
    st.code(md, language="markdown", wrap_lines=True)
