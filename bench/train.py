"""Training: Dice + cross-entropy with deep supervision, AdamW, a budget, best checkpoint.

Schedule (documented convention): AdamW (lr 1e-3, weight decay 1e-4 by default), a linear
warm-up over the first 5% of the steps, then cosine decay to 1% of the peak learning rate
at the last step of the budget. A budget in minutes caps a run in epochs/steps: training
stops at the first step boundary past the limit, and the schedule is the one of the
step/epoch budget.

Validation runs every ``val_every`` epochs on the validation slices: the score is the mean
over foreground classes of the pooled (global) Dice over all validation pixels. The best
score's weights are saved as a state dict (``best.pt``) and re-loaded with
``weights_only=True``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .environment import torch_threads
from .losses import DiceCELoss, deep_supervision_loss

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """Raised when the loss becomes NaN or infinite."""


@dataclass
class TrainConfig:
    """Training settings.

    Args:
        epochs: passes over the training slices (ignored when ``steps`` is set). Defaults to 10.
        steps: optimizer steps; overrides ``epochs`` when set. Defaults to None.
        minutes: wall-clock cap in minutes. Defaults to None (no cap).
        batch_size: slices per step. Defaults to 16.
        lr: peak AdamW learning rate. Defaults to 1e-3.
        weight_decay: AdamW weight decay. Defaults to 1e-4.
        val_every: validate every this many epochs. Defaults to 1.
        seed: seeds Python, NumPy and torch, and the loader's shuffling. Defaults to 0.
        device: ``"cpu"`` or ``"cuda"``. Defaults to ``"cpu"``.
        amp: bfloat16/float16 autocast on CUDA (ignored on CPU). Defaults to True.
        channels_last: channels-last memory format for model and inputs, on CPU and CUDA (on
            CPU it makes grouped convolutions many times faster). Defaults to True.
        threads: CPU threads for torch (None leaves torch's default). Defaults to None.
        progress: show a progress bar. Defaults to True.

    Field metadata (``min``, ``exclusive``) states each setting's range; plans validate
    against it (:mod:`studies.schema`).
    """

    epochs: int = field(default=10, metadata={"min": 1})
    steps: int | None = field(default=None, metadata={"min": 1})
    minutes: float | None = field(default=None, metadata={"min": 0, "exclusive": True})
    batch_size: int = field(default=16, metadata={"min": 1})
    lr: float = field(default=1e-3, metadata={"min": 0, "exclusive": True})
    weight_decay: float = field(default=1e-4, metadata={"min": 0})
    val_every: int = field(default=1, metadata={"min": 1})
    seed: int = 0
    device: str = "cpu"
    amp: bool = True
    channels_last: bool = True
    threads: int | None = field(default=None, metadata={"min": 1})
    progress: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """What a training run produced."""

    best_score: float
    best_epoch: int
    epochs_run: int
    steps_run: int
    seconds: float
    checkpoint: str
    history: list[dict] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, total: int, warmup_share: float = 0.05, floor: float = 0.01) -> float:
    """Learning-rate multiplier: linear warm-up, then cosine decay to ``floor``."""
    warmup = max(1, int(total * warmup_share))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def validation_dice(model: nn.Module, loader: DataLoader, num_classes: int, device: str) -> float:
    """Mean over foreground classes of the Dice pooled over all validation pixels.

    A class absent from both prediction and reference in the whole set scores 1.
    """
    model.eval()
    inter = torch.zeros(num_classes - 1, dtype=torch.float64)
    total = torch.zeros(num_classes - 1, dtype=torch.float64)
    for image, label in loader:
        image = image.to(device)
        if image.dim() == 4:
            image = image.to(memory_format=torch.channels_last)
        pred = model(image).argmax(1).cpu()
        for c in range(1, num_classes):
            p, r = pred == c, label == c
            inter[c - 1] += (p & r).sum()
            total[c - 1] += p.sum() + r.sum()
    dice = torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))
    return float(dice.mean())


def train(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    num_classes: int,
    config: TrainConfig,
    out_dir: str | Path,
) -> TrainResult:
    """Train ``model`` on ``train_set`` (items ``(image CxHxW float, label HxW int64)``).

    Saves the best weights (by validation Dice; the last ones without a validation set)
    to ``out_dir/best.pt`` and loads them back into ``model`` before returning.
    Raises :class:`TrainingDiverged` on a NaN/Inf loss.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch_threads(config.threads):
        return _train(model, train_set, val_set, num_classes, config, out_dir)


def _train(model: nn.Module, train_set: Dataset, val_set: Dataset | None, num_classes: int,
           config: TrainConfig, out_dir: Path) -> TrainResult:
    device = config.device
    seed_everything(config.seed)
    cuda = device.startswith("cuda")
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, drop_last=len(train_set)
                        > config.batch_size, generator=gen, num_workers=0)
    val_loader = (DataLoader(val_set, batch_size=config.batch_size * 2, shuffle=False)
                  if val_set is not None and len(val_set) else None)
    steps_per_epoch = max(1, len(loader))
    total_steps = config.steps or config.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps))
    criterion = DiceCELoss(num_classes)
    amp_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    use_amp = cuda and config.amp
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    heads_fn = getattr(model, "forward_heads", None)
    ckpt = out_dir / "best.pt"
    best, best_epoch, step, history = -1.0, 0, 0, []
    start = time.perf_counter()
    deadline = start + config.minutes * 60 if config.minutes else math.inf
    bar = None
    if config.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, desc="train", unit="step", leave=False, dynamic_ncols=True,
                   disable=None)  # None: off when the output is not a terminal (logs, CI)
    try:
        for epoch in range(1, epochs + 1):
            model.train()
            running, seen = 0.0, 0
            for image, label in loader:
                if step >= total_steps or time.perf_counter() > deadline:
                    break
                image, label = image.to(device), label.to(device)
                if config.channels_last:
                    image = image.to(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=amp_dtype, enabled=use_amp):
                    heads = heads_fn(image) if heads_fn else [model(image)]
                    loss = deep_supervision_loss(criterion, heads, label)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(f"loss became {loss.item()} at step {step} (epoch {epoch})")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                step += 1
                running += loss.item() * len(image)
                seen += len(image)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{loss.item():.4f}")
            record = {"epoch": epoch, "step": step, "loss": running / max(1, seen),
                      "seconds": time.perf_counter() - start}
            last = step >= total_steps or time.perf_counter() > deadline
            if val_loader is not None and (epoch % config.val_every == 0 or last):
                record["val_dice"] = validation_dice(model, val_loader, num_classes, device)
                if record["val_dice"] > best:
                    best, best_epoch = record["val_dice"], epoch
                    torch.save(model.state_dict(), ckpt)
            elif val_loader is None:
                best, best_epoch = math.nan, epoch
                torch.save(model.state_dict(), ckpt)
            history.append(record)
            log.debug("epoch %d: %s", epoch, record)
            if last:
                break
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    model.load_state_dict(torch.load(ckpt, map_location=device, weights_only=True))
    return TrainResult(best_score=best, best_epoch=best_epoch, epochs_run=len(history), steps_run=step,
                       seconds=seconds, checkpoint=str(ckpt), history=history)
