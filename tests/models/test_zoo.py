"""The model zoo: output contract, gradients, determinism, presets, names and bad arguments."""

from __future__ import annotations

import pytest
import torch

from lfubench import models
from lfubench.bench.complexity import count_params, fvcore_macs
from lfubench.models.blocks import building, level_nodes

from .outside_helpers import SMALL, needs  # the outside baselines: small configurations, library skips

NAMES = models.list_models()
#: the outside baselines (extra baselines): skipped where their library does not import
OUTSIDE = [name for name in NAMES if models.model_source(name) in models.OUTSIDE_SOURCES]
ALL = [pytest.param(name, marks=needs(name)) if name in OUTSIDE else name for name in NAMES]
PRUNABLE = [name for name in NAMES if name.startswith(("unetpp", "lfunet"))]

# Exact parameter counts derived by hand from the authors' code with its defaults:
# U_Net / Nest_Net (MrGiovanni/UNetPlusPlus, Keras: 1 input channel, 1 class, no deep supervision),
# UNet_3Plus (ZJUGiveLab/UNet-Version: 3 input channels, 1 class),
# LFU-Net (dengdy22/U-Nets: 3 input channels, 1 class as their cfg is missing).
PRESET_PARAMS = {
    "unet_zhou2018": 7_759_521,
    "unetpp_zhou2018": 9_041_601,
    "unet3p_huang2020": 26_971_777,
    "lfunet_deng2023": 47_849,
}

# configurations whose every parameter must receive a gradient
GRAD_CONFIGS = [(name, {}) for name in NAMES if name not in OUTSIDE] + [
    pytest.param(name, SMALL[name][0], marks=needs(name)) for name in OUTSIDE] + [
    ("unetpp", {"prune_level": 2}),
    ("unetpp", {"prune_level": 1, "deep_supervision": False}),
    ("lfunet", {"prune_level": 2}),
    ("lfunet", {"prune_level": 3, "deep_supervision": False}),
    ("lfunet", {"skip_mode": "nested"}),
    ("lfunet", {"share_transitions": False, "prune_level": 3}),
    ("unetpp_zhou2018", {"deep_supervision": True}),
]


def _input(model, h, w, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, model.in_channels, h, w, generator=g)


def _fits(model, h, w) -> bool:
    try:
        model.check_input(torch.empty(1, model.in_channels, h, w, device="meta"))
        return True
    except ValueError:
        return False


def _side(model) -> tuple[int, int]:
    """32x32, or the smallest input an outside baseline takes (nnU-Net's at 256: 128x64)."""
    m = model.size_multiple
    return (32, 32) if _fits(model, 32, 32) else (2 * m, m)


def _unused(model) -> list[str]:
    """Parameters a model holds but never uses: nnU-Net's 1x1 output convolutions of the lower
    decoder stages, built for deep supervision, which is off."""
    if not model.model_name.startswith("nnunet"):
        return []
    n = len(model.net.decoder.seg_layers)
    return [f"net.decoder.seg_layers.{i}.{p}" for i in range(n - 1) for p in ("weight", "bias")]


def test_registry_lists_the_four_families_and_presets():
    assert set(NAMES) - set(OUTSIDE) == {
        "unet", "unetpp", "unet3p", "lfunet",
        "unet_zhou2018", "unetpp_zhou2018", "unet3p_huang2020", "lfunet_deng2023",
    }
    assert models.list_models("unet*") == ["unet", "unet3p", "unet3p_huang2020", "unet_zhou2018",
                                           "unetpp", "unetpp_zhou2018"]
    assert models.list_models("*_deng2023") == ["lfunet_deng2023"]


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("size", [(32, 48), (64, 64), (256, 256)])
def test_forward_shape(name, size):
    torch.manual_seed(0)
    model = models.create_model(name).eval()
    if name in OUTSIDE and not _fits(model, *size):
        pytest.skip(f"{name} takes multiples of {model.size_multiple} with more than one pixel at the bottom")
    x = _input(model, *size, batch=1 if size[0] == 256 else 2)
    with torch.no_grad():
        y = model(x)
        heads = model.forward_heads(x)
    assert y.shape == (x.shape[0], model.num_classes, *size)
    assert all(h.shape == y.shape for h in heads)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name,kwargs", GRAD_CONFIGS, ids=lambda v: str(v))
def test_gradients_reach_every_parameter(name, kwargs):
    torch.manual_seed(1)
    model = models.create_model(name, **kwargs).train()
    side = SMALL[name][1] if name in OUTSIDE else 32
    heads = model.forward_heads(_input(model, side, side))
    sum(h.square().mean() for h in heads).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == _unused(model)


@pytest.mark.parametrize("name", ALL)
def test_eval_mode_is_deterministic(name):
    torch.manual_seed(2)
    model = models.create_model(name).eval()
    x = _input(model, *_side(model))
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("name,expected", sorted(PRESET_PARAMS.items()))
def test_preset_parameter_counts_match_the_authors_code(name, expected):
    assert count_params(models.create_model(name)) == expected


def test_unetpp_preset_with_deep_supervision_adds_three_heads():
    # the Keras Nest_Net builds all four 1x1 heads (33 parameters each) only with deep supervision
    assert count_params(models.create_model("unetpp_zhou2018", deep_supervision=True)) == 9_041_700


@pytest.mark.parametrize("name", ["unetpp", "lfunet"])
def test_pruning_levels_shrink_params_and_macs(name):
    params, macs = [], []
    for k in (1, 2, 3, 4):
        model = models.create_model(name, prune_level=k, base_width=8)
        params.append(count_params(model))
        macs.append(fvcore_macs(model, (3, 64, 64)))
    assert params == sorted(set(params)), params
    assert macs == sorted(set(macs)), macs  # strictly increasing L1 < L2 < L3 < L4


@pytest.mark.parametrize("name", ["unetpp", "lfunet"])
@pytest.mark.parametrize("level", [1, 2, 3])
def test_weights_transfer_from_full_model_to_each_level(name, level):
    torch.manual_seed(3)
    full = models.create_model(name, base_width=8).eval()
    with torch.no_grad():  # move batch-norm statistics away from their defaults
        for m in full.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    pruned = models.create_model(name, base_width=8, prune_level=level).eval()
    pruned.load_from_full(full.state_dict())
    assert count_params(pruned) < count_params(full)
    x = _input(full, 32, 32)
    with torch.no_grad():
        full_heads = full.forward_heads(x)
        pruned_heads = pruned.forward_heads(x)
        out = pruned(x)
    assert len(pruned_heads) == level
    for a, b in zip(full_heads[:level], pruned_heads, strict=True):
        assert torch.equal(a, b)
    if full.head_merge == "mean":
        expected = full_heads[0]
        for h in full_heads[1:level]:
            expected = expected + h
        expected = expected / level
    else:
        expected = full_heads[level - 1]
    assert torch.equal(out, expected)


def test_transfer_from_model_without_deep_supervision_names_missing_heads():
    full = models.create_model("unetpp", base_width=8, deep_supervision=False)
    pruned = models.create_model("unetpp", base_width=8, prune_level=2)
    with pytest.raises(KeyError, match="unetpp: state dict lacks .*heads.l1"):
        pruned.load_from_full(full.state_dict())


@pytest.mark.parametrize("name", ["unetpp", "lfunet"])
@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_pruned_models_hold_the_shared_level_nodes(name, level):
    model = models.create_model(name, base_width=8, prune_level=level)
    assert list(model.decoder) == [f"x{i}_{j}" for i, j in level_nodes(level)]
    assert list(model.encoder) == [f"x{i}_0" for i in range(level + 1)]


# --- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_model_is_named_after_its_registered_name(name):
    assert models.create_model(name).model_name == name


def test_registered_constructor_called_directly_names_the_model_too():
    assert models.unet.unet_zhou2018().model_name == "unet_zhou2018"
    assert models.lfunet.lfunet_deng2023(prune_level=2).model_name == "lfunet_deng2023"


def test_family_class_used_directly_is_named_after_the_class():
    assert models.unet.UNet(base_width=4).model_name == "UNet"
    with pytest.raises(models.ModelConfigError, match=r"^LFUNet: base_width 12 is not divisible"):
        models.lfunet.LFUNet(base_width=12)


def test_outermost_building_name_wins():
    with building("outer"):
        with building("inner"):
            model = models.unet.UNet(base_width=4)
        assert models.create_model("unet", base_width=4).model_name == "outer"
    assert model.model_name == "outer"
    assert models.unet.UNet(base_width=4).model_name == "UNet"


# --- a bad model configuration ---------------------------------------------------------------


def test_config_errors_are_value_errors_and_unknown_names_key_errors():
    assert issubclass(models.ModelConfigError, ValueError)
    assert issubclass(models.UnknownModelError, models.ModelConfigError)
    assert issubclass(models.UnknownModelError, KeyError)


def test_unknown_model_lists_close_matches():
    with pytest.raises(models.UnknownModelError, match="close matches: lfunet") as info:
        models.create_model("lfunett")
    assert "lfunett" in str(info.value)
    assert isinstance(info.value, models.ModelConfigError)


@pytest.mark.parametrize("name", ALL)
def test_unknown_keyword_names_model_and_argument(name):
    with pytest.raises(models.ModelConfigError,
                       match=rf"^model '{name}' has no argument 'colour'; its arguments: in_channels, "):
        models.create_model(name, colour="red")


def test_unknown_keywords_are_all_named_and_the_known_ones_listed():
    with pytest.raises(models.ModelConfigError) as info:
        models.create_model("unet", groups=4, colour="red")
    assert str(info.value) == ("model 'unet' has no arguments 'groups', 'colour'; its arguments: "
                               "in_channels, num_classes, base_width, norm, dropout, up_mode, widths")


def test_unknown_keyword_is_caught_when_a_preset_is_called_directly():
    with pytest.raises(models.ModelConfigError, match="model 'unet3p_huang2020' has no argument 'groups'"):
        models.unet3p.unet3p_huang2020(groups=4)


def test_constructor_with_kwargs_must_name_its_class():
    def loose(**kwargs):
        return models.unet.UNet(**kwargs)

    with pytest.raises(TypeError, match=r"loose takes \*\*kwargs"):
        models.register_model(loose)
    assert "loose" not in models.list_models()


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("arg", ["in_channels", "num_classes", "base_width"])
def test_bad_common_value_names_model_and_argument(name, arg):
    with pytest.raises(models.ModelConfigError, match=rf"^{name}: {arg} must be a positive integer, got 0$"):
        models.create_model(name, **{arg: 0})


@pytest.mark.parametrize("name", ["lfunet", "lfunet_deng2023"])
def test_groups_must_divide_width(name):
    with pytest.raises(models.ModelConfigError,
                       match=rf"^{name}: base_width 12 is not divisible by groups 8$"):
        models.create_model(name, base_width=12)


@pytest.mark.parametrize("name", PRUNABLE)
@pytest.mark.parametrize("level", [0, 5])
def test_prune_level_out_of_range(name, level):
    with pytest.raises(models.ModelConfigError, match=f"^{name}: prune_level={level} is not allowed"):
        models.create_model(name, prune_level=level)


@pytest.mark.parametrize(
    "name,kwargs,message",
    [
        ("unet_zhou2018", {"dropout": 1.0}, "dropout must be a number in [0, 1), got 1.0"),
        ("unetpp_zhou2018", {"norm": "yes"}, "norm must be True or False, got 'yes'"),
        ("unetpp", {"up_mode": "nearest"}, "up_mode='nearest' is not allowed"),
        ("unet3p_huang2020", {"align_corners": 1}, "align_corners must be True or False, got 1"),
        ("lfunet_deng2023", {"skip_mode": "dense"}, "skip_mode='dense' is not allowed"),
        ("lfunet", {"deep_supervision": None}, "deep_supervision must be True or False, got None"),
        ("lfunet", {"groups": 0}, "groups must be a positive integer, got 0"),
    ],
)
def test_bad_value_names_model_and_argument(name, kwargs, message):
    with pytest.raises(models.ModelConfigError) as info:
        models.create_model(name, **kwargs)
    assert str(info.value).startswith(f"{name}: {message}")


# --- bad input ---------------------------------------------------------------------------------


#: the nearest valid height to 250 for each size multiple (16 for the zoo's own families)
NEAREST_250 = {8: 248, 16: 256, 32: 256, 64: 256}


@pytest.mark.parametrize("name", ALL)
def test_size_not_divisible_by_16_names_model_and_nearest_size(name):
    model = models.create_model(name).eval()
    m = model.size_multiple
    assert m == 16 or name in OUTSIDE
    with pytest.raises(ValueError, match=rf"^{name}: input size 250x64 is not divisible by {m}; "
                                          rf"nearest valid size {NEAREST_250[m]}x64$"):
        model(torch.zeros(1, model.in_channels, 250, 64))


@pytest.mark.parametrize("name", ALL)
def test_wrong_channel_count_is_named(name):
    model = models.create_model(name)
    c = model.in_channels
    with pytest.raises(ValueError, match=rf"^{name}: expected {c} input channels, got {c + 1}$"):
        model(torch.zeros(1, c + 1, 32, 32))


@pytest.mark.parametrize("name", ALL)
def test_wrong_rank_is_named(name):
    model = models.create_model(name)
    with pytest.raises(ValueError, match=rf"^{name}: expected a 4D input \(B, C, H, W\), got shape"):
        model.forward_heads(torch.zeros(model.in_channels, 32, 32))


@pytest.mark.parametrize(
    "kwargs,relation",
    [({"groups": 1}, "more"), ({"skip_mode": "nested"}, "fewer"),
     ({"share_transitions": False}, "more"), ({"deep_supervision": False}, "same")],
)
def test_lfunet_ablation_switches_change_the_model(kwargs, relation):
    base = count_params(models.create_model("lfunet"))
    ablated = models.create_model("lfunet", **kwargs)
    n = count_params(ablated)
    assert {"more": n > base, "fewer": n < base, "same": n == base}[relation], (n, base)
    heads = ablated.forward_heads(torch.zeros(1, 3, 32, 32))
    assert len(heads) == (1 if kwargs.get("deep_supervision") is False else 4)


def test_model_source_names_presets_and_refuses_unknown_sources():
    assert models.model_source("lfunet") == "lfubench"
    assert models.model_source("lfunet_deng2023") == "authors' preset"
    with pytest.raises(ValueError, match="source 'elsewhere' is not one of"):
        models.register_model(source="elsewhere")(lambda: None)
    with pytest.raises(models.UnknownModelError):
        models.model_source("no_such_model")
