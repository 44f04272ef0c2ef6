"""Dashboard at scale (`--only ui`): a synthetic store of 1M judged generations (25 checkpoints × 40,000
prompts, bench/synthetic_store.py). The queries a page runs the first time after a commit, what a slider
change costs in data access once cached, and whole AppTest reruns after moving a slider."""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import ROOT, timed

TARGETS = {"ui_query_ms_max": "< 50", "ui_rerun_ms_p95": "< 150", "ui_cold_query_ms_max": "< 100"}
UI_CHECKPOINTS, UI_PROMPTS = 25, 40_000  # 1,000,000 judged generations
UI_PAIR = ("s0-h0", "s4-h4")  # the checkpoint pair of the flips query


def measure() -> dict:
    from bench.synthetic_store import build

    res = {"ui_rows": UI_CHECKPOINTS * UI_PROMPTS}
    with tempfile.TemporaryDirectory() as d:
        db, reviews, judge = build(Path(d), n_checkpoints=UI_CHECKPOINTS, n_prompts=UI_PROMPTS)
        res.update(cold_queries(db, reviews, judge))
        res.update(slider_queries(db, reviews, judge))
        reruns = sorted(app_reruns(db, reviews))
    res["ui_rerun_ms_median"] = statistics.median(reruns)
    res["ui_rerun_ms_p95"] = reruns[int(0.95 * (len(reruns) - 1))]
    return res


def _median_ms(queries: dict, repeat: int) -> dict:
    return {name: statistics.median([timed(fn) for _ in range(repeat)]) * 1000 for name, fn in queries.items()}


def cold_queries(db: Path, reviews: Path, judge: str) -> dict:
    """Each query the pages run, the first time after a commit (direct calls of explorer.queries)."""
    from explorer import queries
    from explorer.ui import layout

    a, b = UI_PAIR
    cold = {
        "checkpoint_table": lambda: queries.checkpoint_table(judge, db, reviews=reviews),
        "outcomes": lambda: queries.outcomes(judge, db, reviews=reviews),
        # the examples page: every change without texts, then the texts of the rows it shows
        "flips": lambda: queries.responses(a, b, judge, db, reviews=reviews, prompt_ids=queries.flips(
            a, b, judge, db, reviews=reviews, with_text=False)["prompt_id"].head(layout.SHOWN_FLIPS).tolist()),
        "judge_metrics": lambda: queries.judge_metrics(db, reviews),
    }
    ms = _median_ms(cold, 5)
    return {"ui_cold_query_ms": ms, "ui_cold_query_ms_max": max(ms.values())}


def slider_queries(db: Path, reviews: Path, judge: str) -> dict:
    """What a slider change costs in data access: the store stamp plus the cached query (the dashboard
    keys its cache on the stamp, so an unchanged store reruns no SQL)."""
    from explorer import queries, store
    from explorer.ui import data, layout
    from explorer.ui.data import Selection

    a, b = UI_PAIR
    sel = Selection(judge, False, queries.DEFAULT_SPLIT)
    slider = {
        "checkpoint_table": lambda: data._checkpoint_table(store.stamp(db, reviews), sel, db, reviews),
        "outcomes": lambda: data._outcomes(store.stamp(db, reviews), sel, db, reviews),
        "flips": lambda: data._texts(stamp := store.stamp(db, reviews), a, b, sel, tuple(
            data._flips(stamp, a, b, sel, db, reviews, False)["prompt_id"].head(layout.SHOWN_FLIPS)), db, reviews),
        "judge_metrics": lambda: data._judge_metrics(store.stamp(db, reviews), db, reviews),
    }
    for fn in slider.values():
        fn()  # fill the cache: the first call after a commit is the cold one above
    ms = _median_ms(slider, 20)
    return {"ui_query_ms": ms, "ui_query_ms_max": max(ms.values())}


def _rerun_ms(widget, value) -> float:
    t = time.perf_counter()
    widget.set_value(value).run()
    return (time.perf_counter() - t) * 1000


def app_reruns(db: Path, reviews: Path) -> list[float]:
    """Whole AppTest reruns (ms) of the trade-off map and the operating-point page after moving a slider
    (script, queries, charts; AppTest adds its own overhead on top of a real server's)."""
    from streamlit.testing.v1 import AppTest

    env = {"EXPLORER_DB": str(db), "EXPLORER_REVIEWS_DB": str(reviews)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
        reruns = [_rerun_ms(at.slider[0], 0.10 + 0.02 * k) for k in range(20)]  # ε 0.10 … 0.48
        at.switch_page("explorer/pages/operating_point.py").run()
        safe = at.slider(key="op_lambda_safe")
        positions = np.linspace(safe.min, safe.max, 9)  # trained values and the midpoints between them
        reruns += [_rerun_ms(safe, float(positions[k % len(positions)])) for k in range(20)]  # back and forth
        assert not at.exception, at.exception
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return reruns
