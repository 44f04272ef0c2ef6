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
    ("loss: {beta: 0}", "'loss.beta' must be > 0"),
    ("loss: {bta: 0.1}", "unknown key 'loss.bta'"),
    ("losss: {beta: 0.1}", "unknown section 'losss'"),
    ("sweep: {lambda_safe: []}", "'sweep.lambda_safe' is an empty grid"),
    ("sweep: {lambda_helpful: [0, -1]}", "'sweep.lambda_helpful' must be a finite number ≥ 0"),
    ("train: {steps: many}", "expected an integer"),
    ("loss: {preference: kto}", "'loss.preference' must be 'dpo' or 'hinge'"),
    ("loss: [1, 2", "malformed YAML at line"),
    ("- a\n- b", "must be a mapping"),
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


def test_overrides_apply_and_validate(tmp_path):
    r = load_recipe("configs/default.yaml", parse_overrides(["loss.beta=0.25", "sweep.lambda_safe=[0, 2]"]))
    assert r.loss.beta == 0.25 and r.sweep.lambda_safe == (0.0, 2.0)
    with pytest.raises(ConfigError, match="loss.lambda_safe"):
        load_recipe("configs/default.yaml", parse_overrides(["loss.lambda_safe=-3"]))
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_overrides(["beta=1"])


def test_recipe_is_frozen():
    r = load_recipe()
    with pytest.raises(Exception):
        r.loss.beta = 1.0  # type: ignore[misc]
    assert math.isclose(r.with_loss(lambda_safe=2.0).loss.lambda_safe, 2.0)


def test_resolved_recipe_round_trips():
    # the Ray launcher ships the resolved recipe to workers as a dict
    r = load_recipe("configs/default.yaml")
    assert load_recipe(None, r.to_dict()).to_dict() == r.to_dict()
