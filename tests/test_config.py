import math

import pytest

from explorer.config import ConfigError, load_recipe, parse_overrides


def write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_default_recipes_load():
    r = load_recipe("configs/default.yaml")
    assert len(r.sweep.lambda_safe) >= 3 and len(r.sweep.lambda_helpful) >= 3
    assert r.sweep.lambda_safe[0] == 0.0 and r.sweep.lambda_helpful[0] == 0.0
    g = load_recipe("configs/gpu.yaml")
    assert g.model.dtype == "bfloat16" and len(g.sweep.lambda_safe) > len(r.sweep.lambda_safe)


@pytest.mark.parametrize("text, needle", [
    ("loss: {lambda_safe: -1}", "'loss.lambda_safe' must be a finite number ≥ 0"),
    ("loss: {lambda_safe: .nan}", "'loss.lambda_safe' must be a finite number ≥ 0"),
    ("loss: {lambda_helpful: -0.5}", "'loss.lambda_helpful'"),
    ("loss: {beta: 0}", "'loss.beta' must be a finite number > 0"),
    ("loss: {bta: 0.1}", "unknown key 'loss.bta'"),
    ("losss: {beta: 0.1}", "unknown section 'losss'"),
    ("sweep: {lambda_safe: []}", "'sweep.lambda_safe' is an empty grid"),
    ("sweep: {lambda_helpful: [0, -1]}", "'sweep.lambda_helpful' must be a finite number ≥ 0"),
    ("train: {steps: many}", "expected an integer"),
    ("loss: {preference: kto}", "'loss.preference' must be 'dpo' or 'hinge'"),
    ("loss: [1, 2", "malformed YAML at line"),
    ("- a\n- b", "must be a mapping"),
    # issue 14: accepted before
    ("train:\n  steps: 10\n  lr: 0.1\n  steps: 20\n", "line 4: duplicate key 'steps' (first given at line 2)"),
    ("train: {steps: 1}\ntrain: {lr: 0.1}\n", "line 2: duplicate key 'train' (first given at line 1)"),
    ("train: {steps: true}", "'train.steps': expected a number, got True"),
    ("loss: {lambda_safe: true}", "'loss.lambda_safe': expected a number, got True"),
    ("train: {steps: 1.0e+23}", "'train.steps' must be an integer ≥ 1 and ≤ 1_000_000"),
    ("train: {steps: 1e23}", "'train.steps': expected an integer, got '1e23'"),
    ("loss: {lambda_safe: 1e300}", "'loss.lambda_safe' must be a finite number ≥ 0 and ≤ 1e+06, got 1e+300"),
    ("sweep: {lambda_safe: [0, 1e7]}", "'sweep.lambda_safe' must be a finite number ≥ 0 and ≤ 1e+06"),
    ("train: {batch_lm: -1}", "'train.batch_lm' must be an integer ≥ 1"),
    ("train: {batch_lm: 0}", "'train.batch_lm' must be an integer ≥ 1"),
    ("train: {warmup_steps: -3}", "'train.warmup_steps' must be an integer ≥ 0"),
    ("train: {n_lm: -5}", "'train.n_lm' must be an integer ≥ 1"),
    ("train: {n_safe_pairs: 0}", "'train.n_safe_pairs' must be an integer ≥ 1"),
    ("train: {n_helpful_pairs: -1}", "'train.n_helpful_pairs' must be an integer ≥ 1"),
    ("train: {batch_pairs: 100000}", "'train.batch_pairs' must be an integer ≥ 1 and ≤ 65_536"),
    ("lora: {r: 5000}", "'lora.r' must be an integer ≥ 1 and ≤ 4_096"),
    ("eval: {max_new_tokens: 0}", "'eval.max_new_tokens' must be an integer ≥ 1"),
    ("sweep: {cpus_per_run: 0}", "'sweep.cpus_per_run' must be an integer ≥ 1"),
    ("sweep: {dual_every: 0}", "'sweep.dual_every' must be an integer ≥ 1"),
    ("sweep: {dual_lr: 0}", "'sweep.dual_lr' must be a finite number > 0"),
    ("sweep: {name: ../../outside}", "'sweep.name' must be a plain name"),
    ("sweep: {name: ..}", "'sweep.name' must be a plain name"),
    ("sweep: {name: a/b}", "'sweep.name' must be a plain name"),
    ("sweep: {name: ''}", "'sweep.name' must be a plain name"),
])
def test_bad_recipes_name_key_and_file(tmp_path, text, needle):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_recipe(p)
    assert needle in str(e.value)
    assert str(p) in str(e.value)


def test_missing_file():
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_recipe("configs/nope.yaml")


def test_directory_or_device_as_recipe(tmp_path):
    with pytest.raises(ConfigError, match="is a directory, not a recipe file"):
        load_recipe(tmp_path)
    with pytest.raises(ConfigError, match="/dev/null: is not a regular file"):
        load_recipe("/dev/null")


def test_sweep_names_that_are_plain_names_load():
    for name in ("default", "gpu", "tiny-ray", "run_2.b", "A" * 64):
        assert load_recipe(None, {"sweep": {"name": name}}).sweep.name == name
    with pytest.raises(ConfigError, match="plain name"):
        load_recipe(None, {"sweep": {"name": "A" * 65}})


def test_yaml_merge_keys_may_override():
    # `<<: *base` followed by the same key is an intended override, not a duplicate
    from explorer.config import parse_yaml as _yaml

    assert _yaml("a: &b {x: 1, y: 3}\nc:\n  <<: *b\n  x: 2\n")["c"] == {"x": 2, "y": 3}


def test_empty_recipe_is_the_default_recipe():
    # the dataclass defaults equal configs/default.yaml (issue 13): an empty recipe behaves the same
    assert load_recipe(None).to_dict() == load_recipe("configs/default.yaml").to_dict()
    assert load_recipe(None).eval.primary_judge == "probe" and load_recipe(None).eval.max_new_tokens == 48


def test_overrides_apply_and_validate(tmp_path):
    r = load_recipe("configs/default.yaml", parse_overrides(["loss.beta=0.25", "sweep.lambda_safe=[0, 2]"]))
    assert r.loss.beta == 0.25 and r.sweep.lambda_safe == (0.0, 2.0)
    with pytest.raises(ConfigError, match="loss.lambda_safe"):
        load_recipe("configs/default.yaml", parse_overrides(["loss.lambda_safe=-3"]))
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_overrides(["beta=1"])


@pytest.mark.parametrize("item, needle", [
    ("loss.beta=abc", "--set loss.beta: expected a number, got 'abc'"),
    ("loss.beta=0", "--set loss.beta must be a finite number > 0"),
    ("train.steps=true", "--set train.steps: expected a number, got True"),
    ("loss.bta=1", "--set loss.bta: unknown key 'loss.bta'"),
    ("losss.beta=1", "--set losss.beta: unknown section 'losss'"),
    ("sweep.name=../../outside", "--set sweep.name must be a plain name"),
])
def test_bad_override_is_blamed_on_the_flag_not_the_file(item, needle):
    with pytest.raises(ConfigError) as e:
        load_recipe("configs/default.yaml", parse_overrides([item]))
    assert str(e.value).startswith(needle) and "default.yaml" not in str(e.value)


def test_a_bad_file_value_is_still_blamed_on_the_file_when_another_key_is_overridden(tmp_path):
    p = write(tmp_path, "loss: {beta: 0}")
    with pytest.raises(ConfigError, match=f"^{p}: 'loss.beta' must be"):
        load_recipe(p, parse_overrides(["loss.lambda_safe=2"]))


def test_recipe_is_frozen():
    r = load_recipe()
    with pytest.raises(Exception):
        r.loss.beta = 1.0  # type: ignore[misc]
    assert math.isclose(r.with_loss(lambda_safe=2.0).loss.lambda_safe, 2.0)


def test_resolved_recipe_round_trips():
    # the Ray launcher ships the resolved recipe to workers as a dict
    r = load_recipe("configs/default.yaml")
    assert load_recipe(None, r.to_dict()).to_dict() == r.to_dict()


def test_variants_are_trained_at_their_own_points():
    from explorer.checkpoints import describe
    from explorer.sweep import grid

    recipe = load_recipe(None, {"sweep": {"lambda_safe": [0.0, 1.0], "lambda_helpful": [0.1], "variants": ["hinge", "unweighted"],
                                          "variant_lambda_safe": [1.0], "variant_lambda_helpful": [0.1]}})
    points = grid(recipe)
    assert [p.run_id for p in points] == ["s0-h0.1", "s1-h0.1", "s1-h0.1-hinge", "s1-h0.1-unweighted"]
    hinge, flat = points[2].recipe(recipe), points[3].recipe(recipe)
    assert (hinge.loss.preference, hinge.loss.severity_weighting, hinge.loss.lambda_safe) == ("hinge", True, 1.0)
    assert (flat.loss.preference, flat.loss.severity_weighting) == ("dpo", False)
    assert describe({"recipe": hinge.to_dict()}, False) == {"kind": "variant", "target_violation": None, "variant": "hinge",
                                                              "blend_method": None, "constraint_method": None,
                                                              "on_grid": False, "knobs": None}
    assert describe({"recipe": points[0].recipe(recipe).to_dict()}, False)["kind"] == "grid"
    eps = load_recipe(None, {"sweep": {"target_violation": 0.2}})
    assert describe({"recipe": eps.to_dict()}, False) == {"kind": "constrained", "target_violation": 0.2, "variant": None,
                                                           "blend_method": None, "constraint_method": "dual ascent",
                                                           "on_grid": False, "knobs": None}
    assert describe({}, True)["kind"] == "base"


@pytest.mark.parametrize("sweep, needle", [
    ({"variants": ["sharp"], "variant_lambda_safe": [1.0], "variant_lambda_helpful": [0.1]}, "unknown variant 'sharp'"),
    ({"variants": ["hinge"], "variant_lambda_safe": []}, "needs the points to train them at"),
])
def test_bad_variants_are_refused(sweep, needle):
    with pytest.raises(ConfigError, match=needle):
        load_recipe(None, {"sweep": sweep})
