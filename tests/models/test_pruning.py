"""Channel pruning by ratio (models.prune_channels) and per-layer widths (models.channels)."""

from __future__ import annotations

import json

import pytest
import torch

from lfubench import models
from lfubench.bench.complexity import count_params, fvcore_macs
from lfubench.models import ModelConfigError, prune_channels, zero_removed
from lfubench.models.channels import graph

PRESETS = ["unet_zhou2018", "unetpp_zhou2018", "unet3p_huang2020", "lfunet_deng2023"]

# every family, small enough to be quick, with the configurations whose channel structure differs
FAMILY_CONFIGS = [
    ("unet", {"base_width": 8}),
    ("unet", {"base_width": 8, "up_mode": "deconv", "norm": False}),
    ("unetpp", {"base_width": 8}),
    ("unetpp", {"base_width": 8, "prune_level": 2, "up_mode": "deconv"}),
    ("unet3p", {"base_width": 8}),
    ("lfunet", {"base_width": 16}),
    ("lfunet", {"base_width": 16, "groups": 4, "prune_level": 3}),
    ("lfunet", {"base_width": 16, "share_transitions": False, "prune_level": 2}),
    ("lfunet", {"base_width": 16, "skip_mode": "nested", "deep_supervision": False}),
    ("lfunet", {"base_width": 16, "groups": 1, "prune_level": 1}),
]


def _model(name: str, seed: int = 0, **kwargs) -> models.SegmentationNet:
    """A model in eval mode with non-trivial batch-norm statistics (as after training)."""
    torch.manual_seed(seed)
    model = models.create_model(name, **kwargs).eval()
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model


def _x(model, size: int = 32, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, model.in_channels, size, size, generator=torch.Generator().manual_seed(7))


def _assert_equivalent(model, pruned, x) -> None:
    with torch.no_grad():
        masked = zero_removed(model, pruned.prune_report.kept)
        ref_heads, got_heads = masked.forward_heads(x), pruned.forward_heads(x)
    assert len(ref_heads) == len(got_heads)
    for a, b in zip(ref_heads, got_heads, strict=True):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= 1e-5


@pytest.mark.parametrize("scope", ["local", "global"])
@pytest.mark.parametrize("ratio", [0.25, 0.6])
@pytest.mark.parametrize("name,kwargs", FAMILY_CONFIGS, ids=str)
def test_pruned_output_equals_original_with_removed_channels_zeroed(name, kwargs, ratio, scope):
    model = _model(name, **kwargs)
    pruned = prune_channels(model, ratio, scope=scope)
    report = pruned.prune_report
    assert report.params_after == count_params(pruned) < count_params(model)
    assert 0 < report.channel_ratio < 1
    _assert_equivalent(model, pruned, _x(model))


@pytest.mark.parametrize("scope", ["local", "global"])
@pytest.mark.parametrize("name", PRESETS)
def test_author_presets_prune_exactly(name, scope):
    kwargs = {"deep_supervision": True} if name == "unetpp_zhou2018" else {}
    model = _model(name, **kwargs)
    pruned = prune_channels(model, 0.5, scope=scope)
    assert pruned.model_name == name and pruned.config["name"] == name
    _assert_equivalent(model, pruned, _x(model, batch=1))


@pytest.mark.parametrize("name,kwargs", FAMILY_CONFIGS[::2], ids=str)
def test_ratio_zero_gives_the_identical_model(name, kwargs):
    model = _model(name, **kwargs)
    pruned = prune_channels(model, 0)
    assert pruned.widths == model.widths
    assert count_params(pruned) == count_params(model)
    x = _x(model)
    with torch.no_grad():
        assert torch.equal(pruned(x), model(x))


FULL_WIDTH = [("unet", {"base_width": 32}), ("unetpp", {"base_width": 32}), ("unet3p", {"base_width": 16}),
              ("lfunet", {"base_width": 32})]


@pytest.mark.parametrize("name,kwargs", FULL_WIDTH, ids=str)
def test_params_and_macs_fall_as_the_square_of_the_kept_fraction(name, kwargs):
    model = _model(name, **kwargs)
    pruned = prune_channels(model, 0.5)
    shape = (model.in_channels, 64, 64)
    params = count_params(pruned) / count_params(model)
    macs = fvcore_macs(pruned, shape) / fvcore_macs(model, shape)
    # interior convolutions keep a quarter of their weights; input and head layers only half
    assert 0.24 <= params <= 0.28
    assert 0.24 <= macs <= 0.30
    assert pruned.prune_report.param_ratio == pytest.approx(1 - params)


def test_save_and_load_through_the_config():
    model = _model("lfunet", base_width=16)
    pruned = prune_channels(model, 0.5, scope="global")
    config = json.loads(json.dumps(pruned.config))  # plain and JSON-able
    assert config["name"] == "lfunet" and config["base_width"] == 16
    rebuilt = models.create_model(**config).eval()
    rebuilt.load_state_dict(pruned.state_dict(), strict=True)
    x = _x(model)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), pruned(x))


@pytest.mark.parametrize("name,kwargs", [("lfunet", {"base_width": 16}), ("unetpp", {"base_width": 8})],
                         ids=str)
def test_every_pruning_level_loads_from_the_pruned_full_model(name, kwargs):
    model = _model(name, **kwargs)
    pruned = prune_channels(model, 0.5, scope="global")
    x = _x(model)
    with torch.no_grad():
        heads = pruned.forward_heads(x)
        for level in (1, 2, 3):
            sub = models.create_model(**{**pruned.config, "prune_level": level}).eval()
            sub.load_from_full(pruned.state_dict())
            got = sub(x)
            want = torch.stack(heads[:level]).mean(0) if sub.head_merge == "mean" else heads[level - 1]
            assert (got - want).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name,kwargs", [("lfunet", {"base_width": 16}), ("unet3p", {"base_width": 8}),
                                         ("unetpp", {"base_width": 8, "up_mode": "deconv"})], ids=str)
def test_gradients_reach_every_parameter_of_a_pruned_model(name, kwargs):
    pruned = prune_channels(_model(name, **kwargs), 0.5, scope="global").train()
    sum(h.square().mean() for h in pruned.forward_heads(_x(pruned))).backward()
    dead = [n for n, p in pruned.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_grouped_sets_keep_multiples_of_groups_and_never_fewer_than_groups():
    model = _model("lfunet", base_width=8, groups=8)  # every decoder set has 8 channels in 8 groups
    pruned = prune_channels(model, 0.75)
    report = pruned.prune_report
    assert all(w % 8 == 0 and w >= 8 for w in pruned.widths.values())
    assert pruned.widths["x0_1"] == pruned.widths["t.p0"] == 8  # cannot lose a channel: one per group
    assert report.achieved["x0_1"] == 0
    assert pruned.widths["x4_0"] == 32 and report.achieved["x4_0"] == 0.75
    assert 0 < report.channel_ratio < 0.75  # what was achieved, not what was asked


def test_shared_transitions_and_head_couple_their_sources():
    model = _model("lfunet", base_width=16)
    g = graph(model.channel_layers())
    nodes = g.coupled_class("x0_1")
    assert {"x0_0", "x0_1", "x0_4", "x1_1", "x3_1"} <= set(nodes)  # p0/zp0 and the head read them all
    pruned = prune_channels(model, 0.5, scope="global")
    kept = pruned.prune_report.kept
    assert all(kept[n] == kept["x0_1"] for n in nodes)
    transitions = [n for n in pruned.widths if n.startswith("t.")]
    assert len({pruned.widths[n] for n in transitions}) == 1  # concatenated into grouped convs


def test_global_scope_gives_non_uniform_widths_with_a_floor():
    model = _model("unet", base_width=16)
    with torch.no_grad():  # one dominant filter: the others of its set score far below its mean
        model.encoder["x2_0"][1][0].weight[0].mul_(1e3)
    pruned = prune_channels(model, 0.5, scope="global")
    achieved = pruned.prune_report.achieved
    assert pruned.widths["x2_0"] == 7  # down to the floor: ceil(10 % of 64)
    assert achieved["x2_0"] == pytest.approx(1 - 7 / 64)
    assert 0 in pruned.prune_report.kept["x2_0"]
    assert len({round(v, 2) for v in achieved.values()}) > 3
    assert pruned.prune_report.channel_ratio == pytest.approx(0.5, abs=0.02)
    local = prune_channels(model, 0.5, scope="local").prune_report.achieved
    assert set(local.values()) == {0.5}


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5])
def test_global_scope_with_all_equal_scores_removes_the_asked_fraction(ratio):
    """Fresh batch-norm scales are all 1 (``bn`` + ``global`` + ``init``): every score ties. The
    ties are broken by channel index within each set, so every set loses about the ratio (not
    every tied channel at the threshold, which left each set at the 10 % floor)."""
    model = models.create_model("unet", base_width=8)
    pruned = prune_channels(model, ratio, importance="bn", scope="global")
    report = pruned.prune_report
    assert report.channel_ratio == pytest.approx(ratio, abs=0.02)
    for name, achieved in report.achieved.items():
        width = model.widths[name]
        assert abs(achieved * width - ratio * width) <= 1, (name, achieved)
        assert report.kept[name] == list(range(pruned.widths[name]))  # ties: the lower index kept
    again = prune_channels(model, ratio, importance="bn", scope="global").prune_report
    assert again.kept == report.kept  # deterministic


def test_global_scope_with_equal_l1_scores_in_grouped_sets():
    model = models.create_model("lfunet", base_width=16, groups=4)
    with torch.no_grad():
        for layer in model.channel_layers():
            model.get_submodule(layer.path).weight.fill_(0.5)
    report = prune_channels(model, 0.5, scope="global").prune_report
    assert report.channel_ratio == pytest.approx(0.5, abs=0.05)
    assert max(report.achieved.values()) <= 0.75


@pytest.mark.parametrize("training", [True, False])
def test_example_input_leaves_both_models_in_the_original_mode(training):
    model = _model("unet", base_width=8).train(training)
    frozen = model.encoder["x0_0"][0][1]  # a batch norm kept in eval mode inside a training model
    frozen.eval()
    modes = {name: m.training for name, m in model.named_modules()}
    pruned = prune_channels(model, 0.5, example_input=_x(model))
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert pruned.training is training
    assert all(m.training is training for m in pruned.modules())


def test_importance_chooses_which_channels_are_kept():
    model = _model("unet", base_width=8)
    conv = model.encoder["x0_0"][0][0]  # produces x0_0.mid, 8 channels
    bn = model.encoder["x0_0"][0][1]
    with torch.no_grad():
        scale = torch.tensor([1.0, 9, 2, 8, 3, 7, 4, 6])
        conv.weight.copy_(torch.ones_like(conv.weight) * scale[:, None, None, None])
        bn.weight.copy_(torch.tensor([9.0, 1, 8, 2, 7, 3, 6, 4]))
    assert prune_channels(model, 0.5, importance="l1").prune_report.kept["x0_0.mid"] == [1, 3, 5, 7]
    assert prune_channels(model, 0.5, importance="l2").prune_report.kept["x0_0.mid"] == [1, 3, 5, 7]
    assert prune_channels(model, 0.5, importance="bn").prune_report.kept["x0_0.mid"] == [0, 2, 4, 6]
    r0 = prune_channels(model, 0.5, importance="random", seed=0).prune_report.kept
    assert r0 == prune_channels(model, 0.5, importance="random", seed=0).prune_report.kept
    assert r0 != prune_channels(model, 0.5, importance="random", seed=1).prune_report.kept


def test_grouped_selection_keeps_the_same_count_in_every_group():
    model = _model("lfunet", base_width=16, groups=4)
    pruned = prune_channels(model, 0.5, importance="random", seed=3)
    kept = pruned.prune_report.kept["x1_0"]  # 32 channels in 4 chunks of 8
    assert [sum(1 for k in kept if c * 8 <= k < (c + 1) * 8) for c in range(4)] == [4, 4, 4, 4]


def test_non_uniform_widths_build_directly():
    model = models.create_model("unet", base_width=8, widths={"x0_0": 3, "x4_0.mid": 50})
    assert model.encoder["x0_0"][1][0].out_channels == 3
    assert model.decoder["x0_4"][0][0].in_channels == 16 + 3  # upsampled x1_3, then x0_0
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    assert model.config["widths"] == {"x0_0": 3, "x4_0.mid": 50}


@pytest.mark.parametrize("name,kwargs,widths,match", [
    ("lfunet", {"base_width": 16}, {"x1_0": 12},
     r"'x1_0' has 12 channels, not a multiple of the 8 groups of layer"),
    ("lfunet", {"base_width": 16}, {"t.p0": 8}, r"must have equal widths"),
    ("lfunet", {"base_width": 16}, {"x0_1": 8}, r"must have equal widths"),
    ("unet", {}, {"x9_9": 4}, r"unknown channel set 'x9_9'"),
    ("unet", {}, {"x0_0": 0}, r"width of channel set 'x0_0' must be a positive integer"),
    ("unet", {}, [4], r"widths must be a table"),
])
def test_bad_widths_name_the_set_and_layer(name, kwargs, widths, match):
    with pytest.raises(ModelConfigError, match=match):
        models.create_model(name, widths=widths, **kwargs)


@pytest.mark.parametrize("kwargs,match", [
    ({"ratio": 0.95}, r"prune ratio must be a number in \[0, 0.9\], got 0.95"),
    ({"ratio": -0.1}, r"prune ratio must be a number"),
    ({"ratio": 0.5, "importance": "taylor"}, r"importance 'taylor' is not one of l1, l2, bn, random"),
    ({"ratio": 0.5, "scope": "layer"}, r"scope 'layer' is not one of local, global"),
])
def test_bad_pruning_arguments(kwargs, match):
    with pytest.raises(ModelConfigError, match=match):
        prune_channels(models.create_model("unet", base_width=8), **kwargs)


def test_bn_importance_needs_batch_norm():
    match = r"importance 'bn' needs batch norm .* layer 'encoder.x0_0.0.0'"
    with pytest.raises(ModelConfigError, match=match):
        prune_channels(models.create_model("unet", base_width=8, norm=False), 0.5, importance="bn")


def test_a_model_built_outside_the_registry_is_refused():
    from lfubench.models.unet import UNet

    with pytest.raises(ModelConfigError, match="needs a zoo model built by models.create_model"):
        prune_channels(UNet(base_width=8), 0.5)


@pytest.mark.parametrize("name", [n for n in models.list_models()  # the outside baselines have none
                                  if models.model_source(n) not in models.OUTSIDE_SOURCES])
def test_channel_description_matches_the_modules(name):
    """Every convolution's in/out channels follow from the channel sets it names."""
    model = models.create_model(name)
    covered = set()
    for layer in model.channel_layers():
        conv = model.get_submodule(layer.path)
        for use in layer.uses:
            width = sum(model.in_channels if n == "input" else model.widths[n] for n in use)
            assert conv.in_channels == width, layer.path
        if layer.out is not None:
            assert conv.out_channels == model.widths[layer.out], layer.path
        covered.add(f"{layer.path}.weight")
        if layer.norm:
            covered.add(f"{layer.norm}.weight")
    weights = {n for n, p in model.named_parameters() if n.endswith("weight")}
    assert weights == covered
