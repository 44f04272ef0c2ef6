"""Safety-tradeoff explorer: `streamlit run app.py` (or `python -m explorer app`).

A thin router: the pages live in explorer/pages/, the glue they share in explorer/ui/ (cached store
reads in data.py, the sidebar's choices in selection.py, layout helpers in layout.py), the charts in
explorer/charts.py. The sidebar's judge, human-override, prompt-set and family choices apply to every
page.
"""
import streamlit as st

from explorer.store import StoreError
from explorer.ui import data, layout, selection

st.set_page_config(page_title="Safety trade-off explorer", page_icon=":material/balance:", layout="wide")

PAGES = [
    st.Page("explorer/pages/tradeoff_map.py", title="Trade-off map", icon=":material/scatter_plot:", default=True),
    st.Page("explorer/pages/operating_point.py", title="Operating point", icon=":material/tune:"),
    st.Page("explorer/pages/examples.py", title="Concrete examples", icon=":material/compare_arrows:"),
    st.Page("explorer/pages/live.py", title="Live generation", icon=":material/chat:"),
    st.Page("explorer/pages/judge_review.py", title="Judges", icon=":material/gavel:"),
    st.Page("explorer/pages/decision_record.py", title="Decision record", icon=":material/assignment:"),
]
page = st.navigation(PAGES)

try:
    with st.sidebar:
        judges = list(data.judge_versions())
        if judges:
            st.selectbox("Judge", judges, index=judges.index(selection.default_judge(judges)), key="judge",
                         help=layout.EXPLAIN["judge"])
            st.toggle("Human labels override the judge", key="use_human",
                      help="Where a reviewer relabelled a response (Judges page), count the reviewer's label instead "
                           "of the judge's.")
        if len(sets := data.prompt_sets()) > 1:
            st.selectbox("Prompt set", sets, key="prompt_set", format_func=layout.prompt_set_label,
                         help="The shipped test split, or a suite you imported with `eval --suite-file` (kept "
                              "apart: importing never changes the shipped figures).")
        if len(fams := data.families(selection.current())) > 1:
            st.selectbox("Checkpoints", fams, key="family",
                         help="The main λ grid, or one of the loss's other levers: a sharp hinge penalty instead of "
                              "DPO's gentle one, or every violation weighing the same (no severity weights). A variant "
                              "is shown beside the main grid's checkpoints at the same λs.")
        st.caption(layout.evaluation_caption())
    page.run()
except StoreError as e:  # e.g. an evaluation holding the store for longer than the retry window
    st.error(f"The results store cannot be read right now: {e}")
