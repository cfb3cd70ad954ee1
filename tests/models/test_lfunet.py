"""LFU-Net: skips against the authors' forward, the preset's layers, the de-duplicated forward
against the authors' order of work, and the ablation switches."""

from __future__ import annotations

import re

import pytest
import torch

from lfubench import models
from lfubench.bench.complexity import count_params, fvcore_macs
from lfubench.models.lfunet import node_skips

# The concatenated inputs of every decoder node in the authors' forward (dengdy22/U-Nets,
# LFU-Net), written as transition(resample(source)). Their `stagep` is `stage0p` and their
# `stagezp` is `stage0zp`; `d<f>` is max pooling by f, `u<f>` bilinear upsampling by f.
AUTHORS_SKIPS = {
    "x0_1": "p0(x0_0) p1(u2(x1_0))",
    "x1_1": "zp0(d2(x0_0)) p1(x1_0) p2(u2(x2_0))",
    "x0_2": "p0(x0_0) zp0(x0_1) zp2(u4(x2_0)) p0(u2(x1_1))",
    "x2_1": "zp0(d4(x0_0)) zp1(d2(x1_0)) p2(x2_0) p3(u2(x3_0))",
    "x1_2": "zp0(d2(x0_0)) p1(x1_0) zp0(x1_1) zp3(u4(x3_0)) p0(u2(x2_1))",
    "x0_3": "p0(x0_0) zp0(x0_1) zp0(x0_2) zp3(u8(x3_0)) zp0(u4(x2_1)) p0(u2(x1_2))",
    "x3_1": "zp0(d8(x0_0)) zp1(d4(x1_0)) zp2(d2(x2_0)) p3(x3_0) p4(u2(x4_0))",
    "x2_2": "zp0(d4(x0_0)) zp1(d2(x1_0)) p2(x2_0) zp0(x2_1) zp4(u4(x4_0)) p0(u2(x3_1))",
    "x1_3": "zp0(d2(x0_0)) p1(x1_0) zp0(x1_1) zp0(x1_2) zp4(u8(x4_0)) zp0(u4(x3_1)) p0(u2(x2_2))",
    "x0_4": "p0(x0_0) zp0(x0_1) zp0(x0_2) zp0(x0_3) zp4(u16(x4_0)) zp0(u8(x3_1)) zp0(u4(x2_2)) "
            "p0(u2(x1_3))",
}


def _render(skip) -> str:
    src = f"x{skip.source[0]}_{skip.source[1]}"
    if skip.op != "none":
        src = f"{skip.op[0]}{skip.factor}({src})"
    return f"{skip.transition}({src})"


@pytest.mark.parametrize("node", sorted(AUTHORS_SKIPS))
def test_skips_follow_the_authors_forward(node):
    i, j = map(int, re.findall(r"\d", node))
    assert " ".join(_render(s) for s in node_skips(i, j)) == AUTHORS_SKIPS[node]


def test_authors_preset_layers():
    m = models.create_model("lfunet_deng2023")
    assert sorted(m.transitions) == sorted([f"p{i}" for i in range(5)] + [f"zp{i}" for i in range(5)])
    assert m.transitions["p4"].in_channels == 128 and m.transitions["p4"].groups == 8
    assert m.encoder["x0_0"][0][0].groups == 1  # the first conv sees the raw 3-channel input
    assert m.encoder["x0_0"][1][0].groups == 8
    assert m.decoder["x0_4"][0][0].in_channels == 64  # 8 skips of 8 channels
    assert m.head.in_channels == 8 and m.head.out_channels == 1 and m.head.kernel_size == (1, 1)
    assert m.head_merge == "mean" and m.deep_supervision and m.prune_level == 4


@pytest.mark.parametrize("kwargs", [{}, {"prune_level": 3}, {"skip_mode": "nested"}, {"base_width": 16}])
def test_deduplicated_forward_equals_the_authors_order_of_work(kwargs):
    """lfubench's forward with ``dedupe`` on (each transition output computed once) gives the
    same bits as with ``dedupe`` off (every skip recomputed, the authors' order of work).

    Both are lfubench's code; agreement with the authors' topology is checked by
    ``test_skips_follow_the_authors_forward``.
    """
    torch.manual_seed(0)
    model = models.create_model("lfunet_deng2023", **kwargs).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        fast = model(x)
        model.dedupe = False
        slow = model(x)
    assert torch.equal(fast, slow)


def test_deduplicated_forward_needs_fewer_macs():
    model = models.create_model("lfunet_deng2023")
    fast = fvcore_macs(model, (3, 256, 256))
    model.dedupe = False
    authors = fvcore_macs(model, (3, 256, 256))
    # p0(x0_0) is computed 4 times, p1(x1_0) 3 times, zp0(d2(x0_0)) 3 times, ... in the authors' order
    assert fast < authors
    # each repeated transition conv at full resolution costs 8*1*9 MACs per pixel
    assert authors - fast >= 3 * 8 * 9 * 256 * 256


def test_share_transitions_false_gives_each_skip_its_own_conv():
    shared = models.create_model("lfunet")
    own = models.create_model("lfunet", share_transitions=False)
    assert len(shared.transitions) == 10
    assert len(own.transitions) == sum(len(v) for v in own.skips.values()) == 50
    assert count_params(own) > count_params(shared)


def test_nested_mode_has_only_unetpp_skips():
    m = models.create_model("lfunet", skip_mode="nested")
    assert [_render(s) for s in m.skips[0, 3]] == ["p0(x0_0)", "zp0(x0_1)", "zp0(x0_2)", "p0(u2(x1_2))"]
    assert m.decoder["x0_4"][0][0].in_channels == 5 * 8
