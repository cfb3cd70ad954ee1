"""The device's limits (bench.hardware): measured once, a row's share of them, and energy counters."""

from __future__ import annotations

import pytest
import torch

from lfubench.bench.hardware import EnergyMeter, HardwareLimit, achieved, hardware_limit


def test_the_limit_is_measured_once_per_process():
    first = hardware_limit("cpu", threads=1, n=256, copy_mb=8)
    assert first.peak_gmacs_per_s > 0 and first.bandwidth_gb_s > 0
    assert "torch.mm 256x256" in first.method and "8 MiB copy" in first.method and "1 thread" in first.method
    assert "3x3 conv 256->256" in first.method
    assert hardware_limit("cpu", threads=1, n=256, copy_mb=8) is first
    assert torch.get_num_threads() >= 1


def test_achieved_share_of_peak_and_intensity():
    limit = HardwareLimit("cpu", 1, peak_gmacs_per_s=100.0, bandwidth_gb_s=10.0, method="test")
    got = achieved(gmacs_per_image=2.0, batch=4, median_ms=400.0, limit=limit, bytes_moved=1e9)
    assert got["achieved_gmacs_per_s"] == pytest.approx(20.0)  # 2 GMAC x 4 images / 0.4 s
    assert got["pct_of_peak"] == pytest.approx(20.0)
    assert got["arithmetic_intensity"] == pytest.approx(2.0)  # 2e9 MACs / 1e9 bytes
    assert got["roofline_gmacs_per_s"] == pytest.approx(20.0)  # bandwidth-bound: 2 x 10 GB/s
    high = achieved(2.0, 1, 100.0, limit, bytes_moved=1e6)
    assert high["roofline_gmacs_per_s"] == 100.0  # compute-bound
    assert set(achieved(None, 1, None, limit, None).values()) == {None}


def _fake_rapl(root, energy_uj, max_uj=10**9):
    zone = root / "intel-rapl:0"
    (zone / "intel-rapl:0:0").mkdir(parents=True)  # a sub-zone: not summed
    (zone / "energy_uj").write_text(str(energy_uj))
    (zone / "max_energy_range_uj").write_text(str(max_uj))
    (zone / "intel-rapl:0:0" / "energy_uj").write_text("5")
    return zone / "energy_uj"


def test_rapl_joules_per_image_over_a_window(tmp_path):
    counter = _fake_rapl(tmp_path, energy_uj=10**9 - 500_000)  # wraps during the window

    def step():  # each iteration "uses" 0.25 J
        value = (int(counter.read_text()) + 250_000) % 10**9
        counter.write_text(str(value))

    meter = EnergyMeter("cpu", powercap=tmp_path)
    assert meter.available and "RAPL energy_uj of intel-rapl:0" in meter.source
    joules = meter.measure(step, batch=2, window_s=0.05)
    assert joules == pytest.approx(0.125)  # 0.25 J per iteration of 2 images


def test_no_counter_gives_no_value_and_says_why(tmp_path):
    meter = EnergyMeter("cpu", powercap=tmp_path / "absent")
    assert not meter.available and "no RAPL domains" in meter.reason
    assert meter.measure(lambda: None, batch=1) is None
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "max_energy_range_uj").write_text("100")  # energy_uj missing: unreadable
    meter = EnergyMeter("cpu", powercap=tmp_path)
    assert not meter.available and "RAPL energy_uj not readable" in meter.reason


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
def test_nvml_energy_on_cuda():
    meter = EnergyMeter("cuda")
    if not meter.available:
        pytest.skip(meter.reason)
    x = torch.randn(4096, 4096, device="cuda")
    joules = meter.measure(lambda: x @ x, batch=1, window_s=1.0)
    assert joules > 0
