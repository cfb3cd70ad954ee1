"""Training loop: learning, determinism, divergence, checkpoints, loss conventions."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.utils.data import TensorDataset

from lfubench import models
from lfubench.bench.errors import OptionError
from lfubench.bench.losses import DiceCELoss
from lfubench.bench.train import TrainConfig, TrainingDiverged, lr_factor, train
from lfubench.studies.plan import PlanError, load_plan

CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason="needs a CUDA GPU (none visible to torch here)")


def _disks(n: int, size: int = 32, seed: int = 0) -> TensorDataset:
    """Noisy images with a bright disk (class 1) holding a darker core (class 2)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images, labels = [], []
    for _ in range(n):
        cy, cx = torch.randint(10, size - 10, (2,), generator=g).tolist()
        r = float(torch.randint(5, 9, (1,), generator=g))
        d = ((yy - cy) ** 2 + (xx - cx) ** 2).float().sqrt()
        label = (d < r).long() + (d < r / 2).long()
        img = torch.stack([label.float() * 0.5 + 0.2 * torch.randn(size, size, generator=g)] * 3)
        images.append(img)
        labels.append(label)
    return TensorDataset(torch.stack(images), torch.stack(labels))


def test_dice_ce_loss_is_near_zero_for_a_confident_correct_prediction():
    target = torch.tensor([[[0, 1], [2, 2]]])
    logits = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50
    assert DiceCELoss(3)(logits, target).item() == pytest.approx(0.0, abs=1e-4)
    # uniform logits: CE = ln 3, soft Dice of class 1 = 2*(1/3)/(4/3+1), of class 2 = 2*(2/3)/(4/3+2)
    uniform = DiceCELoss(3)(torch.zeros(1, 3, 2, 2), target).item()
    dice = (2 * (1 / 3) / (4 / 3 + 1) + 2 * (2 / 3) / (4 / 3 + 2)) / 2
    assert uniform == pytest.approx(math.log(3) + 1 - dice, rel=1e-5)


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    assert lr_factor(0, 100) == pytest.approx(0.2)  # 5 warm-up steps
    assert lr_factor(4, 100) == pytest.approx(1.0)
    assert lr_factor(99, 100) < 0.02
    assert lr_factor(100, 100) == pytest.approx(0.01)


def _run(tmp_path, seed=0, epochs=8, **cfg):
    torch.manual_seed(123)  # model init
    model = models.create_model("lfunet", prune_level=2)
    config = TrainConfig(epochs=epochs, batch_size=8, lr=1e-2, seed=seed, progress=False, **cfg)
    result = train(model, _disks(48), _disks(16, seed=1), 3, config, tmp_path)
    return model, result


def test_training_learns_and_saves_the_best_checkpoint(tmp_path):
    model, result = _run(tmp_path)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.6 * losses[0]
    assert result.best_score > 0.5
    assert result.best_score == max(h["val_dice"] for h in result.history)
    state = torch.load(result.checkpoint, weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_same_seed_gives_identical_results(tmp_path):
    _, a = _run(tmp_path / "a", epochs=2)
    _, b = _run(tmp_path / "b", epochs=2)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert a.best_score == b.best_score


def test_step_budget_is_respected(tmp_path):
    _, result = _run(tmp_path, steps=5)
    assert result.steps_run == 5 and result.epochs_run == 1


def test_val_at_start_keeps_the_starting_weights_when_no_epoch_beats_them(tmp_path, monkeypatch):
    import lfubench.bench.train as bench_train

    scores = iter([0.9, 0.2, 0.3])  # the start, then two worse epochs
    monkeypatch.setattr(bench_train, "validation_dice", lambda *a, **k: next(scores))
    torch.manual_seed(0)
    model = models.create_model("unet", base_width=4)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainConfig(epochs=2, batch_size=8, lr=1e-2, progress=False, val_at_start=True)
    result = train(model, _disks(16), _disks(8, seed=1), 3, config, tmp_path)
    assert result.best_epoch == 0 and result.best_score == 0.9 and result.epochs_run == 2
    assert [h["epoch"] for h in result.history] == [0, 1, 2]
    assert all(torch.equal(start[k], v) for k, v in model.state_dict().items())


def test_on_validation_gets_every_validated_epoch_and_its_exception_ends_training(tmp_path, monkeypatch):
    import lfubench.bench.train as bench_train

    scores = iter([0.1, 0.4, 0.3, 0.5, 0.2, 0.6])  # start, epochs 2, 4, 5 (the last); then a second run
    monkeypatch.setattr(bench_train, "validation_dice", lambda *a, **k: next(scores))
    closed = []
    make_feed = bench_train.make_feed

    def feed(*args, **kwargs):
        made = make_feed(*args, **kwargs)
        close = made.close
        made.close = lambda: (closed.append(True), close())
        return made

    monkeypatch.setattr(bench_train, "make_feed", feed)
    config = TrainConfig(epochs=5, val_every=2, batch_size=8, progress=False, val_at_start=True)
    seen = []
    result = train(models.create_model("unet", base_width=4), _disks(16), _disks(8, seed=1), 3, config,
                   tmp_path / "a", on_validation=lambda epoch, dice: seen.append((epoch, dice)))
    assert seen == [(0, 0.1), (2, 0.4), (4, 0.3), (5, 0.5)]
    assert seen == [(h["epoch"], h["val_dice"]) for h in result.history if "val_dice" in h]

    class Stop(Exception):
        pass

    def stop(epoch, dice):
        seen.append((epoch, dice))
        if epoch == 2:
            raise Stop(f"stopped at epoch {epoch}")

    seen.clear()
    with pytest.raises(Stop, match="stopped at epoch 2"):
        train(models.create_model("unet", base_width=4), _disks(16), _disks(8, seed=1), 3,
              config, tmp_path / "b", on_validation=stop)
    assert seen == [(0, 0.2), (2, 0.6)] and closed == [True, True]  # the loader closed both times


def test_nan_loss_is_reported(tmp_path):
    model = models.create_model("unet", base_width=4)
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="loss became nan at step 0"):
        train(model, _disks(8), None, 3, TrainConfig(epochs=1, progress=False), tmp_path)


def test_training_threads_apply_to_the_run_only(tmp_path):
    """``threads`` holds while training runs and the caller's thread count is restored after,
    also when training fails."""
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = models.create_model("unet", base_width=4)

        def forward(self, x):
            seen.append(torch.get_num_threads())
            return self.net(x)

    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    config = TrainConfig(steps=2, batch_size=2, threads=target, progress=False)
    train(Spy(), _disks(4), None, 3, config, tmp_path)
    assert set(seen) == {target} and torch.get_num_threads() == before
    broken = models.create_model("unet", base_width=4)
    with torch.no_grad():
        broken.head.bias.fill_(float("nan"))
    with pytest.raises(TrainingDiverged):
        train(broken, _disks(4), None, 3, config, tmp_path / "nan")
    assert torch.get_num_threads() == before


def _quick(tmp_path, epochs=3, device="cpu", **cfg):
    """A small, fast run: LFU-Net width 4, 24 training and 8 validation disks, batch 8."""
    torch.manual_seed(123)
    model = models.create_model("lfunet", base_width=4, groups=4, prune_level=2)
    config = TrainConfig(epochs=epochs, batch_size=8, lr=1e-2, progress=False, device=device, **cfg)
    return train(model, _disks(24), _disks(8, seed=1), 3, config, tmp_path)


def _losses(result):
    return [h["loss"] for h in result.history]


def test_cpu_defaults_resolve_to_fp32_and_the_loader_without_workers(tmp_path):
    result = _quick(tmp_path, epochs=1)
    assert result.settings == {"precision": "fp32", "feed": "loader", "workers": 0, "pin_memory": False,
                               "compile": None, "cudnn_benchmark": False}


def test_workers_and_preloading_change_nothing_but_the_speed(tmp_path):
    """Same seed: the same loss history and score through the loader with no workers, with two
    (persistent) workers, and from a pre-loaded training set (forced onto the CPU)."""
    plain = _quick(tmp_path / "plain")
    forked = _quick(tmp_path / "workers", workers=2)
    preloaded = _quick(tmp_path / "preload", preload="always")
    assert forked.settings["workers"] == 2 and preloaded.settings["feed"] == "preloaded"
    assert _losses(plain) == _losses(forked) == _losses(preloaded)
    assert plain.best_score == forked.best_score == preloaded.best_score


def test_precision_on_the_cpu_is_fp32_or_bf16(tmp_path):
    with pytest.raises(OptionError, match="precision 'fp16' trains on CUDA only; on device 'cpu' use fp32"):
        _quick(tmp_path, epochs=1, precision="fp16")
    result = _quick(tmp_path, epochs=1, precision="bf16")
    assert result.settings["precision"] == "bf16" and all(map(math.isfinite, _losses(result)))
    with pytest.raises(OptionError, match="precision must be one of fp32, fp16, bf16, got 'fp8'"):
        _quick(tmp_path, epochs=1, precision="fp8")


PLAN = """
name = "t"
seeds = [0]
[train]
{train}
[[datasets]]
name = "lits"
kind = "phantom-lits"
cases = 4
[[models]]
name = "lfunet"
"""


def test_the_new_settings_are_plan_settings_validated_by_the_schema(tmp_path):
    path = tmp_path / "plan.toml"
    bad = 'precision = "fp8"\npreload = "sometimes"\nworkers = -1\ncompile = "yes"'
    path.write_text(PLAN.format(train=bad))
    with pytest.raises(PlanError) as info:
        load_plan(path)
    text = str(info.value)
    assert text.startswith("4 problem(s) in plan:")
    assert "[train]: precision 'fp8' is not one of fp32, fp16, bf16" in text
    assert "[train]: preload 'sometimes' is not one of auto, always, never" in text
    assert "[train]: workers must be >= 0, got -1" in text
    assert "[train]: compile must be true or false, got 'yes'" in text
    path.write_text(PLAN.format(train='precision = "bf16"\npreload = "never"\nworkers = 2\ncompile = true'))
    t = load_plan(path).train
    assert (t.precision, t.preload, t.workers, t.compile) == ("bf16", "never", 2, True)
    path.write_text(PLAN.format(train="epochs = 1"))
    plan = load_plan(path)
    assert (plan.train.precision, plan.train.preload, plan.train.workers, plan.train.compile) == (
        None, "auto", None, False)
    assert plan.to_dict()["train"]["preload"] == "auto" and "precision" not in plan.to_dict()["train"]


def test_compile_goes_through_torch_compile_without_cuda_graphs_on_the_cpu(tmp_path, monkeypatch):
    """The wiring, with ``torch.compile`` replaced by a spy that returns the function itself."""
    calls = []

    def spy(fn, **kwargs):
        calls.append(kwargs)
        return fn

    monkeypatch.setattr(torch, "compile", spy)
    eager = _quick(tmp_path / "eager", epochs=1)
    compiled = _quick(tmp_path / "compiled", epochs=1, compile=True)
    assert calls == [{"mode": "default", "dynamic": False}]
    assert compiled.settings["compile"] == "default" and _losses(compiled) == _losses(eager)


COMPILE_RUN = """
import math, torch
from torch.utils.data import TensorDataset
from lfubench import models
from lfubench.bench.train import TrainConfig, train
torch.manual_seed(0)
data = TensorDataset(torch.rand(8, 3, 32, 32), torch.randint(0, 3, (8, 32, 32)))
model = models.create_model("unet", base_width=4)
config = TrainConfig(steps=2, batch_size=4, compile=True, progress=False)
result = train(model, data, None, 3, config, {out!r})
assert result.steps_run == 2 and math.isfinite(result.history[-1]["loss"]), result
print("compiled", result.settings["compile"])
"""

#: seconds the compiled run may take: a cold inductor cache compiles the C++ kernels of the CPU
#: in about a minute on 2 cores; a busy shared machine can take several times that
COMPILE_TIMEOUT_S = 900


@pytest.mark.slow
def test_compile_really_trains_on_the_cpu(tmp_path):
    """Two real compiled steps in a fresh process, waited for however long the compilation takes
    (no skip on time): the run must finish and train."""
    if not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
        pytest.skip("torch.compile on the CPU needs a C++ compiler; none on PATH")
    code = textwrap.dedent(COMPILE_RUN.format(out=str(tmp_path / "out")))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          timeout=COMPILE_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("compiled default")


@CUDA
def test_cuda_defaults_preload_autocast_and_benchmark_cudnn(tmp_path):
    before = torch.backends.cudnn.benchmark
    result = _quick(tmp_path, device="cuda")
    s = result.settings
    assert s["precision"] in ("bf16", "fp16") and s["feed"] == "preloaded" and s["cudnn_benchmark"] is True
    assert torch.backends.cudnn.benchmark == before  # restored
    assert all(map(math.isfinite, _losses(result))) and math.isfinite(result.best_score)


@CUDA
def test_cuda_loader_and_preloaded_set_train_alike(tmp_path):
    """Same batches in the same order; cuDNN's kernel choices (benchmark mode, TF32) leave only
    rounding differences."""
    pre = _quick(tmp_path / "pre", device="cuda", precision="fp32", preload="always")
    read = _quick(tmp_path / "read", device="cuda", precision="fp32", preload="never", workers=2)
    assert read.settings["feed"] == "loader" and read.settings["pin_memory"] is True
    assert _losses(pre) == pytest.approx(_losses(read), rel=1e-2)


@CUDA
@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_cuda_precisions_train(tmp_path, precision):
    if precision == "bf16" and torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("this GPU has no native bfloat16 (compute capability < 8)")
    result = _quick(tmp_path, epochs=1, device="cuda", precision=precision)
    assert result.settings["precision"] == precision and all(map(math.isfinite, _losses(result)))


@CUDA
def test_cuda_compile_uses_cuda_graphs(tmp_path):
    result = _quick(tmp_path, epochs=2, device="cuda", compile=True)
    assert result.settings["compile"] == "reduce-overhead" and all(map(math.isfinite, _losses(result)))


@CUDA
def test_cuda_nan_is_reported_at_its_step_although_read_late(tmp_path):
    model = models.create_model("unet", base_width=4)
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="loss became nan at step 0"):
        train(model, _disks(8), None, 3, TrainConfig(epochs=1, batch_size=2, device="cuda", progress=False),
              tmp_path)
