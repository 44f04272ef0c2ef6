"""Interpolated models: bilinear weights on the grid, and a blend of adapter updates that is exact."""
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


def test_blending_what_is_not_loaded_is_refused(grid_model):
    engine, _ = grid_model
    with pytest.raises(ConfigError, match="not loaded"):
        blend(engine.model, {"s9-h9": 1.0}, "nope")
    with pytest.raises(ConfigError, match="unknown interpolation method"):
        blend(engine.model, {}, "nope", method="svd")
