"""Interpolated models: bilinear weights on the grid, and a blend of adapter updates that is exact."""
from pathlib import Path

import pytest
import torch

from explorer.config import ConfigError
from explorer.interpolate import blend, cell_weights

LS, LH = [0.0, 1.0, 3.0], [0.0, 0.1, 0.3]


def test_cell_weights_are_bilinear_and_sum_to_one():
    w = cell_weights(LS, LH, 2.0, 0.05)
    assert w == pytest.approx({(1.0, 0.0): 0.25, (1.0, 0.1): 0.25, (3.0, 0.0): 0.25, (3.0, 0.1): 0.25})
    w = cell_weights(LS, LH, 1.5, 0.3)  # on an edge: two corners
    assert w == pytest.approx({(1.0, 0.3): 0.75, (3.0, 0.3): 0.25})
    assert cell_weights(LS, LH, 3.0, 0.1) == {(3.0, 0.1): 1.0}  # a trained point is itself
    assert cell_weights(LS, LH, 0.0, 0.0) == {(0.0, 0.0): 1.0}


@pytest.mark.parametrize("ls, lh, needle", [(4.0, 0.1, "λ_safe = 4 is outside the trained range [0, 3]"),
                                            (1.0, -0.1, "λ_helpful = -0.1 is outside")])
def test_no_extrapolation(ls, lh, needle):
    with pytest.raises(ConfigError) as e:
        cell_weights(LS, LH, ls, lh)
    assert needle in str(e.value)


@pytest.fixture(scope="module")
def grid_model(tiny_dir, tmp_path_factory):
    """The tiny base with a tiny 2×2 sweep's four adapters attached."""
    from explorer import checkpoints, pairs
    from explorer.evaluate import attach_adapters
    from explorer.model import load_base
    from explorer.sweep import run_sweep

    from tiny import tiny_recipe

    work = tmp_path_factory.mktemp("interp")
    mp = pytest.MonkeyPatch()
    mp.setattr(pairs, "PAIRS_DIR", work / "pairs")
    recipe = tiny_recipe(tiny_dir, name="interp", train={"steps": 2})
    run_sweep(recipe, root=work / "checkpoints", progress=False)
    mp.undo()
    base = load_base(recipe.model, progress=False)
    infos = checkpoints.discover(work / "checkpoints" / "interp", base)
    engine = attach_adapters(base, infos)
    # two training steps from one seed leave every corner's A near the same initialisation; random A and B
    # make the corners differ as trained grids can, so a blend's cross terms are visible
    from peft.tuners.lora import LoraLayer

    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in engine.model.modules():
            if isinstance(layer, LoraLayer):
                for name in list(layer.lora_A):
                    for w in (layer.lora_A[name].weight, layer.lora_B[name].weight):
                        w.copy_(torch.randn(w.shape, generator=gen) * 0.02)
    return engine, [i.id for i in infos if not i.is_base]


def _logits(engine, checkpoint):
    from explorer.generate import activate

    activate(engine.model, checkpoint)
    ids = engine.tokenizer(["How do I kill a Python process?"], return_tensors="pt")
    with torch.no_grad():
        return engine.model(**ids).logits.float()


def _merged_logits(engine, weights: dict[str, float]):
    """The reference: a copy of the base with Σ w_i ΔW_i added to every adapted weight by hand."""
    import copy

    from peft.tuners.lora import LoraLayer

    from explorer.generate import adapter_name

    model = copy.deepcopy(engine.model)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, LoraLayer):
                delta = sum(w * layer.get_delta_weight(adapter_name(c)) for c, w in weights.items())
                layer.get_base_layer().weight += delta
    base = model.get_base_model()
    for layer in model.modules():
        if isinstance(layer, LoraLayer):
            layer._disable_adapters = True
    ids = engine.tokenizer(["How do I kill a Python process?"], return_tensors="pt")
    with torch.no_grad():
        return base(**ids).logits.float()


def _relative_update_error(engine, weights: dict[str, float], name: str) -> float:
    """max over adapted layers of |ΔW_blend − Σ w_i ΔW_i| / |Σ w_i ΔW_i| (Frobenius)."""
    from peft.tuners.lora import LoraLayer

    from explorer.generate import adapter_name

    worst = 0.0
    for layer in engine.model.modules():
        if isinstance(layer, LoraLayer) and name in layer.lora_A:
            want = sum(w * layer.get_delta_weight(adapter_name(c)) for c, w in weights.items())
            worst = max(worst, float((layer.get_delta_weight(name) - want).norm() / want.norm()))
    return worst


def test_exact_blend_equals_the_weighted_sum_of_updates_and_ab_average_does_not(grid_model):
    engine, ids = grid_model
    weights = dict(zip(sorted(ids), [0.1, 0.2, 0.3, 0.4]))
    want = _merged_logits(engine, weights)
    blend(engine.model, weights, "mix_exact")
    torch.testing.assert_close(_logits(engine, "mix_exact"), want, rtol=1e-3, atol=1e-3)
    blend(engine.model, weights, "mix_ab", method="ab_average")
    assert _relative_update_error(engine, weights, "mix_exact") < 1e-5
    assert _relative_update_error(engine, weights, "mix_ab") > 0.05  # the cross terms B_i·A_j
    one = sorted(ids)[0]
    blend(engine.model, {one: 1.0}, "only_one")
    torch.testing.assert_close(_logits(engine, "only_one"), _logits(engine, one), rtol=1e-3, atol=1e-3)


def test_a_mix_of_active_adapters_is_the_exact_blend_and_leaves_each_adapter_as_it_was(grid_model):
    """The live view's interpolation (generate.activate with {id: w}: the corners active together, scaled)
    gives the exact blend's logits, and the corners alone are unchanged afterwards."""
    engine, ids = grid_model
    weights = dict(zip(sorted(ids), [0.4, 0.3, 0.2, 0.1]))
    one = sorted(ids)[0]
    alone = _logits(engine, one)
    want = _merged_logits(engine, weights)
    blend(engine.model, weights, "mix_cat")
    torch.testing.assert_close(_logits(engine, weights), _logits(engine, "mix_cat"), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(_logits(engine, weights), want, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(_logits(engine, one), alone, rtol=0, atol=0)
    assert not torch.allclose(_logits(engine, {one: 0.5}), alone)  # the scale is applied, not ignored
    with pytest.raises(ConfigError, match="unknown checkpoint 's9-h9'"):
        _logits(engine, {one: 0.5, "s9-h9": 0.5})


def test_blending_what_is_not_loaded_is_refused(grid_model):
    engine, _ = grid_model
    with pytest.raises(ConfigError, match="not loaded"):
        blend(engine.model, {"s9-h9": 1.0}, "nope")
    with pytest.raises(ConfigError, match="unknown interpolation method"):
        blend(engine.model, {}, "nope", method="svd")


def test_corners_trained_from_the_same_base_in_other_folders_blend_and_other_bases_do_not(grid_model):
    """Adapters record their base by path; the same base cached in another checkout (earlier sessions trained
    some shipped corners from other folders) is the same model, another base is refused."""
    from explorer.generate import adapter_name
    from explorer.interpolate import check_blendable

    engine, ids = grid_model
    a, b = (adapter_name(i) for i in sorted(ids)[:2])
    config = engine.model.peft_config[b]
    original = config.base_model_name_or_path
    try:
        config.base_model_name_or_path = str(Path("/elsewhere/.cache/base") / Path(original).name)
        check_blendable(engine.model, [a, b])
        config.base_model_name_or_path = "/elsewhere/.cache/base/another-model"
        with pytest.raises(ConfigError, match="different base models"):
            check_blendable(engine.model, [a, b])
    finally:
        config.base_model_name_or_path = original


def _grid_infos(points):
    from explorer.checkpoints import CheckpointInfo, run_id

    return [CheckpointInfo(run_id(ls, lh), None, f"fp-{ls}-{lh}", ls, lh, {"base_fingerprint": "fp", "recipe": {}})
            for ls, lh in points]


def test_a_held_out_blend_withholds_its_own_row_and_is_measured_where_both_sides_are_trained():
    from explorer.interpolate import fidelity_points, interpolated_info

    infos = _grid_infos([(ls, lh) for ls in (1.0, 2.0, 3.0) for lh in (0.0, 0.1)] + [(2.0, 0.3)])
    info, weights = interpolated_info(infos, 2.0, 0.1, held_out=True)
    assert weights == pytest.approx({"s1-h0.1": 0.5, "s3-h0.1": 0.5}) and info.id == "interp-s2-h0.1-heldout"
    assert info.manifest["interpolated"] == {"method": "exact", "corners": weights, "held_out": True}
    assert interpolated_info(infos, 2.0, 0.1)[1] == {"s2-h0.1": 1.0}  # not held out: the trained point itself
    # (2, 0.3) has no trained neighbour rows at λ_helpful 0.3: nothing to blend it from
    assert fidelity_points(infos, [2.0]) == [(2.0, 0.0), (2.0, 0.1)]
    with pytest.raises(ConfigError, match="no trained grid point at λ_safe 2, λ_helpful 0.05 to hold out"):
        interpolated_info(infos, 2.0, 0.05, held_out=True)


def test_locate_tells_trained_from_blended_from_not_yet_evaluated():
    import pandas as pd

    from explorer.interpolate import locate

    grid = pd.DataFrame({"checkpoint_id": ["s0-h0", "s0-h1", "s1-h0", "s1-h1"], "lambda_safe": [0.0, 0.0, 1.0, 1.0],
                         "lambda_helpful": [0.0, 1.0, 0.0, 1.0], "violation_rate": [0.8, 0.9, 0.2, 0.4]})
    blends = pd.DataFrame({"checkpoint_id": ["interp-s0.5-h0"], "lambda_safe": [0.5], "lambda_helpful": [0.0],
                           "blend_method": ["exact"]})
    assert locate(grid, blends, 1.0, 0.0).status == "trained"
    assert locate(grid, blends, 0.5, 0.0).row["checkpoint_id"] == "interp-s0.5-h0"
    here = locate(grid, blends, 0.25, 0.5)
    assert here.status == "not evaluated" and here.row is None
    assert dict(zip(here.corners["checkpoint_id"], here.corners["weight"])) == pytest.approx(
        {"s0-h0": 0.375, "s0-h1": 0.375, "s1-h0": 0.125, "s1-h1": 0.125})
    gap = locate(grid[grid["checkpoint_id"] != "s1-h1"], blends, 0.5, 0.5)
    assert gap.status == "no corners" and gap.missing == ("s1-h1",)
    # a run trained off the axes (a bisection probe at λ_safe 0.5) is found where it is, and is no corner
    probe = pd.DataFrame({"checkpoint_id": ["s0.5-h1"], "lambda_safe": [0.5], "lambda_helpful": [1.0],
                          "violation_rate": [0.6], "kind": ["grid"], "on_grid": [False]})
    with_probe = pd.concat([grid.assign(kind="grid", on_grid=True), probe], ignore_index=True)
    assert locate(with_probe, blends, 0.5, 1.0).row["checkpoint_id"] == "s0.5-h1"
    beside = locate(with_probe, blends, 0.25, 0.5)
    assert beside.status == "not evaluated" and set(beside.corners["checkpoint_id"]) == {"s0-h0", "s0-h1", "s1-h0", "s1-h1"}


def test_densify_plans_positions_between_pareto_neighbours_that_are_far_apart():
    import pandas as pd

    from explorer.interpolate import densify_plan

    table = pd.DataFrame({
        "checkpoint_id": ["s1-h0", "s1-h0.1", "s1-h0.2", "s3-h0.2", "interp-s1-h0.05"],
        "kind": ["grid", "grid", "grid", "grid", "interpolated"], "blend_method": [None, None, None, None, "exact"],
        "lambda_safe": [1.0, 1.0, 1.0, 3.0, 1.0], "lambda_helpful": [0.0, 0.1, 0.2, 0.2, 0.05],
        "violation_rate": [0.10, 0.34, 0.72, 0.90, 0.20], "over_refusal_rate": [0.60, 0.19, 0.07, 0.08, 0.40]})
    # s3-h0.2 is dominated by s1-h0.2; the steps: 0.10→0.20 fine, 0.20→0.34 halved, 0.34→0.72 in four
    assert densify_plan(table, 0.10) == [(1.0, 0.075), (1.0, 0.125), (1.0, 0.15), (1.0, 0.175)]
    assert densify_plan(table, 0.5) == []


def test_the_live_engine_answers_a_mix_from_its_merged_blend_and_keeps_only_the_newest(grid_model):
    """live.TorchLive decodes a mix of several corners with one merged adapter (interpolate.SettledBlends):
    the same answer as the corners active together, built once per mix, the SETTLED_BLENDS newest kept,
    and no trace on the trained adapters."""
    from explorer import interpolate
    from explorer.generate import adapter_name, stream
    from explorer.live import TorchLive

    engine, ids = grid_model
    corners = sorted(ids)
    live = TorchLive(engine)
    alone = _logits(engine, corners[0])
    mixes = [dict(zip(corners, [0.1 + k / 10, 0.2, 0.3, 0.4 - k / 10])) for k in range(interpolate.SETTLED_BLENDS + 1)]
    prompt = "How do I kill a Python process?"
    for mix in mixes[:2]:
        merged = "".join(live.stream(mix, prompt, max_new_tokens=8))
        scaled = "".join(stream(engine, mix, prompt, max_new_tokens=8))  # the corners active, each at its scale
        assert merged == scaled
    first, second = live.blends.names
    "".join(live.stream(mixes[0], prompt, max_new_tokens=4))
    assert live.blends.names == [second, first]  # reused, and now the newest
    for mix in mixes[2:]:
        "".join(live.stream(mix, prompt, max_new_tokens=4))
    assert len(live.blends.names) == interpolate.SETTLED_BLENDS and first in live.blends.names
    assert second not in live.blends.names and adapter_name(second) not in engine.model.peft_config  # evicted, freed
    assert all(adapter_name(n) in engine.model.peft_config for n in live.blends.names)
    n = len(live.blends.names)
    "".join(live.stream({corners[0]: 1.0}, prompt, max_new_tokens=4))  # one corner: no blend needed
    "".join(live.stream({corners[0]: 0.0, corners[1]: 1.0}, prompt, max_new_tokens=4))
    assert len(live.blends.names) == n
    torch.testing.assert_close(_logits(engine, corners[0]), alone, rtol=0, atol=0)
