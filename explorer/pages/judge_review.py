"""Judges: how often each judge agrees with people, where judges disagree, and human relabelling."""
import streamlit as st

from explorer import charts
from explorer.config import ConfigError
from explorer.judges import HELDOUT_DATASET, LABELS
from explorer.ui import data, layout, reviews, selection, tables

DATASETS = {HELDOUT_DATASET: "our held-out hand labels (three labels)",
            "heldout_violation": "our held-out labels of harmful prompts (violation or not)",
            "heldout_over_refusal": "our held-out labels of harmless prompts (over-refusal or not)",
            "jbb_classifier_comparison": "JailbreakBench's human votes (violation or not)"}
# what a score against a dataset does and does not say, where that is not obvious
DATASET_NOTES = {"jbb_classifier_comparison": (
    "JailbreakBench's people voted on whether a response is *jailbroken*: whether it gives the harmful content. "
    "Our judges read whether it *refuses or complies*, which is what a violation is in this dashboard. A response "
    "that complies in form but gives nothing harmful (a story, a harmless plan, a redirected answer) is a "
    "violation here and not there: most of the 'human: no_violation, judge: violation' cell is that, not a "
    "misread refusal. The responses are from other, larger models.")}

st.title("Judges")
st.write("Every rate in this dashboard comes from a judge reading the responses. A judge that mislabels refusals "
         "moves every number, so check it here: agreement with people, where judges disagree, and fix labels by hand.")

st.subheader("Agreement with human labels")
sel = selection.current()
jm = data.judge_metrics()
if jm.empty:
    st.info("No judge has been scored against human labels yet: run `python -m explorer judges`.")
else:
    st.caption("Agreement: share of responses where the judge gives the human's label. Cohen's κ corrects for "
               "agreement by chance (1 = perfect, 0 = no better than chance).")
    for dataset, g in jm.groupby("dataset"):
        st.markdown(f"**Against {DATASETS.get(dataset, dataset)}**")
        for col, r in zip(st.columns(max(3, len(g))), g.itertuples()):
            col.metric(f"{r.judge} judge", f"{r.agreement:.0%} agree", help=f"version {r.judge_version}")
            col.caption(f"κ = {r.kappa:.2f} · {r.n_labels} labelled responses")
    left, right = st.columns([1, 2])
    judge = sel.judge
    judges = sorted(jm["judge"].unique())
    name = left.selectbox("Confusion matrix of judge", judges, index=judges.index(judge) if judge in judges else 0)
    datasets = jm.loc[jm["judge"] == name, "dataset"].tolist()
    dataset = left.selectbox("Against", datasets, format_func=lambda d: DATASETS.get(d, d))
    if dataset in DATASET_NOTES:
        left.info(DATASET_NOTES[dataset])
    row = jm[(jm["judge"] == name) & (jm["dataset"] == dataset)].iloc[0]
    left.caption("Rows: what the human said; columns: what the judge said. The diagonal is agreement; off the "
                 "diagonal are the judge's mistakes.")
    layout.chart(charts.confusion, charts.confusion_frame(row["confusion"]), where=right)
    left.caption("Per label: precision = of the responses the judge gave this label, the share people gave it "
                 "too; recall = of the responses people gave this label, the share the judge found.")
    left.dataframe(tables.per_class_table(row["confusion"]), width="stretch")
    layout.raw_table(jm)

st.subheader("Where the judges disagree")
table = layout.require(selection.checkpoint_table())
if len(data.judge_versions()) < 2:
    st.info("Only one judge has labelled the responses, so there is nothing to compare.")
else:
    dis = data.judge_disagreements(sel)
    st.caption(f"{len(dis)} responses get different labels from different judges. These are the ones worth a "
               "human look.")
    st.dataframe(dis, hide_index=True, width="stretch",
                 column_order=["checkpoint_id", "prompt_id", *sorted(data.judge_versions()), "human_label", "kind",
                               "category", "text", "response"],
                 column_config={"response": st.column_config.TextColumn(width="large"),
                                "text": st.column_config.TextColumn("prompt", width="medium")})

st.subheader("Relabel a response")
st.write("If the judge got a response wrong, record the right label. Labels are kept with your name and the time; "
         "switch on **Human labels override the judge** in the sidebar to count them in every rate.")
ids = table["checkpoint_id"].tolist()
cid = st.selectbox("Checkpoint", ids, index=ids.index(selection.operating_point(table)),
                   format_func=layout.checkpoint_label(table))
judged = data.judged(sel, cid)
dis_ids = set()
if len(data.judge_versions()) > 1:
    dis = data.judge_disagreements(sel)
    dis_ids = set(dis.loc[dis["checkpoint_id"] == cid, "prompt_id"])
if dis_ids and st.toggle("Only responses where the judges disagree", value=True):
    judged = judged[judged["prompt_id"].isin(dis_ids)]
by_id = judged.set_index("prompt_id")
pick = st.selectbox("Response", by_id.index.tolist(),
                    format_func=lambda p: f"{p} [{by_id.loc[p, 'judge_label']}]: {by_id.loc[p, 'text'][:90]}")
r = by_id.loc[pick]
left, right = st.columns(2)
left.caption(f"Prompt ({r['kind']}, {r['category']})")
left.text(r["text"])
right.caption("Response")
right.text(r["response"])
human = r["human_label"] if isinstance(r["human_label"], str) else "none yet"
st.write(f"The {sel.judge} judge says **{r['judge_label']}**; latest human label: **{human}**.")
with st.form("relabel", clear_on_submit=False):
    label = st.radio("Correct label", LABELS, index=LABELS.index(r["judge_label"]), horizontal=True,
                     format_func=lambda x: x.replace("_", " "))
    reviewer = st.text_input("Your name (recorded with the label)", key="reviewer")
    note = st.text_input("Note (optional)")
    if st.form_submit_button("Save label"):
        try:
            reviews.add_human_label(cid, pick, label, reviewer, note)
        except ConfigError as e:
            st.error(str(e))
        else:
            st.success(f"Saved: {cid} / {pick} is {label.replace('_', ' ')} (by {reviewer.strip()}).")

labels = data.human_labels()
if not labels.empty:
    with st.expander(f"All {len(labels)} human labels, newest first"):
        st.dataframe(labels, hide_index=True, width="stretch")
