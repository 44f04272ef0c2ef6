"""Chart builders are pure: DataFrame in, Altair chart out. Check the spec they build."""
import json

import altair as alt
import pandas as pd
import pytest

from explorer import charts, metrics


def table() -> pd.DataFrame:
    rows = [("base", 0.0, 0.0, True, 0.8, 0.1), ("s0-h0", 0.0, 0.0, False, 0.7, 0.1),
            ("s0-h1", 0.0, 1.0, False, 0.9, 0.0), ("s1-h0", 1.0, 0.0, False, 0.2, 0.6),
            ("s1-h1", 1.0, 1.0, False, 0.3, 0.7)]
    df = pd.DataFrame(rows, columns=["checkpoint_id", "lambda_safe", "lambda_helpful", "is_base", "violation_rate",
                                     "over_refusal_rate"])
    for m in ("violation", "over_refusal"):
        df[f"{m}_lo"], df[f"{m}_hi"] = df[f"{m}_rate"] - 0.05, df[f"{m}_rate"] + 0.05
    df["general_refusal_rate"] = [0.0, 0.0, 0.0, 0.2, 0.1]
    df["mean_nll"] = [2.0, 2.1, 2.05, 2.4, 2.3]
    df["pareto"] = metrics.pareto_mask(df)
    return df


def layer_data(chart, mark: str) -> list[pd.DataFrame]:
    """The rows each layer with this mark draws: its own data or the parent's, through its field-equal
    filters (the only filters the builders use)."""
    out = []
    for layer in chart.layer:
        if (layer.mark if isinstance(layer.mark, str) else layer.mark.type) != mark:
            continue
        data = chart.data if layer.data is alt.Undefined else layer.data
        for t in ([] if layer.transform is alt.Undefined else layer.transform):
            data = data[data[t.filter.field] == t.filter.equal]
        out.append(data)
    return out


def test_frontier_statuses_and_layers():
    t = table()
    chart = charts.frontier(t, epsilon=0.25, best="s1-h0")
    spec = chart.to_dict()  # validates against the Vega-Lite schema
    assert len(spec["layer"]) == len(chart.layer)
    status = charts.frontier_frame(t).set_index("checkpoint_id")["status"]
    assert status["base"] == charts.STATUS["base"]
    assert status["s1-h1"] == charts.STATUS["dominated"]  # s1-h0 beats it on both rates
    assert {status["s0-h0"], status["s0-h1"], status["s1-h0"]} == {charts.STATUS["pareto"]}
    params = {p["name"]: p["value"] for p in spec["params"]}
    assert params == {"epsilon": 0.25, "best": "s1-h0"}
    [shade] = [layer for layer in spec["layer"] if layer["mark"]["type"] == "rect"]
    assert {"calculate": "epsilon", "as": "x"} in shade["transform"]  # violation > ε is infeasible: x from ε to 1
    assert shade["encoding"]["x2"]["field"] == "x2"
    [line] = layer_data(chart, "line")
    assert set(line["checkpoint_id"]) == set(t.loc[t["pareto"], "checkpoint_id"])
    [ring] = [layer for layer in spec["layer"] if {"filter": "datum.checkpoint_id == best"} in layer.get("transform", [])]
    assert ring["mark"]["size"] == 600
    # interval bars: one horizontal (violation lo→hi) and one vertical (over-refusal lo→hi) rule layer
    rules = [layer.encoding.to_dict() for layer in chart.layer
             if (layer.mark if isinstance(layer.mark, str) else layer.mark.type) == "rule"]
    assert any(r.get("x2", {}).get("field") == "violation_hi" for r in rules)
    assert any(r.get("y2", {}).get("field") == "over_refusal_hi" for r in rules)


def test_with_params_sets_values_on_a_copy():
    spec = charts.frontier(table(), epsilon=0.25, best="s1-h0").to_dict()
    moved = charts.with_params(spec, epsilon=0.4, best="")
    assert {p["name"]: p["value"] for p in moved["params"]} == {"epsilon": 0.4, "best": ""}
    assert {p["name"]: p["value"] for p in spec["params"]} == {"epsilon": 0.25, "best": "s1-h0"}  # untouched
    with pytest.raises(KeyError, match="no parameter"):
        charts.with_params(spec, epsilonn=0.3)


def test_frontier_without_epsilon_has_no_shading():
    chart = charts.frontier(table())
    assert not layer_data(chart, "rect")
    chart.to_dict()


def test_heatmap_covers_the_grid_without_the_base():
    chart = charts.heatmap(table(), "violation_rate", "Violation rate")
    spec = chart.to_dict()
    [cells] = layer_data(chart, "rect")
    assert sorted(cells["checkpoint_id"]) == ["s0-h0", "s0-h1", "s1-h0", "s1-h1"]
    enc = spec["layer"][0]["encoding"]
    assert enc["color"]["field"] == "violation_rate" and enc["x"]["field"] == "lambda_helpful"
    assert enc["y"]["field"] == "lambda_safe"
    charts.heatmap(table(), "mean_nll", "NLL", fmt=".2f").to_dict()


def test_category_bars_carry_intervals_and_counts():
    rates = pd.DataFrame([("harmful", "weapons", "violation", 3, 4, 0.75, 0.3, 0.95),
                          ("harmful", "fraud", "violation", 1, 4, 0.25, 0.05, 0.7)],
                         columns=["kind", "category", "metric", "k", "n", "rate", "lo", "hi"])
    chart = charts.category_bars(rates, "violation rate")
    spec = chart.to_dict()
    [bars] = layer_data(chart, "bar")
    assert bars["label"].tolist() == ["3/4", "1/4"]
    assert spec["layer"][1]["encoding"]["x2"]["field"] == "hi"
    assert spec["layer"][0]["encoding"]["y"]["sort"] == ["weapons", "fraud"]  # worst category first


@pytest.mark.parametrize("as_json", [True, False])
def test_confusion_matrix(as_json):
    c = {"labels": ["full_compliance", "partial_refusal", "full_refusal"], "matrix": [[5, 1, 0], [2, 3, 1], [0, 0, 7]]}
    df = charts.confusion_frame(json.dumps(c) if as_json else c)
    assert len(df) == 9 and df["n"].sum() == 19
    assert df.set_index(["human", "judge"]).loc[("partial_refusal", "full_compliance"), "n"] == 2  # row = human
    spec = charts.confusion(df).to_dict()
    assert spec["layer"][0]["encoding"]["x"]["sort"] == c["labels"]


def test_overlapping_checkpoints_share_one_label():
    import pandas as pd

    from explorer.charts import cluster_labels

    df = pd.DataFrame({"checkpoint_id": ["s0-h0", "base", "s0-h1", "s3-h0"], "is_base": [False, True, False, False],
                       "violation_rate": [0.99, 0.985, 0.97, 0.10], "over_refusal_rate": [0.0, 0.0, 0.01, 0.4]})
    assert cluster_labels(df) == ["", "base, s0-h0 +1 more", "", "s3-h0"]


def test_map_labels_never_overlap_and_a_crowd_keeps_the_pareto_names():
    # eight checkpoints a few points apart (too far to share a label, too close for eight labels side by side)
    ids = [f"dominated-{i}" for i in range(6)] + ["pareto-a", "pareto-b"]
    t = pd.DataFrame({"checkpoint_id": ids, "lambda_safe": 1.0, "lambda_helpful": 0.1, "is_base": False,
                      "violation_rate": [0.20 + 0.035 * i for i in range(6)] + [0.22, 0.30],
                      "over_refusal_rate": [0.30 - 0.035 * i for i in range(6)] + [0.25, 0.18],
                      "pareto": [False] * 6 + [True, True]})
    for m in ("violation", "over_refusal"):
        t[f"{m}_lo"], t[f"{m}_hi"] = t[f"{m}_rate"], t[f"{m}_rate"]
    df = charts.frontier_frame(t)
    shown = df[df["label"] != ""]
    assert {"pareto-a", "pareto-b"} <= {label.split(",")[0] for label in shown["label"]}  # named first
    assert len(shown) < len(df)  # some dominated names are left to the tooltip
    assert set(df["label_spot"]) <= {"", *(s[0] for s in charts.LABEL_SPOTS)}
    w, h = charts.MAP_PX
    boxes = []
    for r in shown.itertuples():
        _, align, dx, dy = next(s for s in charts.LABEL_SPOTS if s[0] == r.label_spot)
        width = len(r.label) * charts.CHAR_PX
        x0 = r.violation_rate * w + dx - (width if align == "right" else 0)
        y0 = (1 - r.over_refusal_rate) * h + dy - charts.LINE_PX / 2
        boxes.append((x0, y0, x0 + width, y0 + charts.LINE_PX))
        assert 0 <= x0 and x0 + width <= w and 0 <= y0 and y0 + charts.LINE_PX <= h  # inside the plot
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    spec = charts.frontier(t).to_dict()
    assert sum(1 for layer in spec["layer"] if (layer["mark"]["type"] if isinstance(layer["mark"], dict)
                                               else layer["mark"]) == "text") == len(charts.LABEL_SPOTS)


def test_a_long_cluster_label_names_the_first_few_then_counts():
    from explorer.charts import cluster_labels

    df = pd.DataFrame({"checkpoint_id": [f"s{i}-h0" for i in range(6)], "is_base": False,
                       "violation_rate": 0.95, "over_refusal_rate": 0.01})
    assert cluster_labels(df)[0] == "s0-h0, s1-h0 +4 more"


def test_a_run_trained_to_epsilon_has_its_own_mark_and_says_its_target():
    t = table()
    t["target_violation"] = [0.2 if c == "s1-h1" else None for c in t["checkpoint_id"]]
    df = charts.frontier_frame(t).set_index("checkpoint_id")
    assert df.loc["s1-h1", "status"] == charts.STATUS["constrained"]
    assert "trained to ε = 0.2" in " ".join(df["label"]) and "s1-h1" not in " ".join(df["label"])
    assert df.loc["s0-h0", "status"] == charts.STATUS["pareto"]
    charts.frontier(t, epsilon=0.25, best="s1-h1").to_dict()  # still a valid spec
    t["constraint_method"] = ["bisection" if c == "s1-h1" else None for c in t["checkpoint_id"]]
    assert "trained to ε = 0.2 (bisection)" in " ".join(charts.frontier_frame(t)["label"])


def test_the_heatmap_leaves_out_runs_trained_off_the_grid_axes():
    t = table().assign(kind="grid", on_grid=True)
    probe = t.iloc[[1]].assign(checkpoint_id="s0.5-h1", lambda_safe=0.5, on_grid=False)
    spec = charts.heatmap(pd.concat([t, probe], ignore_index=True), "violation_rate", "violation").to_dict()
    rows = next(iter(spec["datasets"].values()))
    assert "s0.5-h1" not in {r["checkpoint_id"] for r in rows} and len(rows) == (~t["is_base"]).sum()


def test_dual_trajectory_draws_lambda_and_the_estimate_against_epsilon():
    traj = pd.DataFrame({"step": [9, 19, 29], "violation_estimate": [0.6, 0.35, 0.22], "lambda_safe": [1.3, 1.5, 1.6]})
    spec = charts.dual_trajectory(traj, 0.25).to_dict()
    lam, estimate = spec["vconcat"]
    assert lam["encoding"]["y"]["field"] == "lambda_safe"
    assert [layer["encoding"]["y"]["field"] for layer in estimate["layer"]] == ["violation_estimate", "epsilon"]
