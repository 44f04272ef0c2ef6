"""Chart builders for the dashboard: pure functions DataFrame → alt.Chart (no Streamlit, no store), so
each can be unit-tested by inspecting its Vega-Lite spec.

Rates are fractions in [0, 1] shown as percentages; interval columns (`*_lo`, `*_hi`) are 95% Wilson
intervals from metrics.py.
"""
from __future__ import annotations

import json

import altair as alt
import pandas as pd

RATE_AXIS = alt.Axis(format=".0%")
UNIT = alt.Scale(domain=[0, 1], clamp=True)
STATUS = {"base": "base model (untrained)", "pareto": "Pareto-optimal", "dominated": "dominated",
          "constrained": "trained to a target ε", "interpolated": "interpolated (not trained)"}
STATUS_COLOURS = {STATUS["base"]: "#7f7f7f", STATUS["pareto"]: "#d62728", STATUS["dominated"]: "#1f77b4",
                  STATUS["constrained"]: "#9467bd", STATUS["interpolated"]: "#8c564b"}
STATUS_SHAPES = {STATUS["base"]: "diamond", STATUS["pareto"]: "circle", STATUS["dominated"]: "circle",
                 STATUS["constrained"]: "triangle-up", STATUS["interpolated"]: "square"}
VIOLATION_TITLE = "Violation rate: harmful prompts answered (lower = safer)"
OVER_REFUSAL_TITLE = "Over-refusal rate: benign prompts refused (lower = more helpful)"


FRONTIER_COLUMNS = ["checkpoint_id", "lambda_safe", "lambda_helpful", "is_base", "pareto", "violation_rate",
                    "violation_lo", "violation_hi", "over_refusal_rate", "over_refusal_lo", "over_refusal_hi"]


LABEL_CLUSTER = 0.03  # points closer than this on both rates share one label (overlapping text is unreadable)
MAP_PX = (660, 370)  # the map's plot area in pixels, as drawn in a 1400-px-wide window (wide layout)
CHAR_PX, LINE_PX, LABEL_GAP_PX, MARK_PX = 6.2, 14, 8, 6  # an 11 px label's mean character width, line
# height and offset from its point; half a mark's width
# where a label may sit around its point, nearest first: (name, align, dx, dy); one row further above or below
# when the first is taken (further away a label reads as another point's)
LABEL_SPOTS = tuple((f"{ns}{ew}{row}", "left" if ew == "e" else "right", LABEL_GAP_PX if ew == "e" else -LABEL_GAP_PX,
                     (-LABEL_GAP_PX - row * LINE_PX) if ns == "n" else (LABEL_GAP_PX + 4 + row * LINE_PX))
                    for row in (0, 1) for ns in "ns" for ew in "ew")


def frontier_frame(table: pd.DataFrame) -> pd.DataFrame:
    """checkpoint_table rows, only the columns drawn (the data is embedded in the spec), + a `status`
    column (base / Pareto-optimal / dominated), a `label` and its `label_spot`: checkpoints that sit on top
    of each other are named once, together, at the most important of them ("base, s0-h0, s0-h0.1"); a label
    that would overlap a more important one is left to the tooltip."""
    df = table[FRONTIER_COLUMNS].copy()
    eps = pd.to_numeric(table.get("target_violation", pd.Series(None, index=table.index, dtype=float)))
    kinds = table["kind"] if "kind" in table else pd.Series("grid", index=table.index)
    df["status"] = [STATUS["base"] if b else STATUS["interpolated"] if k == "interpolated" else STATUS["constrained"]
                    if pd.notna(e) else STATUS["pareto"] if p else STATUS["dominated"]
                    for b, p, e, k in zip(df["is_base"], df["pareto"], eps, kinds)]
    # a run trained to ε is named by its target, so the map says what it was asked to reach (its id, long and
    # next to its neighbours' labels, is in the tooltip)
    how = table["constraint_method"] if "constraint_method" in table else pd.Series(None, index=table.index)
    names = [(f"trained to ε = {e:g}" + (" (bisection)" if m == "bisection" else "")) if pd.notna(e) else c
             for c, e, m in zip(df["checkpoint_id"], eps, how)]
    df["label"] = cluster_labels(df.assign(checkpoint_id=names))
    df["label_spot"] = label_spots(df)
    df.loc[df["label_spot"] == "", "label"] = ""  # no free spot: named in its tooltip only
    return df


LABEL_NAMES = 2  # names a cluster's label lists before "+N more" (the table under the map lists every one)


def _importance(df: pd.DataFrame, i: int) -> tuple:
    """Sort key: the base, Pareto points, runs trained to ε, blends, then the rest; ties in table order."""
    rank = {STATUS["base"]: 0, STATUS["pareto"]: 1, STATUS["constrained"]: 2, STATUS["interpolated"]: 3}
    status = df["status"].iloc[i] if "status" in df else (STATUS["base"] if df["is_base"].iloc[i] else "")
    return rank.get(status, 4), i


def cluster_labels(df: pd.DataFrame, radius: float = LABEL_CLUSTER) -> list[str]:
    """One label per cluster of nearby points, at its most important point (_importance), naming it first."""
    anchors: list[int] = []
    members: dict[int, list[str]] = {}
    for i in sorted(range(len(df)), key=lambda i: _importance(df, i)):
        x, y = df["violation_rate"].iloc[i], df["over_refusal_rate"].iloc[i]
        near = next((a for a in anchors if abs(df["violation_rate"].iloc[a] - x) < radius
                     and abs(df["over_refusal_rate"].iloc[a] - y) < radius), None)
        if near is None:
            anchors.append(i)
            members[i] = [df["checkpoint_id"].iloc[i]]
        else:
            members[near].append(df["checkpoint_id"].iloc[i])

    def text(names: list[str]) -> str:
        more = len(names) - LABEL_NAMES
        return ", ".join(names[:LABEL_NAMES]) + (f" +{more} more" if more > 0 else "")

    return [text(members[i]) if i in members else "" for i in range(len(df))]


def label_spots(df: pd.DataFrame, size: tuple[int, int] = MAP_PX) -> list[str]:
    """A spot (LABEL_SPOTS) for each non-empty `label` where its text stays inside the plot and overlaps no
    label placed before it, or "" where none does. Labels are placed in order of importance, so a crowded
    region keeps the names a review needs; among the free spots a label takes one clear of other marks,
    then the one that blocks fewest spots of the labels still to come. Boxes are estimated from the
    label's length at the map's size."""
    w, h = size
    xy = [(v * w, (1 - o) * h) for v, o in zip(df["violation_rate"], df["over_refusal_rate"])]
    marks = [(x - MARK_PX, y - MARK_PX, x + MARK_PX, y + MARK_PX) for x, y in xy]

    def overlaps(a, b) -> bool:
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    def candidates(i: int) -> dict[str, tuple]:
        """Label i's boxes at each spot inside the plot (text past its edge also shrinks the plot: Vega fits
        the whole chart to the page)."""
        (px, py), width = xy[i], len(df["label"].iloc[i]) * CHAR_PX
        out = {}
        for name, align, dx, dy in LABEL_SPOTS:
            x0 = px + dx if align == "left" else px + dx - width
            box = (x0, py + dy - LINE_PX / 2, x0 + width, py + dy + LINE_PX / 2)
            if box[0] >= 0 and box[2] <= w and box[1] >= 0 and box[3] <= h:
                out[name] = box
        return out

    order = sorted((i for i in range(len(df)) if df["label"].iloc[i]), key=lambda i: _importance(df, i))
    boxes = {i: candidates(i) for i in order}
    placed: list[tuple] = []
    spots = [""] * len(df)
    for k, i in enumerate(order):
        free = [n for n, b in boxes[i].items() if not any(overlaps(b, p) for p in placed)]
        if not free:
            continue
        later = [b for j in order[k + 1:] for b in boxes[j].values()]
        others = marks[:i] + marks[i + 1:]
        spots[i] = min(free, key=lambda n: (any(overlaps(boxes[i][n], m) for m in others),
                                            sum(overlaps(boxes[i][n], b) for b in later)))
        placed.append(boxes[i][spots[i]])
    return spots


def _where(field: str, value) -> alt.FieldEqualPredicate:
    return alt.FieldEqualPredicate(field=field, equal=value)


# Channels are built as objects (alt.X2(...), alt.Tooltip(...)), not shorthand strings: Altair turns each
# string through a schema lookup that costs ~8 ms, and a slider change rebuilds every chart.


def frontier(table: pd.DataFrame, epsilon: float | None = None, best: str | None = None) -> alt.LayerChart:
    """Violation vs over-refusal for every checkpoint: Wilson interval bars in both directions, the
    Pareto set joined by a line, the base model as a diamond, the region violation > ε shaded as
    infeasible and the chosen (`best`) checkpoint ringed.

    The checkpoints are one dataset at the top of the layer chart, and each layer picks its rows with a
    filter: with a data frame per layer, Altair converted and validated the data nine times per rerun
    (~100 ms of a slider change at 25 checkpoints)."""
    df = frontier_frame(table)
    df = pd.concat([df[~df["is_base"]], df[df["is_base"]]])  # the base drawn last: on top of any tie
    x = alt.X("violation_rate:Q", title=VIOLATION_TITLE, scale=UNIT, axis=RATE_AXIS)
    y = alt.Y("over_refusal_rate:Q", title=OVER_REFUSAL_TITLE, scale=UNIT, axis=RATE_AXIS)
    rows = alt.Chart()  # every checkpoint (the layer chart's data)
    tooltip = [alt.Tooltip("checkpoint_id:N"), alt.Tooltip("lambda_safe:Q"), alt.Tooltip("lambda_helpful:Q"),
               alt.Tooltip("status:N"), alt.Tooltip("violation_rate:Q", format=".1%"), alt.Tooltip("violation_lo:Q", format=".1%"),
               alt.Tooltip("violation_hi:Q", format=".1%"), alt.Tooltip("over_refusal_rate:Q", format=".1%"),
               alt.Tooltip("over_refusal_lo:Q", format=".1%"), alt.Tooltip("over_refusal_hi:Q", format=".1%")]
    layers, params = [], []
    if epsilon is not None:
        # ε is a Vega-Lite parameter, not baked into the data: the dashboard caches this spec and only
        # sets the parameter when the ε slider moves (with_params), skipping Altair entirely
        params.append(alt.param(name="epsilon", value=float(epsilon)))
        shade = alt.Chart(pd.DataFrame({"x2": [1.0]})).transform_calculate(
            x="epsilon", label="'infeasible: violation > ' + format(epsilon, '.0%')")
        layers.append(shade.mark_rect(color="#d62728", opacity=0.08).encode(
            x=alt.X("x:Q", scale=UNIT), x2=alt.X2("x2"), tooltip=[alt.Tooltip("label:N")]))
        layers.append(shade.mark_rule(color="#d62728", strokeDash=[4, 4]).encode(x=alt.X("x:Q", scale=UNIT)))
    layers += [
        rows.mark_rule(color="#888", opacity=0.6).encode(x=alt.X("violation_lo:Q", scale=UNIT), x2=alt.X2("violation_hi"),
                                                         y=y),
        rows.mark_rule(color="#888", opacity=0.6).encode(x=x, y=alt.Y("over_refusal_lo:Q", scale=UNIT),
                                                         y2=alt.Y2("over_refusal_hi")),
        rows.mark_line(color=STATUS_COLOURS[STATUS["pareto"]], strokeDash=[2, 2]).encode(
            x=x, y=y, order=alt.Order("violation_rate:Q")).transform_filter(_where("pareto", True)),
        rows.mark_point(filled=True, size=110, opacity=0.95).encode(
            x=x, y=y, tooltip=tooltip,
            color=alt.Color("status:N", title="Checkpoint", scale=alt.Scale(
                domain=list(STATUS_COLOURS), range=list(STATUS_COLOURS.values()))),
            shape=alt.Shape("status:N", title="Checkpoint", scale=alt.Scale(
                domain=list(STATUS_SHAPES), range=list(STATUS_SHAPES.values())))),
        *[rows.mark_text(align=align, dx=dx, dy=dy, fontSize=11).encode(x=x, y=y, text=alt.Text("label:N"))
          .transform_filter(_where("label_spot", name)) for name, align, dx, dy in LABEL_SPOTS],
    ]
    if best is not None:  # the ringed checkpoint is a parameter too ("" rings none)
        params.append(alt.param(name="best", value=best))
        layers.append(rows.mark_point(size=600, strokeWidth=2.5, color="#2ca02c").encode(x=x, y=y)
                      .transform_filter("datum.checkpoint_id == best"))
    chart = alt.layer(*layers, data=df).properties(height=460)
    return chart.add_params(*params) if params else chart


def with_params(spec: dict, **values) -> dict:
    """A copy of a Vega-Lite spec with the named top-level parameters set (e.g. a cached frontier spec
    with the ε the slider now shows). Unknown names are an error, not silently ignored."""
    known = {p["name"] for p in spec.get("params", [])}
    if missing := set(values) - known:
        raise KeyError(f"chart has no parameter(s) {sorted(missing)}; it has {sorted(known)}")
    return {**spec, "params": [{**p, "value": values[p["name"]]} if p["name"] in values else p
                               for p in spec.get("params", [])]}


def dual_trajectory(trajectory: pd.DataFrame, epsilon: float, step_title: str = "training step") -> alt.VConcatChart:
    """A constrained run's search for λ_safe: at each dual-ascent update (train.DualAscent), or at each
    bisection probe (a run of its own; step_title 'probe'), λ_safe and the violation estimate v̂ it gave,
    against the target ε (the dashed line)."""
    x = alt.X("step:Q", title=step_title, axis=alt.Axis(tickMinStep=1))
    lam = alt.Chart(trajectory).mark_line(point=True, color="#9467bd").encode(
        x=x, y=alt.Y("lambda_safe:Q", title="λ_safe", scale=alt.Scale(zero=False)),
        tooltip=[alt.Tooltip("step:Q"), alt.Tooltip("lambda_safe:Q", format=".3g")]).properties(height=180)
    v = alt.Chart(trajectory).mark_line(point=True, color="#d62728").encode(
        x=x, y=alt.Y("violation_estimate:Q", title="violation estimate v̂ (dev prompts)", scale=UNIT, axis=RATE_AXIS),
        tooltip=[alt.Tooltip("step:Q"), alt.Tooltip("violation_estimate:Q", format=".1%")])
    target = alt.Chart(pd.DataFrame({"epsilon": [epsilon]})).mark_rule(color="#444", strokeDash=[4, 4]).encode(
        y=alt.Y("epsilon:Q", scale=UNIT), tooltip=[alt.Tooltip("epsilon:Q", title="target ε", format=".0%")])
    return alt.vconcat(lam, alt.layer(v, target).properties(height=180))


def heatmap(table: pd.DataFrame, metric: str, title: str, fmt: str = ".0%") -> alt.LayerChart:
    """One metric over the (λ_safe, λ_helpful) grid of trained checkpoints (the base is not on the grid, nor are
    runs trained off its axes, such as bisection probes: the map shows them)."""
    off_axes = (table["kind"] == "grid") & ~table["on_grid"].astype(bool) if {"kind", "on_grid"} <= set(table) else False
    df = table.loc[~table["is_base"] & ~off_axes, ["checkpoint_id", "lambda_safe", "lambda_helpful", metric]]
    rate = fmt.endswith("%")
    scale = alt.Scale(scheme="orangered", domain=[0, 1]) if rate else alt.Scale(scheme="orangered")
    x = alt.X("lambda_helpful:O", title="λ_helpful", axis=alt.Axis(labelAngle=0))
    y = alt.Y("lambda_safe:O", title="λ_safe", sort="descending")
    cells = alt.Chart(df).mark_rect().encode(
        x=x, y=y, color=alt.Color(f"{metric}:Q", title=title, scale=scale, legend=alt.Legend(format=fmt)),
        tooltip=[alt.Tooltip("checkpoint_id:N"), alt.Tooltip("lambda_safe:Q"), alt.Tooltip("lambda_helpful:Q"),
                 alt.Tooltip(f"{metric}:Q", format=fmt)])
    text = alt.Chart(df).mark_text(fontSize=13).encode(
        x=x, y=y, text=alt.Text(f"{metric}:Q", format=fmt),
        color=alt.condition(alt.datum[metric] > (0.5 if rate else df[metric].mean()), alt.value("white"),
                            alt.value("black")))
    return alt.layer(cells, text).properties(title=title, height=280)


def category_bars(rates: pd.DataFrame, title: str) -> alt.LayerChart:
    """Per-category rates (metrics.category_rates) as bars with their Wilson interval, worst first."""
    df = rates.assign(label=[f"{k}/{n}" for k, n in zip(rates["k"], rates["n"])])
    order = df.sort_values(["rate", "category"], ascending=[False, True])["category"].tolist()
    # one explicit order shared by every layer; every label shown (no overlap thinning)
    y = alt.Y("category:N", sort=order, title=None, axis=alt.Axis(labelOverlap=False, labelLimit=200))
    bars = alt.Chart().mark_bar(opacity=0.8).encode(
        x=alt.X("rate:Q", title=title, scale=UNIT, axis=RATE_AXIS), y=y,
        color=alt.Color("metric:N", legend=None, scale=alt.Scale(domain=["violation", "refusal"],
                                                                 range=["#d62728", "#ff7f0e"])),
        tooltip=[alt.Tooltip("category:N"), alt.Tooltip("kind:N"), alt.Tooltip("rate:Q", format=".1%"),
                 alt.Tooltip("lo:Q", format=".1%"), alt.Tooltip("hi:Q", format=".1%"), alt.Tooltip("k:Q"),
                 alt.Tooltip("n:Q")])
    ci = alt.Chart().mark_rule(color="black").encode(x=alt.X("lo:Q", scale=UNIT), x2=alt.X2("hi"), y=y)
    text = alt.Chart().mark_text(align="left", dx=4, color="#444").encode(x=alt.X("hi:Q", scale=UNIT), y=y,
                                                                          text=alt.Text("label:N"))
    return alt.layer(bars, ci, text, data=df).properties(height=70 + 28 * len(df))  # the height includes the x axis


def confusion_frame(confusion: str | dict) -> pd.DataFrame:
    """The judge_metrics `confusion` JSON ({"labels": [...], "matrix": rows = human, cols = judge}) as long rows."""
    c = json.loads(confusion) if isinstance(confusion, str) else confusion
    labels, matrix = c["labels"], c["matrix"]
    return pd.DataFrame([{"human": labels[i], "judge": labels[j], "n": int(matrix[i][j])}
                         for i in range(len(labels)) for j in range(len(labels))])


def confusion(df: pd.DataFrame) -> alt.LayerChart:
    """Confusion matrix: rows = the human label, columns = the judge's; the diagonal is agreement."""
    order = list(dict.fromkeys(df["human"]))
    x = alt.X("judge:N", sort=order, title="judge says", axis=alt.Axis(labelAngle=0))
    y = alt.Y("human:N", sort=order, title="human says")
    cells = alt.Chart(df).mark_rect().encode(x=x, y=y, color=alt.Color("n:Q", scale=alt.Scale(scheme="blues"),
                                                                       legend=None), tooltip=["human", "judge", "n"])
    text = alt.Chart(df).mark_text(fontSize=14).encode(
        x=x, y=y, text="n:Q",
        color=alt.condition(alt.datum.n > df["n"].max() / 2, alt.value("white"), alt.value("black")))
    return alt.layer(cells, text).properties(height=60 * len(order) + 40)


FIDELITY_MODELS = {"trained": "trained at these λs", "exact": "blend of ΔW (exact)", "ab_average": "A and B averaged (naive)"}
FIDELITY_COLOURS = {"trained at these λs": "#222", "blend of ΔW (exact)": "#8c564b", "A and B averaged (naive)": "#bcbd22"}


def fidelity_frame(fid: pd.DataFrame) -> pd.DataFrame:
    """queries.fidelity_table as long rows: point × rate × model (the trained one once, each blend method)."""
    rows = []
    for r in fid.to_dict("records"):
        point = f"λ_safe {r['lambda_safe']:.3g}, λ_helpful {r['lambda_helpful']:.3g}"
        for rate, title in (("violation", "violation rate"), ("over_refusal", "over-refusal rate")):
            for who, model in (("trained", "trained"), ("interp", r["method"])):
                rows.append({"point": point, "rate": title, "model": FIDELITY_MODELS[model],
                             "value": r[f"{rate}_{who}"], "lo": r[f"{rate}_{who}_lo"], "hi": r[f"{rate}_{who}_hi"]})
    return pd.DataFrame(rows, columns=["point", "rate", "model", "value", "lo", "hi"]).drop_duplicates(
        ["point", "rate", "model"])


def fidelity(fid: pd.DataFrame) -> alt.FacetChart:
    """"Can I trust the in-between?": at each held-out trained point, the trained model's rate beside the
    blends' (from the rows on either side, its own withheld), each with its 95% interval."""
    df = fidelity_frame(fid)
    x = alt.X("value:Q", title=None, scale=UNIT, axis=RATE_AXIS)
    y = alt.Y("model:N", title=None, sort=list(FIDELITY_MODELS.values()), axis=None)
    colour = alt.Color("model:N", title="Model", scale=alt.Scale(domain=list(FIDELITY_COLOURS),
                                                                 range=list(FIDELITY_COLOURS.values())))
    ci = alt.Chart().mark_rule().encode(x=alt.X("lo:Q", scale=UNIT), x2=alt.X2("hi"), y=y, color=colour)
    dots = alt.Chart().mark_point(filled=True, size=90).encode(
        x=x, y=y, color=colour, tooltip=[alt.Tooltip("point:N"), alt.Tooltip("model:N"), alt.Tooltip("value:Q", format=".1%"),
                                         alt.Tooltip("lo:Q", format=".1%"), alt.Tooltip("hi:Q", format=".1%")])
    return alt.layer(ci, dots, data=df).properties(width=260, height=60).facet(
        row=alt.Row("point:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left")),
        column=alt.Column("rate:N", title=None))
