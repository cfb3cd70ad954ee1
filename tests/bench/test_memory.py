"""Each model's own peak tensor memory (bench.memory): exact on small known graphs, at least the
weights, growing with the input, larger for a training step, and independent of the process RSS."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lfubench import models
from lfubench.bench.memory import MB, LiveTensors, model_peak_mb, traffic_bytes, weight_bytes

F32 = 4


def test_a_single_convolution_is_weights_plus_input_plus_output():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(2, 3, 16, 16)
    mem = model_peak_mb(conv, x)
    weights = (8 * 3 * 9 + 8) * F32
    out = 2 * 8 * 16 * 16 * F32
    assert weight_bytes(conv) == weights
    assert mem.peak_mb * MB == weights + x.numel() * F32 + out
    assert mem.written_mb * MB == out
    assert traffic_bytes(conv, x) == (weights + x.numel() * F32 + 2 * out, out)


def test_a_freed_intermediate_is_no_longer_counted():
    class TwoSteps(nn.Module):  # conv -> relu (a new tensor) -> * 2 (another): at most two alive
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 1, bias=False)

        def forward(self, x):
            y = torch.relu(self.conv(x))
            return y * 2

    x = torch.randn(1, 1, 32, 32)
    act = 4 * 32 * 32 * F32
    mem = model_peak_mb(TwoSteps(), x)
    # the conv output lives until relu's output exists, relu's until the product exists: two at once
    assert mem.peak_mb * MB == 4 * F32 + x.numel() * F32 + 2 * act
    assert mem.written_mb * MB == 3 * act


def test_tracker_counts_a_storage_once_and_frees_it():
    tracker = LiveTensors()
    with tracker:
        a = torch.ones(256)
        b = a.view(16, 16)  # a view: same storage
        a.add_(1)  # in place: same storage
        assert tracker.current == 256 * F32
        del a, b
    assert tracker.current == 0 and tracker.peak == 256 * F32


@pytest.mark.parametrize("name", ["lfunet", "unet", "unetpp_zhou2018"])
def test_model_peak_is_at_least_the_weights_and_grows_with_the_input(name):
    model = models.create_model(name)
    c = model.in_channels
    small = model_peak_mb(model, torch.randn(1, c, 32, 32))
    large = model_peak_mb(model, torch.randn(1, c, 64, 64))
    assert small.peak_mb >= small.weights_mb == weight_bytes(model) / MB
    assert large.peak_mb > small.peak_mb
    activations = (large.peak_mb - large.weights_mb, small.peak_mb - small.weights_mb)
    assert activations[0] > 2 * activations[1]  # four times the pixels
    train = model_peak_mb(model, torch.randn(1, c, 32, 32), mode="train")
    assert train.peak_mb > 3 * small.weights_mb  # weights + gradients + Adam's two moments
    assert train.peak_mb > small.peak_mb  # the backward keeps the forward's activations
    train_large = model_peak_mb(model, torch.randn(1, c, 64, 64), mode="train")
    assert train_large.peak_mb > train.peak_mb


def test_the_model_is_left_untouched_and_a_bad_mode_is_named():
    model = models.create_model("unet", base_width=4)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model_peak_mb(model, torch.randn(1, 3, 32, 32), mode="train")
    assert model.training and all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    with pytest.raises(ValueError, match="unknown mode 'eval'"):
        model_peak_mb(model, torch.randn(1, 3, 32, 32), mode="eval")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
def test_cuda_peak_counts_the_model_only():
    model = models.create_model("unet", base_width=8)
    x = torch.randn(1, 3, 64, 64, device="cuda")
    hog = torch.empty(2**28, dtype=torch.uint8, device="cuda")  # 256 MiB of another owner
    gpu = model_peak_mb(model, x)
    cpu = model_peak_mb(model, x.cpu())
    del hog
    assert gpu.weights_mb <= gpu.peak_mb < 2 * cpu.peak_mb + 64


@pytest.mark.parametrize("name", ["lfunet", "unet3p"])
def test_agrees_with_the_profilers_memory_events(name):
    """A second, independent count: torch.profiler's allocation and free events of the same forward,
    summed in time order, peak at the tracker's activations (its peak less weights and input)."""
    from torch.profiler import ProfilerActivity, profile

    model = models.create_model(name).eval()
    x = torch.randn(1, model.in_channels, 64, 64)
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model(x)
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    current = peak = 0
    for e in events:
        current += e.self_cpu_memory_usage
        peak = max(peak, current)
    mem = model_peak_mb(model, x)
    assert current == 0  # everything the forward allocated was freed
    assert (mem.peak_mb - mem.weights_mb - mem.input_mb) * MB == pytest.approx(peak, rel=0.02)
