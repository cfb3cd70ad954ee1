"""Latency and memory harness: statistics, tidy rows with the environment record, failures."""

from __future__ import annotations

import mmap
import re

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lfubench import models
from lfubench.bench.environment import environment_record, git_commit
from lfubench.bench.latency import ROW_KEYS, PeakRSS, Timing, is_oom, profile, summarize

FAST = Timing(min_warmup=1, window=1, max_warmup=2, min_iters=2, max_iters=3, max_time_s=0.0)
NO_CUDA = "CUDA is not available on this machine (CPU-only torch build or no GPU): CUDA paths not run"
ENV_KEYS = {
    "device_type",
    "device_name",
    "driver",
    "cuda",
    "cudnn",
    "torch",
    "python",
    "cpu",
    "threads",
    "os",
    "git_commit",
    "git_dirty",
}


class Failing(nn.Module):
    """A convolution whose forward raises ``exc`` from batch size ``from_batch`` on."""

    def __init__(self, exc: Exception, from_batch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.exc, self.from_batch = exc, from_batch

    def forward(self, x):
        if x.shape[0] >= self.from_batch:
            raise self.exc
        return self.conv(x)


def test_summarize_matches_numpy_percentiles():
    times = [float(t) for t in range(1, 11)]  # 1..10 ms
    s = summarize(times, batch=4)
    assert s["iters"] == 10
    assert s["median_ms"] == 5.5
    assert s["p90_ms"] == pytest.approx(9.1)
    assert s["p99_ms"] == pytest.approx(9.91)
    assert s["iqr_ms"] == pytest.approx(7.75 - 3.25)
    assert s["images_per_s"] == pytest.approx(4 * 1000 / 5.5)
    assert s["min_ms"] == 1.0 and s["max_ms"] == 10.0 and s["mean_ms"] == pytest.approx(np.mean(times))


def test_timing_bounds_are_checked():
    with pytest.raises(ValueError, match="invalid timing bounds"):
        Timing(min_iters=5, max_iters=2)


def test_rows_are_tidy_and_carry_the_environment_record():
    model = models.create_model("lfunet", base_width=8)
    before = torch.get_num_threads()
    rows = profile(
        model,
        (3, 32, 32),
        name="lfunet",
        batch_sizes=[1, 2],
        precisions=["fp32", "bf16"],
        modes=["inference", "train"],
        threads=1,
        timing=FAST,
        extra={"gmacs": 0.1},
    )
    assert torch.get_num_threads() == before  # the fixed thread count is restored afterwards
    assert [(r["batch"], r["precision"], r["mode"]) for r in rows] == [
        (b, p, m) for b in (1, 2) for p in ("fp32", "bf16") for m in ("inference", "train")
    ]
    for r in rows:
        assert r["status"] == "ok", r["error"]
        assert set(ROW_KEYS) | {"gmacs"} <= set(r)
        assert {f"env_{k}" for k in ENV_KEYS} <= set(r)
        assert r["threads"] == r["env_threads"] == 1
        assert r["env_torch"] == torch.__version__
        assert r["env_git_commit"] == "unknown" or re.fullmatch(r"[0-9a-f]{40}", r["env_git_commit"])
        assert 2 <= r["iters"] <= 3
        assert 0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["images_per_s"] == pytest.approx(r["batch"] * 1000 / r["median_ms"])
        assert r["peak_rss_mb"] > 0 and "peak RSS" in r["memory_convention"]
        assert r["peak_allocated_mb"] is None and r["timer"].startswith("time.perf_counter")
    assert len({tuple(sorted(r)) for r in rows}) == 1  # same columns in every row
    frame = pd.DataFrame(rows)
    assert frame.shape == (8, len(rows[0]))


def test_torch_rows_carry_runtime_agreement_model_memory_and_share_of_peak():
    model = models.create_model("unet", base_width=4)
    weights_mb = sum(p.numel() for p in model.parameters()) * 4 / 2**20
    rows = profile(model, (3, 32, 32), batch_sizes=[1, 4], precisions=["fp32", "bf16"], threads=1,
                   timing=FAST, extra={"gmacs": 0.5})
    by = {(r["batch"], r["precision"], r["mode"]): r for r in rows}
    for r in rows:
        assert r["status"] == "ok", r["error"]
        assert (r["runtime"], r["quantize"], r["provider"]) == ("torch", "none", "eager")
        assert r["runtime_version"] == torch.__version__ and r["model_file_mb"] is None
        assert r["model_peak_mb"] > weights_mb and "live tensor storages" in r["model_memory_convention"]
        assert r["peak_gmacs_per_s"] > 0 and r["bandwidth_gb_s"] > 0 and "torch.mm" in r["hardware_method"]
        assert r["energy_note"]
    for batch in (1, 4):
        fp32, bf16 = by[(batch, "fp32", "inference")], by[(batch, "bf16", "inference")]
        assert fp32["max_abs_diff"] == 0.0 and fp32["argmax_agreement"] == 1.0  # the reference itself
        assert 0 < bf16["max_abs_diff"] < 1.0 and bf16["precision_used"] == "bf16 (torch.autocast)"
        train = by[(batch, "fp32", "train")]
        assert train["model_peak_mb"] > 3 * weights_mb > fp32["model_peak_mb"] - weights_mb
        assert by[(batch, "fp32", "train")]["max_abs_diff"] is None
        assert by[(batch, "fp32", "train")]["pct_of_peak"] is None  # the forward's MACs are not a step's
        assert fp32["pct_of_peak"] == pytest.approx(
            100 * 0.5 * batch / (fp32["median_ms"] / 1e3) / fp32["peak_gmacs_per_s"])
    assert by[(4, "fp32", "inference")]["model_peak_mb"] > by[(1, "fp32", "inference")]["model_peak_mb"]


def test_model_is_left_untouched():
    model = models.create_model("unet", base_width=4)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    profile(model, (3, 32, 32), modes=["train"], timing=FAST, channels_last=True)
    assert model.training and all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


@pytest.mark.parametrize(
    "exc,status",
    [
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"), "oom"),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 TB"), "oom"),
        (ValueError("shape mismatch in the forward"), "error"),
    ],
)
def test_exception_in_measured_forward_is_recorded_and_the_run_goes_on(exc, status):
    rows = profile(
        Failing(exc, from_batch=2),
        (3, 16, 16),
        name="failing",
        batch_sizes=[1, 2, 4],
        modes=["inference", "train"],
        timing=FAST,
    )
    assert [r["status"] for r in rows] == ["ok", "ok", status, status, status, status]
    assert all(type(exc).__name__ in r["error"] for r in rows[2:])
    assert all(r["median_ms"] is None and r["iters"] is None for r in rows[2:])
    assert rows[0]["median_ms"] > 0


def test_failure_during_warm_up_of_a_later_iteration_is_recorded():
    calls = {"n": 0}

    class Flaky(nn.Module):
        def forward(self, x):
            calls["n"] += 1
            if calls["n"] == 3:
                raise torch.cuda.OutOfMemoryError("out of memory")
            return x * 2

    rows = profile(Flaky(), (1, 4, 4), name="flaky", modes=["inference"], batch_sizes=[1, 1], timing=FAST,
                   hardware=False, energy=False)  # forwards: the reference, the compared output, warm-up
    assert [r["status"] for r in rows] == ["oom", "ok"]
    assert rows[0]["warmup_iters"] is None and rows[1]["max_abs_diff"] == 0.0


def test_is_oom():
    assert is_oom(torch.cuda.OutOfMemoryError("x")) and is_oom(MemoryError())
    assert not is_oom(ValueError("bad shape"))


def test_peak_rss_sees_an_allocation_inside_the_window():
    size = 64 * 2**20
    rss = PeakRSS().start()
    block = mmap.mmap(-1, size)  # fresh anonymous pages: resident once touched, whatever malloc holds
    for offset in range(0, size, 4096):
        block[offset] = 1
    peak = rss.stop()
    block.close()
    assert rss.method
    assert peak - rss.start_mb >= 48


def test_environment_record():
    env = environment_record("cpu")
    assert ENV_KEYS <= set(env)
    assert env["device_type"] == "cpu" and env["driver"] == "n/a"
    assert env["device_name"] == env["cpu"] and env["cpu"]
    commit, dirty = git_commit()
    assert env["git_commit"] == commit and env["git_dirty"] == dirty


def test_unknown_precision_is_named():
    with pytest.raises(ValueError, match="unknown precision or mode 'fp8'"):
        profile(nn.Identity(), (1, 4, 4), precisions=["fp8"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_request_on_cpu_only_machine_fails_clearly():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        profile(nn.Identity(), (1, 4, 4), device="cuda")


# --- CUDA -------------------------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)


@cuda
def test_cuda_rows_report_events_and_peak_memory():
    model = models.create_model("unet", base_width=8)
    rows = profile(
        model, (3, 64, 64), device="cuda", batch_sizes=[1, 4], precisions=["fp32", "fp16"], timing=FAST
    )
    for r in rows:
        assert r["status"] == "ok", r["error"]
        assert r["timer"].startswith("CUDA events") and r["cudnn_benchmark"] is True
        assert r["peak_allocated_mb"] > 0 and r["peak_reserved_mb"] >= r["peak_allocated_mb"]
        assert r["env_device_type"] == "cuda" and r["env_cuda"] != "n/a" and r["env_driver"]
    train = {(r["batch"], r["precision"]): r["peak_allocated_mb"] for r in rows if r["mode"] == "train"}
    infer = {(r["batch"], r["precision"]): r["peak_allocated_mb"] for r in rows if r["mode"] == "inference"}
    assert all(train[k] > infer[k] for k in train)  # gradients and Adam state on top of the forward


@cuda
def test_cuda_out_of_memory_is_recorded_and_the_run_goes_on():
    class Hog(nn.Module):
        def forward(self, x):
            if x.shape[0] > 1:
                torch.empty(2**45, dtype=torch.uint8, device=x.device)  # 32 TiB
            return x + 1

    rows = profile(
        Hog(), (1, 8, 8), name="hog", device="cuda", batch_sizes=[2, 1], modes=["inference"], timing=FAST
    )
    assert [r["status"] for r in rows] == ["oom", "ok"]
    assert "OutOfMemoryError" in rows[0]["error"]
