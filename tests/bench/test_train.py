"""Training loop: learning, determinism, divergence, checkpoints, loss conventions."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

import models
from bench.losses import DiceCELoss
from bench.train import TrainConfig, TrainingDiverged, lr_factor, train


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
