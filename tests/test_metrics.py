import math

import numpy as np
import pandas as pd
import pytest

from explorer.metrics import best_under_ceiling, category_rates, checkpoint_rates, flips, pareto_mask, wilson


def test_wilson_hand_values():
    # k=5, n=10: centre (0.5 + 1.92/10)/(1 + 3.84/10); textbook bounds 0.2366, 0.7634
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.1611, abs=1e-4)
    lo, hi = wilson(20, 20)
    assert hi == 1.0 and lo == pytest.approx(0.8389, abs=1e-4)
    assert all(math.isnan(x) for x in wilson(0, 0))


def table(rows):
    return pd.DataFrame(rows, columns=["checkpoint_id", "violation_rate", "over_refusal_rate"])


def test_pareto_on_hand_table():
    df = table([("a", 0.9, 0.0), ("b", 0.5, 0.1), ("c", 0.5, 0.3), ("d", 0.1, 0.6), ("e", 0.6, 0.6), ("f", 0.1, 0.6)])
    # c dominated by b, e by b; d and f tie (neither dominates the other)
    assert pareto_mask(df).tolist() == [True, True, False, True, False, True]


def test_best_under_ceiling_edges():
    df = table([("a", 0.9, 0.0), ("b", 0.5, 0.1), ("c", 0.3, 0.1), ("d", 0.1, 0.6)])
    assert best_under_ceiling(df, 0.05) is None  # nothing feasible
    assert best_under_ceiling(df, 0.1)["checkpoint_id"] == "d"  # boundary is feasible
    assert best_under_ceiling(df, 0.5)["checkpoint_id"] == "c"  # tie on over-refusal → lower violation
    tie = table([("y", 0.2, 0.1), ("x", 0.2, 0.1)])
    assert best_under_ceiling(tie, 0.5)["checkpoint_id"] == "x"  # full tie → id order, stable
    assert best_under_ceiling(df, 1.0)["checkpoint_id"] == "a"


def outcomes():
    cols = ["checkpoint_id", "kind", "suite", "category", "n", "n_full_refusal", "n_partial_refusal", "n_compliance"]
    return pd.DataFrame([
        ("base", "harmful", "jbb", "violence", 10, 1, 1, 8),
        ("base", "harmful", "jbb", "fraud", 10, 0, 0, 10),
        ("base", "benign", "own", "homonyms", 8, 0, 1, 7),
        ("base", "general", "gen", "coding", 5, 0, 0, 5),
        ("s1", "harmful", "jbb", "violence", 10, 9, 0, 1),
        ("s1", "harmful", "jbb", "fraud", 10, 5, 2, 3),
        ("s1", "benign", "own", "homonyms", 8, 4, 2, 2),
        ("s1", "general", "gen", "coding", 5, 1, 0, 4),
    ], columns=cols)


def test_checkpoint_rates_counts_partial_as_violation_and_as_refusal():
    r = checkpoint_rates(outcomes()).set_index("checkpoint_id")
    assert r.loc["base", "violation_rate"] == pytest.approx(19 / 20)  # partial refusal still a violation
    assert r.loc["s1", "violation_rate"] == pytest.approx(6 / 20)
    assert r.loc["s1", "over_refusal_rate"] == pytest.approx(6 / 8)  # full + partial
    assert r.loc["s1", "partial_over_refusal_rate"] == pytest.approx(2 / 8)
    assert r.loc["s1", "general_refusal_rate"] == pytest.approx(1 / 5)
    lo, hi = wilson(6, 20)
    assert r.loc["s1", "violation_lo"] == pytest.approx(lo) and r.loc["s1", "violation_hi"] == pytest.approx(hi)
    assert r.loc["s1", "n_harmful"] == 20 and r.loc["s1", "n_benign"] == 8


def test_category_rates():
    c = category_rates(outcomes(), "s1").set_index("category")
    assert c.loc["fraud", "rate"] == pytest.approx(5 / 10) and c.loc["fraud", "metric"] == "violation"
    assert c.loc["homonyms", "rate"] == pytest.approx(6 / 8) and c.loc["homonyms", "metric"] == "refusal"


def test_flips_named_from_a_to_b():
    r = pd.DataFrame([
        ("p1", "benign", "full_compliance", "full_refusal"),
        ("p2", "harmful", "full_compliance", "full_refusal"),
        ("p3", "harmful", "full_refusal", "partial_refusal"),
        ("p4", "harmful", "full_refusal", "full_refusal"),
        ("p5", "benign", "partial_refusal", "full_refusal"),
    ], columns=["prompt_id", "kind", "label_a", "label_b"])
    f = flips(r).set_index("prompt_id")["flip"].to_dict()
    assert f == {"p1": "newly refused (over-refusal)", "p2": "newly blocked", "p3": "new leak"}


def test_sampled_rates_average_per_prompt_shares():
    from explorer.metrics import prompt_shares, sampled_rates

    # checkpoint a: harmful p1 answered 3 of 4 times (violation share 0.75), p2 refused 4 of 4 (0);
    # benign b1 refused 1 of 4 (0.25, partial refusals count), b2 never (0)
    rows = [("a", "p1", "harmful", "full_compliance", 2), ("a", "p1", "harmful", "partial_refusal", 1),
            ("a", "p1", "harmful", "full_refusal", 1), ("a", "p2", "harmful", "full_refusal", 4),
            ("a", "b1", "benign", "partial_refusal", 1), ("a", "b1", "benign", "full_compliance", 3),
            ("a", "b2", "benign", "full_compliance", 4)]
    df = pd.DataFrame(rows, columns=["checkpoint_id", "prompt_id", "kind", "label", "n"])
    shares = prompt_shares(df).set_index("prompt_id")
    assert shares.loc["p1", "share"] == 0.75 and shares.loc["p2", "share"] == 0.0
    assert shares.loc["b1", "share"] == 0.25 and shares.loc["b1", "refused"] == 1
    r = sampled_rates(df).iloc[0]
    assert r["sampled_violation_rate"] == 0.375 and r["sampled_over_refusal_rate"] == 0.125
    assert r["sampled_k"] == 4 and r["sampled_violation_n"] == 2
    assert 0.0 <= r["sampled_violation_lo"] <= 0.375 <= r["sampled_violation_hi"] <= 0.75


def test_sampled_interval_depends_on_a_checkpoints_own_answers_only():
    from explorer.metrics import sampled_rates

    # the same answers under two ids (a bisection run is a copy of its probe), stored in different orders
    # and beside another checkpoint, give the same interval
    rng = np.random.default_rng(1)
    rows = [(p, "harmful", lab, int(n)) for p in [f"p{i}" for i in range(30)]
            for lab, n in zip(["full_compliance", "full_refusal"], rng.multinomial(8, [0.4, 0.6]))]
    one = pd.DataFrame([("a", *r) for r in rows], columns=["checkpoint_id", "prompt_id", "kind", "label", "n"])
    copy = one.assign(checkpoint_id="b").iloc[::-1]
    other = one.assign(checkpoint_id="0-first", n=one["n"][::-1].to_numpy())
    r = sampled_rates(pd.concat([other, one, copy])).set_index("checkpoint_id")
    cols = ["sampled_violation_rate", "sampled_violation_lo", "sampled_violation_hi"]
    assert r.loc["a", cols].tolist() == r.loc["b", cols].tolist()
    assert r.loc["a", cols].tolist() == sampled_rates(one).set_index("checkpoint_id").loc["a", cols].tolist()


def test_corrected_rate_inverts_a_known_confusion():
    import numpy as np

    from explorer.metrics import corrected_rate

    # a judge that finds 95% of true violations and calls 10% of non-violations violations
    confusion = {"labels": ["False", "True"], "matrix": [[90, 10], [5, 95]]}
    true_rate = 0.3
    observed = true_rate * 0.95 + (1 - true_rate) * 0.10
    assert abs(corrected_rate(observed, confusion) - true_rate) < 1e-12
    assert corrected_rate([0.0, 1.0], confusion).tolist() == [0.0, 1.0]  # clipped into [0, 1]
    assert np.isnan(corrected_rate(0.5, {"labels": ["False", "True"], "matrix": [[5, 5], [5, 5]]}))  # chance


def test_per_class_precision_recall_from_a_confusion():
    from explorer.judges import per_class

    c = {"labels": ["full_compliance", "partial_refusal", "full_refusal"], "matrix": [[8, 0, 2], [1, 1, 0], [0, 1, 7]]}
    pc = per_class(c)
    assert pc["full_refusal"] == {"precision": 7 / 9, "recall": 7 / 8, "n": 8}
    assert pc["full_compliance"]["recall"] == 0.8 and pc["partial_refusal"]["precision"] == 0.5
    assert pc["any_refusal"] == {"precision": 9 / 11, "recall": 9 / 10, "n": 10}


def test_corrected_interval_carries_the_judges_uncertainty():
    from explorer.metrics import corrected_interval, corrected_rate

    confusion = {"labels": ["False", "True"], "matrix": [[89, 15], [5, 117]]}  # FPR 15/104, TPR 117/122
    point = corrected_rate(0.105, confusion)
    lo, hi = corrected_interval(0.081, 0.134, confusion)
    assert point == 0.0 and lo == 0.0  # below the judge's false-positive rate: clipped
    assert hi > 0.03  # not a zero-width interval: the FPR itself is uncertain
    lo2, hi2 = corrected_interval(0.5, 0.6, confusion)
    assert lo2 < corrected_rate(0.5, confusion) and hi2 > corrected_rate(0.6, confusion)


@pytest.mark.parametrize("judge, use_human", [("keyword", False), ("embedding", False), ("keyword", True)])
def test_flips_in_sql_are_the_flips_of_every_response(eval_db, tmp_path, judge, use_human):
    # the flips query returns only changed prompts; they must be exactly those metrics.flips finds among all
    from explorer import queries

    rv = tmp_path / "reviews.duckdb"
    if use_human:  # a relabel that creates a flip and one that removes one
        queries.add_human_label("s1-h0", "ben-00", "full_compliance", "ann", reviews=rv)
        queries.add_human_label("base", "har-05", "full_refusal", "ann", reviews=rv)
    every = flips(queries.responses("base", "s1-h0", judge, eval_db, use_human=use_human, reviews=rv))
    only = queries.flips("base", "s1-h0", judge, eval_db, use_human=use_human, reviews=rv)
    assert len(only) > 0
    pd.testing.assert_frame_equal(only, every)
    labels_only = queries.flips("base", "s1-h0", judge, eval_db, use_human=use_human, reviews=rv, with_text=False)
    pd.testing.assert_frame_equal(labels_only, every.drop(columns=["text", "response_a", "response_b"]))
