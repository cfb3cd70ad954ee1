"""The outside baselines (extra ``baselines``): each is its library's network, built with the
documented arguments (same parameter count and state-dict layout as the library's own build),
keeps the zoo's contract, trains one step, evaluates, and channel-prunes with Torch-Pruning or
is refused in one line. Tests of a library that cannot be imported here are skipped."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from lfubench import models
from lfubench.bench.complexity import count_params, fvcore_macs
from lfubench.models._outside import require
from lfubench.models.nnunet import pool_count

from .outside_helpers import BASELINES, SMALL, importable, needs


def _nnunet_common(stages: int, features) -> dict:
    return dict(input_channels=3, n_stages=stages, features_per_stage=features, conv_op=nn.Conv2d,
                kernel_sizes=3, strides=(1,) + (2,) * (stages - 1), num_classes=3, conv_bias=True,
                norm_op=nn.InstanceNorm2d, norm_op_kwargs={"eps": 1e-5, "affine": True},
                nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True})


def _library_default(name: str) -> nn.Module:
    """What each library builds with the arguments the models' docstrings document (defaults:
    3 input channels, 3 classes, input size 256 where it matters)."""
    if name.startswith("nnunet"):
        from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet

        common = _nnunet_common(7, (32, 64, 128, 256, 512, 512, 512))
        if name == "nnunet_plainunet":
            return PlainConvUNet(**common, n_conv_per_stage=2, n_conv_per_stage_decoder=2)
        return ResidualEncoderUNet(**common, n_blocks_per_stage=(1, 3, 4, 6, 6, 6, 6),
                                   n_conv_per_stage_decoder=1)
    if name.startswith("monai"):
        from monai.networks import nets

        return {
            "monai_basicunet": lambda: nets.BasicUNet(spatial_dims=2, in_channels=3, out_channels=3),
            "monai_attentionunet": lambda: nets.AttentionUnet(
                spatial_dims=2, in_channels=3, out_channels=3, channels=(16, 32, 64, 128, 256),
                strides=(2, 2, 2, 2)),
            "monai_segresnet": lambda: nets.SegResNet(spatial_dims=2, in_channels=3, out_channels=3),
            "monai_dynunet": lambda: nets.DynUNet(
                spatial_dims=2, in_channels=3, out_channels=3, kernel_size=[3] * 7,
                strides=[1, 2, 2, 2, 2, 2, 2], upsample_kernel_size=[2] * 6),
        }[name]()
    import segmentation_models_pytorch as smp

    arch = {"smp_unet": smp.Unet, "smp_unetplusplus": smp.UnetPlusPlus}[name]
    return arch(encoder_weights=None, in_channels=3, classes=3)


def _layout(net: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in net.state_dict().items()]


def test_the_eight_baselines_are_registered_with_their_sources():
    assert {n: models.model_source(n) for n in BASELINES} == {
        "nnunet_plainunet": "nnU-Net", "nnunet_resenc": "nnU-Net",
        "monai_basicunet": "MONAI", "monai_attentionunet": "MONAI", "monai_segresnet": "MONAI",
        "monai_dynunet": "MONAI", "smp_unet": "smp", "smp_unetplusplus": "smp",
    }


@pytest.mark.parametrize("name", [pytest.param(n, marks=needs(n)) for n in BASELINES])
def test_defaults_are_exactly_the_library_network(name):
    torch.manual_seed(0)
    ours = models.create_model(name)
    theirs = _library_default(name)
    assert count_params(ours) == count_params(theirs)
    assert _layout(ours.net) == _layout(theirs)
    assert ours.config == {"name": name}
    rebuilt = models.create_model(**ours.config)
    assert _layout(rebuilt) == _layout(ours)


@pytest.mark.parametrize("encoder", ["resnet18", "resnet34", "mobilenet_v2", "efficientnet-b0"])
@pytest.mark.parametrize("name", [pytest.param(n, marks=needs(n)) for n in ("smp_unet", "smp_unetplusplus")])
def test_smp_encoders_match_the_library(name, encoder):
    import segmentation_models_pytorch as smp

    arch = {"smp_unet": smp.Unet, "smp_unetplusplus": smp.UnetPlusPlus}[name]
    theirs = arch(encoder, encoder_weights=None, in_channels=1, classes=2)
    ours = models.create_model(name, encoder=encoder, in_channels=1, num_classes=2)
    assert count_params(ours) == count_params(theirs)
    assert _layout(ours.net) == _layout(theirs)


@needs("smp_unet")
def test_smp_width_scales_the_decoder_only():
    import segmentation_models_pytorch as smp

    ours = models.create_model("smp_unet", base_width=4, encoder="resnet18")
    theirs = smp.Unet("resnet18", encoder_weights=None, in_channels=3, classes=3,
                      decoder_channels=(64, 32, 16, 8, 4))
    assert _layout(ours.net) == _layout(theirs)
    full = models.create_model("smp_unet", encoder="resnet18")
    assert count_params(ours.net.encoder) == count_params(full.net.encoder)


@pytest.mark.parametrize("size,stages", [(32, 4), (64, 5), (128, 6), (256, 7), (512, 8)])
def test_nnunet_planner_pools_down_to_a_4x4_feature_map(size, stages):
    assert pool_count(size) + 1 == stages
    assert size // 2 ** (stages - 1) == 4


@needs("nnunet_plainunet")
def test_nnunet_stages_and_widths_follow_the_input_size():
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    ours = models.create_model("nnunet_plainunet", input_size=32, in_channels=1, num_classes=2)
    assert ours.size_multiple == 8 and ours.stages == 4
    theirs = PlainConvUNet(**{**_nnunet_common(4, (32, 64, 128, 256)), "input_channels": 1, "num_classes": 2},
                           n_conv_per_stage=2, n_conv_per_stage_decoder=2)
    assert _layout(ours.net) == _layout(theirs)
    narrow = models.create_model("nnunet_plainunet", base_width=4)
    assert [s[0].output_channels for s in narrow.net.encoder.stages] == [4, 8, 16, 32, 64, 64, 64]


@needs("nnunet_resenc")
def test_resenc_presets_build_the_same_network_at_one_input_size():
    m = models.create_model("nnunet_resenc", input_size=64, base_width=8)
    l_ = models.create_model("nnunet_resenc", input_size=64, base_width=8, preset="L")
    assert _layout(m) == _layout(l_)
    assert l_.config["preset"] == "L"
    with pytest.raises(models.ModelConfigError, match=r"^nnunet_resenc: preset='XL' is not allowed"):
        models.create_model("nnunet_resenc", preset="XL")


@pytest.mark.parametrize("name", [pytest.param(n, marks=needs(n)) for n in BASELINES])
def test_contract_train_step_and_evaluation(name):
    kwargs, side = SMALL[name]
    torch.manual_seed(0)
    model = models.create_model(name, in_channels=2, num_classes=4, **kwargs)
    assert (model.in_channels, model.num_classes, model.model_name) == (2, 4, name)
    assert model.config == {"name": name, "in_channels": 2, "num_classes": 4, **kwargs}
    assert not hasattr(model, "prune_level")
    x = torch.randn(2, 2, side, side, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 4, (2, side, side), generator=torch.Generator().manual_seed(2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    heads = model.forward_heads(x)
    assert len(heads) == 1 and heads[0].shape == (2, 4, side, side)
    loss = nn.functional.cross_entropy(heads[0], y)
    loss.backward()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4, side, side)
    assert torch.isfinite(out).all()
    assert fvcore_macs(model, (2, side, side)) > 0


@pytest.mark.parametrize("name", [pytest.param(n, marks=needs(n)) for n in BASELINES])
def test_input_size_not_divisible_is_one_line(name):
    model = models.create_model(name).eval()
    m = model.size_multiple
    bad = 3 * m // 2 if m > 8 else 12
    with pytest.raises(ValueError, match=rf"^{name}: input size {bad}x{2 * m} is not divisible by {m}; "
                                         rf"nearest valid size \d+x{2 * m}$"):
        model(torch.zeros(1, model.in_channels, bad, 2 * m))


@pytest.mark.parametrize("name", ["nnunet_plainunet", "nnunet_resenc", "monai_dynunet"])
def test_planned_input_size_must_be_divisible_by_its_poolings(name):
    with pytest.raises(models.ModelConfigError,
                       match=rf"^{name}: input_size 200 is not divisible by 32 \(5 poolings\); "
                             r"nearest valid size 192$"):
        models.create_model(name, input_size=200)


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("arg", ["in_channels", "num_classes", "base_width"])
def test_bad_common_value_is_refused_before_the_library_is_needed(name, arg):
    with pytest.raises(models.ModelConfigError, match=rf"^{name}: {arg} must be a positive integer, got 0$"):
        models.create_model(name, **{arg: 0})


def test_missing_library_names_the_extra(tmp_path, monkeypatch):
    with pytest.raises(models.ModelConfigError) as info:
        require("smp_unet", "no_such_library_here", "no-such-library")
    assert str(info.value) == ("smp_unet: needs no-such-library, which is not installed; "
                               "pip install 'lfubench[baselines]'")
    (tmp_path / "broken_library_here.py").write_text("raise RuntimeError('operator x::y does not exist')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(models.ModelConfigError) as info:
        require("smp_unet", "broken_library_here", "broken-library")
    assert str(info.value) == ("smp_unet: needs broken-library, which failed to import (RuntimeError: "
                               "operator x::y does not exist); pip install 'lfubench[baselines]'")
    sys.modules.pop("broken_library_here", None)


# --- channel pruning with Torch-Pruning ---------------------------------------------------------

#: the baselines Torch-Pruning 1.6.1 cannot prune (its result's instance norms no longer match
#: the residual blocks' channels), refused in one line
REFUSED = {"nnunet_resenc"}

needs_tp = pytest.mark.skipif(not importable("torch_pruning"), reason="torch_pruning is not importable here")


@needs_tp
@pytest.mark.parametrize("name", [pytest.param(n, marks=needs(n)) for n in BASELINES])
def test_torch_pruning_halves_the_channels_or_refuses_in_one_line(name):
    kwargs, side = SMALL[name]
    torch.manual_seed(0)
    model = models.create_model(name, **kwargs).eval()
    if name in REFUSED:
        refusal = rf"^{name}: Torch-Pruning cannot prune this model \("
        with pytest.raises(models.ModelConfigError, match=refusal):
            models.prune_channels(model, 0.5)
        return
    pruned = models.prune_channels(model, 0.5)
    report = pruned.prune_report
    assert report.params_before == count_params(model) and report.params_after == count_params(pruned)
    assert report.params_after < 0.6 * report.params_before
    assert 0.3 < report.channel_ratio <= 0.5
    assert pruned.config is None and pruned.model_name == name and not pruned.training
    x = torch.randn(2, model.in_channels, side, side)
    with torch.no_grad():
        assert pruned(x).shape == model(x).shape
    pruned.train()
    pruned(x).square().mean().backward()  # it trains: every kept parameter gets a gradient
    assert all(p.grad is not None for n, p in pruned.named_parameters() if "seg_layers" not in n)
    assert count_params(model) == count_params(models.create_model(name, **kwargs))  # the original untouched


@needs_tp
@needs("monai_basicunet")
def test_torch_pruning_checks_arguments_and_bn_importance():
    model = models.create_model("monai_basicunet", base_width=8)
    with pytest.raises(models.ModelConfigError, match=r"^monai_basicunet: prune ratio must be a number"):
        models.prune_channels(model, 0.95)
    with pytest.raises(models.ModelConfigError,
                       match=r"^monai_basicunet: importance 'bn' needs batch norm, and the model has none$"):
        models.prune_channels(model, 0.5, importance="bn")
    a = models.prune_channels(model, 0.5, importance="random", seed=1)
    b = models.prune_channels(model, 0.5, importance="random", seed=1)
    assert _layout(a) == _layout(b)
    g = models.prune_channels(model, 0.5, scope="global")
    assert g.prune_report.scope == "global" and count_params(g) < count_params(model)


def test_a_model_planned_for_its_input_size_is_given_the_size_it_will_meet():
    assert models.sized_arguments("nnunet_resenc", 64) == {"input_size": 64}
    assert models.sized_arguments("monai_dynunet", 128) == {"input_size": 128}
    assert models.sized_arguments("unet", 64) == {}
    assert models.sized_arguments("no_such_model", 64) == {}  # building it says why


@needs("nnunet_plainunet")
def test_a_plan_builds_an_nnunet_baseline_for_its_dataset_size(tmp_path):
    from lfubench.studies.pipeline import build_model
    from lfubench.studies.plan import check_model, load_plan

    plan_file = tmp_path / "p.toml"
    plan_file.write_text('name = "p"\n[train]\nsteps = 1\n[[datasets]]\nname = "lits"\n'
                         'kind = "phantom-lits"\ncases = 4\nshape = [32, 32, 8]\nsize = 32\n'
                         '[[models]]\nname = "nnunet_plainunet"\nbase_width = 4\n')
    plan = load_plan(plan_file)  # at the default input_size (256) a 32x32 input would be refused
    spec, dataset = plan.models[0], plan.datasets[0]
    assert check_model(spec, plan.datasets) is None
    model = build_model(spec, dataset, in_channels=3)
    assert model.config["input_size"] == 32
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)


@needs("monai_basicunet")
def test_a_plan_refuses_init_mode_pruning_of_a_model_without_lfubench_channel_description(tmp_path):
    from lfubench.studies.plan import check_model, load_plan

    plan_file = tmp_path / "p.toml"
    entry = '[[models]]\nname = "monai_basicunet"\nbase_width = 8\nprune_ratio = 0.5\n'
    plan_file.write_text('name = "p"\n[train]\nsteps = 1\n[[datasets]]\nname = "lits"\n'
                         'kind = "phantom-lits"\ncases = 4\nshape = [32, 32, 8]\nsize = 32\n'
                         + entry + 'prune_mode = "init"\n' + entry)
    with pytest.raises(Exception, match="prune_mode 'init' rebuilds .* 'monai_basicunet' has not"):
        load_plan(plan_file)
    plan_file.write_text(plan_file.read_text().replace('prune_mode = "init"\n' + entry, ""))
    plan = load_plan(plan_file)
    assert check_model(plan.models[0], plan.datasets) is None  # finetune mode prunes it in place


@needs("smp_unet")
@needs("nnunet_resenc")
@needs("monai_basicunet")
def test_the_shipped_baselines_plan_loads_on_data_in_the_real_layouts(tmp_path):
    from lfubench.bench.data import write_phantom
    from lfubench.studies.plan import load_plan
    from lfubench.studies.shipped import locate

    roots = {name: tmp_path / name for name in ("lits", "brats")}
    write_phantom("lits", roots["lits"], cases=3, shape=(64, 64, 8), seed=0)
    write_phantom("brats", roots["brats"], cases=3, shape=(64, 64, 16), seed=0)
    path, shipped = locate("baselines", "plan")
    plan = load_plan(path, overrides=[f"datasets.{n}.root={r}" for n, r in roots.items()])
    assert shipped and len(plan.items()) == 7 * 2
    assert plan.tune.lr == [0.001, 0.003, 0.01]
    by_label = {m.label: m for m in plan.models}
    assert {models.model_source(m.name) for m in plan.models} == {"lfubench", "nnU-Net", "MONAI", "smp"}
    # the iso-cost entries are the widths benchmarks/baselines.py finds closest to LFU-Net w8
    lfunet = count_params(models.create_model("lfunet", base_width=8))
    iso = count_params(models.create_model("monai_basicunet", **by_label["MONAI BasicUNet w5"].kwargs))
    assert abs(iso - lfunet) / lfunet < 0.05
