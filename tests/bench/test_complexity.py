"""Complexity: parameter counts and the four MAC counters against analytic formulas."""

from __future__ import annotations

import logging

import pytest
from torch import nn

from lfubench import models
from lfubench.bench.complexity import (
    COUNTERS,
    count_params,
    fvcore_macs,
    mac_report,
    param_counts,
    report_rows,
    used_parameters,
)


class Wrap(nn.Module):
    def __init__(self, fn, *mods):
        super().__init__()
        self.mods = nn.ModuleList(mods)
        self.fn = fn

    def forward(self, x):
        return self.fn(self, x)


def _report(module, shape):
    r = mac_report(module, shape, name="probe", with_params=False)
    assert r.errors == {}
    return r


# --- analytic MACs of single ops under each counter's rule -----------------------------------


def test_plain_conv():
    conv = nn.Conv2d(4, 6, 3, padding=1)  # 6*4*9 weights per output pixel, 8x8 output
    r = _report(conv, (4, 8, 8))
    weights, bias = 6 * 4 * 9 * 64, 6 * 64
    assert r.totals == {
        "fvcore": weights,
        "ptflops-pytorch": weights + bias,
        "ptflops-aten": weights + bias,
        "flop_counter": weights,
    }
    assert r.flop_counter_flops == 2 * weights
    assert r.by_category["conv"] == dict.fromkeys(COUNTERS, weights)
    assert r.by_category["conv bias"] == {
        "fvcore": 0,
        "ptflops-pytorch": bias,
        "ptflops-aten": bias,
        "flop_counter": 0,
    }


def test_grouped_conv():
    conv = nn.Conv2d(8, 16, 3, padding=1, groups=4, bias=False)  # each output sees 8/4 = 2 inputs
    r = _report(conv, (8, 8, 8))
    assert r.totals == dict.fromkeys(COUNTERS, 16 * 2 * 9 * 64)
    assert r.library_conv == {"fvcore": 16 * 2 * 9 * 64, "flop_counter": 16 * 2 * 9 * 64}


def test_transposed_conv_counts_per_input_pixel():
    deconv = nn.ConvTranspose2d(4, 2, 2, stride=2)  # 8x8 -> 16x16; 4*2*2*2 MACs per *input* pixel
    r = _report(deconv, (4, 8, 8))
    weights, bias = 4 * 2 * 4 * 64, 2 * 16 * 16
    assert r.totals == {
        "fvcore": weights,
        "ptflops-pytorch": weights + bias,
        "ptflops-aten": weights + bias,
        "flop_counter": weights,
    }


@pytest.mark.parametrize("align_corners", [True, False])
def test_bilinear_upsampling(align_corners):
    up = Wrap(
        lambda self, x: nn.functional.interpolate(
            x, scale_factor=2, mode="bilinear", align_corners=align_corners
        )
    )
    r = _report(up, (3, 8, 8))
    out = 3 * 16 * 16
    # fvcore: 4 per output element (four-tap interpolation); ptflops: 1 per output element
    assert r.totals == {"fvcore": 4 * out, "ptflops-pytorch": out, "ptflops-aten": 0, "flop_counter": 0}
    assert r.ignored["ptflops-aten"] == ["upsampling"] and r.ignored["flop_counter"] == ["upsampling"]


def test_relu_module_is_counted_twice_by_ptflops_pytorch():
    m = nn.Sequential(nn.Conv2d(2, 2, 1, bias=False), nn.BatchNorm2d(2), nn.ReLU(inplace=True))
    r = _report(m, (2, 4, 4))
    n = 2 * 16
    assert r.by_category["batch norm"]["fvcore"] == 2 * n  # eval batch norm with affine: 2 per element
    assert r.by_category["activation"] == {
        "fvcore": 0,
        "ptflops-pytorch": 2 * n,
        "ptflops-aten": 0,
        "flop_counter": 0,
    }
    assert "activation" in r.ignored["fvcore"]


def test_max_pool_and_addition_are_listed_as_ignored_by_fvcore(caplog):
    m = Wrap(lambda self, x: nn.functional.max_pool2d(x, 2, ceil_mode=True) + 1.0)
    with caplog.at_level(logging.WARNING):
        r = _report(m, (3, 9, 9))
    assert r.fvcore_unsupported == {}
    assert not [rec for rec in caplog.records if "nsupported" in rec.getMessage()]
    assert r.totals["fvcore"] == 0
    assert r.totals["ptflops-pytorch"] == 3 * 81  # patched F.max_pool2d: input numel; `+` not patched
    assert {"pooling", "addition"} <= set(r.ignored["fvcore"])


# --- the zoo ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in models.list_models()  # lfubench's own families and presets
                                  if models.model_source(n) not in models.OUTSIDE_SOURCES])
def test_zoo_conv_macs_agree_and_rules_explain_every_counter(name, caplog):
    model = models.create_model(name)
    shape = (model.in_channels, 32, 32)
    with caplog.at_level(logging.WARNING):
        r = mac_report(model, shape, name=name, with_params=False)
    assert r.errors == {}
    conv = r.by_category["conv"]
    assert len(set(conv.values())) == 1, conv  # the convolutions' multiply-adds: identical everywhere
    dead = r.by_category.get("conv (result unused)", {}).get("flop_counter", 0)  # executed, fvcore drops it
    assert r.library_conv == {"fvcore": conv["fvcore"], "flop_counter": conv["flop_counter"] + dead}
    assert r.unexplained == dict.fromkeys(COUNTERS, 0)
    assert r.fvcore_unsupported == {}  # no "unsupported operator" for any zoo model
    assert [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.WARNING] == []


def test_unused_heads_are_counted_only_by_the_executing_counters():
    model = models.create_model("unetpp", base_width=8)  # deep supervision, returns the last head
    r = mac_report(model, (3, 32, 32), with_params=False)
    assert r.fvcore_uncalled == ["heads.l1", "heads.l2", "heads.l3"]
    dead = 3 * 8 * 3 * 32 * 32  # three unused 1x1 heads, 8 -> 3 channels
    assert r.by_category["conv (result unused)"] == {
        "fvcore": 0,
        "ptflops-pytorch": dead,
        "ptflops-aten": dead,
        "flop_counter": dead,
    }
    assert r.by_category["conv bias (result unused)"]["ptflops-aten"] == 3 * 3 * 32 * 32


def test_authors_lfunet_reconciliation():
    model = models.create_model("lfunet_deng2023")
    model.dedupe = False
    r = mac_report(model, (3, 64, 64), with_params=False)
    cat = r.by_category
    assert cat["upsampling"]["fvcore"] == 4 * cat["upsampling"]["ptflops-pytorch"]
    assert cat["activation"]["ptflops-pytorch"] == cat["batch norm"]["fvcore"]  # every BN feeds a ReLU
    assert (
        r.totals["fvcore"] > r.totals["ptflops-pytorch"] > r.totals["ptflops-aten"] > r.totals["flop_counter"]
    )
    rows = report_rows(r)
    assert {row["counter"] for row in rows} == set(COUNTERS)
    assert (
        sum(
            row["macs"]
            for row in rows
            if row["counter"] == "fvcore" and row["category"] not in ("total (library)", "unexplained")
        )
        == r.totals["fvcore"]
    )


def test_fvcore_macs_of_the_authors_lfunet_at_256():
    model = models.create_model("lfunet_deng2023")
    assert fvcore_macs(model, (3, 256, 256)) == 540_844_032  # de-duplicated forward
    model.dedupe = False
    assert fvcore_macs(model, (3, 256, 256)) == 579_477_504  # the authors' order of work


# --- parameters -------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [1, 2, 3])
def test_used_params_of_pruned_unetpp_exclude_the_unused_heads(level):
    model = models.create_model("unetpp", base_width=8, prune_level=level)
    counts = param_counts(model, (3, 32, 32))
    head = 8 * 3 + 3  # a 1x1 conv 8 -> 3 classes with bias
    assert counts.total == count_params(model)
    assert counts.used == counts.total - (level - 1) * head
    mean = models.create_model("unetpp", base_width=8, prune_level=level, head_merge="mean")
    assert param_counts(mean, (3, 32, 32)).used == count_params(mean)


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_used_params_of_pruned_lfunet_count_shared_layers_once(level):
    full = models.create_model("lfunet")
    pruned = models.create_model("lfunet", prune_level=level)
    counts = param_counts(pruned, (3, 32, 32))
    assert counts.used == counts.total == count_params(pruned)
    # the pruned model is the subset of the full model's weights under the same names
    assert counts.used == sum(full.state_dict()[k].numel() for k, _ in pruned.named_parameters())
    assert len(used_parameters(pruned, (3, 32, 32))) == len(list(pruned.parameters()))


def test_uncalled_and_frozen_parameters():
    conv, spare = nn.Conv2d(3, 4, 3), nn.Linear(5, 5)
    model = Wrap(lambda self, x: self.mods[0](x) + self.mods[0](x), conv, spare)  # conv shared, spare unused
    conv.bias.requires_grad_(False)
    counts = param_counts(model, (3, 8, 8))
    assert counts.total == 4 * 3 * 9 + 4 + 30
    assert counts.trainable == counts.total - 4
    assert counts.used == 4 * 3 * 9 + 4
    assert all(p.device.type == "cpu" for p in model.parameters())  # the model itself is untouched
