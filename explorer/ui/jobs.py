"""Background evaluations started from a page: a button that evaluates the interpolated model at a slider
position in its own process (explorer/background.py), and its progress while it runs. The jobs live in
one registry per server, so a second click or a second reviewer never starts the same evaluation twice."""
from __future__ import annotations

import streamlit as st

from ..interpolate import interpolated_id
from . import data

EVAL_HELP = ("Runs `python -m explorer eval --interpolate` for this position in its own process: the test split, "
             "judged like the trained checkpoints (about ten minutes on a 2-core CPU).")


@st.cache_resource(show_spinner=False)
def registry() -> dict:
    """Background evaluations started from this server (key → background.Job), seen by every session."""
    return {}


def background_eval(lambda_safe: float, lambda_helpful: float, evaluated: bool) -> None:
    """A button that evaluates the interpolated model at this position in the background (the page keeps
    working), and the job's progress while it runs. The point lands on the map when its answers commit."""
    key = interpolated_id(lambda_safe, lambda_helpful)
    job = registry().get(key)
    if job is not None and job.running:
        _job_progress(key)
        return
    if evaluated:
        return
    if job is not None and job.failed:
        st.error(f"The evaluation of {key} failed: {job.progress()} (log: {job.log})")
    if st.button(f"Evaluate {key} in the background", help=EVAL_HELP):
        registry()[key] = _start(key, lambda_safe, lambda_helpful)
        st.rerun()


def _start(key: str, lambda_safe: float, lambda_helpful: float):
    """Start `eval --interpolate` for one position with the store's recipe, into the store on show."""
    from .. import background
    from ..model import CACHE_DIR  # imports torch: only when a job starts

    p = data.paths()
    args = background.interpolated_eval_args(lambda_safe, lambda_helpful, (data.evaluation() or {}).get("recipe"),
                                             p.eval_db, p.checkpoints, CACHE_DIR / "jobs" / key)
    return background.start(key, args, CACHE_DIR / "jobs")


@st.fragment(run_every=2)
def _job_progress(key: str) -> None:
    """Re-drawn every 2 s on its own (the rest of the page is not rerun); reruns the page once the job ends,
    so the committed point shows everywhere."""
    job = registry().get(key)
    if job is None:
        return
    if job.running:
        st.caption(f"Evaluating {key} in the background; the page stays usable, and the point appears on the map "
                   f"as its answers commit. {job.progress()}")
        return
    if not job.failed:
        registry().pop(key, None)
    st.rerun()
