"""Training: Dice + cross-entropy with deep supervision, AdamW, a budget, best checkpoint.

Schedule (documented convention): AdamW (lr 1e-3, weight decay 1e-4 by default), a linear
warm-up over the first 5% of the steps, then cosine decay to 1% of the peak learning rate
at the last step of the budget. A budget in minutes caps a run in epochs/steps: training
stops at the first step boundary past the limit, and the schedule is the one of the
step/epoch budget.

Validation runs every ``val_every`` epochs on the validation slices (and, with
``val_at_start``, once before the first step, as epoch 0): the score is the mean over
foreground classes of the pooled (global) Dice over all validation pixels. The best score's
weights are saved as a state dict (``best.pt``) and re-loaded with ``weights_only=True``, so a
run that only makes a model worse (fine-tuning after pruning, with ``val_at_start``) returns
the weights it started from.

Feeding, precision and speed (settings of :class:`TrainConfig`):

- Batches come from :mod:`bench.loader`: the order depends on the seed and the epoch only, and
  is the same with any number of ``workers`` and with the training set pre-loaded on the device
  (``preload``), so those settings change the speed, never the loss history. On CUDA the loader
  uses pinned memory and non-blocking copies; ``preload="auto"`` keeps the whole training set
  on the GPU when it fits.
- ``precision``: ``fp32``, or autocast to ``bf16`` or ``fp16`` (weights stay fp32; ``fp16``
  with a ``GradScaler``, ``bf16`` without). On CUDA the default is ``bf16`` where the GPU has
  it natively, else ``fp16``; on the CPU the default is ``fp32``, ``bf16`` autocast is
  allowed, and ``fp16`` is refused (CPU fp16 kernels are slow or missing, and there is
  nothing for a loss scaler to fix there). Validation runs in fp32.
- On CUDA ``cudnn.benchmark`` is on while training (restored afterwards), AdamW is the fused
  implementation, and the loss is brought to the host every :data:`LOSS_SYNC_STEPS` steps
  instead of every step, so the CPU can queue work ahead of the GPU. A NaN/Inf loss is then
  found up to that many steps late; :class:`TrainingDiverged` still names the step it
  happened at. On the CPU the loss is checked at every step.
- ``compile``: the training forward and loss go through ``torch.compile`` (on CUDA with
  ``mode="reduce-overhead"``: CUDA graphs, which need the fixed batch shape the batch order
  guarantees; on the CPU the default mode). Validation uses the eager model.
- ``TrainResult.seconds`` and the ``minutes`` budget count everything from the start of the
  run: pre-loading, starting the loader's workers and compiling included.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .environment import torch_threads
from .errors import OptionError
from .latency import PRECISIONS
from .loader import PRELOAD, is_cuda, make_feed, make_loader, resolve_workers
from .losses import DiceCELoss, deep_supervision_loss

log = logging.getLogger(__name__)

#: on CUDA the step losses are brought to the host (and checked) every this many steps
LOSS_SYNC_STEPS = 32


class TrainingDiverged(RuntimeError):
    """Raised when the loss becomes NaN or infinite; ``step`` is the step whose loss it was (None
    where unknown)."""

    def __init__(self, message: str, step: int | None = None) -> None:
        super().__init__(message)
        self.step = step


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
        val_at_start: also validate the starting weights (epoch 0), so they are kept when no
            epoch beats them. Defaults to False.
        seed: seeds Python, NumPy and torch, and the batch order. Defaults to 0.
        device: ``"cpu"`` or ``"cuda"``. Defaults to ``"cpu"``.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast; ``fp16`` with a loss scaler,
            CUDA only). Defaults to None: ``bf16`` on CUDA (``fp16`` where the GPU lacks native
            bf16), ``fp32`` on the CPU.
        channels_last: channels-last memory format for model and inputs, on CPU and CUDA (on
            CPU it makes grouped convolutions many times faster). Defaults to True.
        workers: DataLoader processes reading the training and validation sets. Defaults to
            None: 0 on the CPU, ``min(4, cores)`` on CUDA.
        preload: ``"auto"`` (keep the training set on the GPU when it takes at most half its free
            memory; never on the CPU), ``"always"`` (on any device, no size check) or
            ``"never"``. Defaults to ``"auto"``.
        compile: ``torch.compile`` the training forward and loss (CUDA graphs on CUDA); the
            compile time counts in the training seconds. Defaults to False.
        threads: CPU threads for torch (None leaves torch's default). Defaults to None.
        progress: show a progress bar. Defaults to True.

    Field metadata (``min``, ``exclusive``, ``choices``) states each setting's range; plans
    validate against it (:mod:`studies.schema`).
    """

    epochs: int = field(default=10, metadata={"min": 1})
    steps: int | None = field(default=None, metadata={"min": 1})
    minutes: float | None = field(default=None, metadata={"min": 0, "exclusive": True})
    batch_size: int = field(default=16, metadata={"min": 1})
    lr: float = field(default=1e-3, metadata={"min": 0, "exclusive": True})
    weight_decay: float = field(default=1e-4, metadata={"min": 0})
    val_every: int = field(default=1, metadata={"min": 1})
    val_at_start: bool = False
    seed: int = 0
    device: str = "cpu"
    precision: str | None = field(default=None, metadata={
        "choices": tuple(PRECISIONS), "doc": "autocast precision; default bf16 on CUDA, fp32 on the CPU"})
    channels_last: bool = True
    workers: int | None = field(default=None, metadata={
        "min": 0, "doc": "loader processes; default 0 on the CPU, min(4, cores) on CUDA"})
    preload: str = field(default="auto", metadata={"choices": PRELOAD})
    compile: bool = False
    threads: int | None = field(default=None, metadata={"min": 1})
    progress: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """What a training run produced.

    ``settings`` records what the run resolved its automatic settings to: ``precision``,
    ``feed`` (``"loader"`` or ``"preloaded"``), ``workers``, ``pin_memory``, ``compile`` (the
    ``torch.compile`` mode, or None), ``cudnn_benchmark``, and ``preloaded_mb`` when pre-loaded.
    """

    best_score: float
    best_epoch: int
    epochs_run: int
    steps_run: int
    seconds: float
    checkpoint: str
    history: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)


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


def _native_bf16() -> bool:
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch before the including_emulation argument
        return torch.cuda.is_bf16_supported()


def resolve_precision(precision: str | None, device: str | torch.device) -> str:
    """The training precision on ``device`` (see the module docstring); raises
    :class:`bench.errors.OptionError` for one the device cannot train in."""
    cuda = is_cuda(device)
    if precision is None:
        return ("bf16" if _native_bf16() else "fp16") if cuda else "fp32"
    if precision not in PRECISIONS:
        raise OptionError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and not cuda:
        raise OptionError(f"precision 'fp16' trains on CUDA only; on device {str(device)!r} use fp32 or bf16")
    if precision == "bf16" and cuda and not _native_bf16():
        raise OptionError(f"precision 'bf16': {torch.cuda.get_device_name(device)} has no native bfloat16; "
                          "use fp16 or fp32")
    return precision


def compile_mode(device: str | torch.device) -> str:
    """The ``torch.compile`` mode of ``compile=True``: CUDA graphs on CUDA, else the default."""
    return "reduce-overhead" if is_cuda(device) else "default"


class TrainStep:
    """One optimizer step: forward (every deep-supervision head) and loss under autocast,
    backward (scaled for fp16), optimizer step. Calling it returns the step's loss, detached,
    on the device (not synchronised).

    Args:
        model: the network; its ``forward_heads`` is used when it has one.
        criterion: the per-head loss.
        optimizer: steps ``model``'s parameters.
        precision: a key of :data:`bench.latency.PRECISIONS` (resolved: see
            :func:`resolve_precision`).
        device: where model and batches are.
        compile: ``torch.compile`` forward and loss with :func:`compile_mode` (clearing
            ``torch.compile``'s caches first: ``torch.compiler.reset()``). Defaults to False.
    """

    def __init__(self, model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer, *,
                 precision: str, device: str | torch.device, compile: bool = False) -> None:
        dtype = PRECISIONS[precision]
        device_type = torch.device(device).type
        heads_fn = getattr(model, "forward_heads", None)

        def forward_loss(image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
            ctx = torch.autocast(device_type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
            with ctx:
                heads = heads_fn(image) if heads_fn else [model(image)]
                return deep_supervision_loss(criterion, heads, label)

        self.mode = compile_mode(device) if compile else None
        if compile:
            # one compiled function serves every model trained in this process: start afresh, or
            # after a few models torch.compile would reach its recompile limit and run eagerly
            torch.compiler.reset()
        self.forward_loss = (torch.compile(forward_loss, mode=self.mode, dynamic=False) if compile
                             else forward_loss)
        self.cuda_graphs = self.mode == "reduce-overhead"
        self.optimizer = optimizer
        self.scaler = torch.amp.GradScaler(device_type, enabled=precision == "fp16")

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        loss = self.forward_loss(image, label)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # a copy: a CUDA graph's output is overwritten by its next replay
        return loss.detach().clone() if self.cuda_graphs else loss.detach()


class EpochLosses:
    """The step losses of one epoch, kept on the device and read (and checked) every ``every``
    steps and at :meth:`flush`; ``mean`` is the mean over the epoch's slices."""

    def __init__(self, epoch: int, every: int, bar=None) -> None:
        self.epoch, self.every, self.bar = epoch, every, bar
        self.pending: list[tuple[int, torch.Tensor, int]] = []  # (step, loss on the device, batch size)
        self.total, self.seen = 0.0, 0

    def add(self, step: int, loss: torch.Tensor, n: int) -> None:
        self.pending.append((step, loss, n))
        if len(self.pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        """Read the pending losses; raise :class:`TrainingDiverged` at the first non-finite one."""
        if not self.pending:
            return
        values = torch.stack([loss for _, loss, _ in self.pending]).float().cpu().tolist()
        for (step, _, n), value in zip(self.pending, values, strict=True):
            if not math.isfinite(value):
                raise TrainingDiverged(f"loss became {value} at step {step} (epoch {self.epoch})", step)
            self.total += value * n
            self.seen += n
        self.pending.clear()
        if self.bar is not None:
            self.bar.set_postfix(epoch=self.epoch, loss=f"{values[-1]:.4f}")

    @property
    def mean(self) -> float:
        return self.total / max(1, self.seen)


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool):
    """``torch.backends.cudnn.benchmark = enabled`` for the block, restored afterwards."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


@torch.no_grad()
def validation_dice(model: nn.Module, loader: DataLoader, num_classes: int, device: str) -> float:
    """Mean over foreground classes of the Dice pooled over all validation pixels.

    A class absent from both prediction and reference in the whole set scores 1. The pixel
    counts are kept on ``device`` and read once at the end.
    """
    model.eval()
    non_blocking = is_cuda(device)
    inter = torch.zeros(num_classes - 1, dtype=torch.int64, device=device)
    total = torch.zeros(num_classes - 1, dtype=torch.int64, device=device)
    for image, label in loader:
        image = image.to(device, non_blocking=non_blocking)
        label = label.to(device, non_blocking=non_blocking)
        if image.dim() == 4:
            image = image.to(memory_format=torch.channels_last)
        pred = model(image).argmax(1)
        for c in range(1, num_classes):
            p, r = pred == c, label == c
            inter[c - 1] += (p & r).sum()
            total[c - 1] += p.sum() + r.sum()
    inter, total = inter.cpu().double(), total.cpu().double()
    dice = torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))
    return float(dice.mean())


def train(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    num_classes: int,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    on_validation: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``train_set`` (items ``(image CxHxW float, label HxW int64)``).

    Saves the best weights (by validation Dice; the last ones without a validation set)
    to ``out_dir/best.pt`` and loads them back into ``model`` before returning.
    Raises :class:`TrainingDiverged` on a NaN/Inf loss, :class:`bench.errors.OptionError` for a
    precision the device cannot train in.

    ``on_validation(epoch, val_dice)``, when given, is called after every validation, the one
    of the starting weights (epoch 0, with ``val_at_start``) included: the ``history`` entries
    that have a ``val_dice``, as they happen. An exception it raises ends training and
    propagates (a sweep's pruner stops a trial this way); the loader is closed first.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch_threads(config.threads), cudnn_benchmark(is_cuda(config.device) or
                                                        torch.backends.cudnn.benchmark):
        return _train(model, train_set, val_set, num_classes, config, out_dir, on_validation)


def _train(model: nn.Module, train_set: Dataset, val_set: Dataset | None, num_classes: int,
           config: TrainConfig, out_dir: Path,
           on_validation: Callable[[int, float], None] | None = None) -> TrainResult:
    device = config.device
    cuda = is_cuda(device)
    precision = resolve_precision(config.precision, device)
    seed_everything(config.seed)
    start = time.perf_counter()
    deadline = start + config.minutes * 60 if config.minutes else math.inf
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    workers = resolve_workers(config.workers, device)
    feed = make_feed(train_set, batch_size=config.batch_size, seed=config.seed, device=device,
                     workers=workers, preload=config.preload, channels_last=config.channels_last)
    val_loader = (make_loader(val_set, workers=workers, pin_memory=cuda, batch_size=config.batch_size * 2,
                              seed=config.seed)
                  if val_set is not None and len(val_set) else None)
    steps_per_epoch = max(1, len(feed))
    total_steps = config.steps or config.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  fused=True if cuda else None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps))
    step_fn = TrainStep(model, DiceCELoss(num_classes), optimizer, precision=precision, device=device,
                        compile=config.compile)
    settings = {"precision": precision, **feed.settings, "compile": step_fn.mode,
                "cudnn_benchmark": torch.backends.cudnn.benchmark if cuda else False}
    log.info("training on %s: %s", device, ", ".join(f"{k}={v}" for k, v in settings.items()))
    sync_every = LOSS_SYNC_STEPS if cuda else 1
    ckpt = out_dir / "best.pt"
    best, best_epoch, step, history = -1.0, 0, 0, []
    bar = None
    if config.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, desc="train", unit="step", leave=False, dynamic_ncols=True,
                   disable=None)  # None: off when the output is not a terminal (logs, CI)
    try:
        if val_loader is not None and config.val_at_start:
            best, best_epoch = validation_dice(model, val_loader, num_classes, device), 0
            torch.save(model.state_dict(), ckpt)
            history.append({"epoch": 0, "step": 0, "loss": None, "val_dice": best,
                            "seconds": time.perf_counter() - start})
            if on_validation is not None:
                on_validation(0, best)
        for epoch in range(1, epochs + 1):
            model.train()
            losses = EpochLosses(epoch, sync_every, bar)
            for image, label in feed.epoch(epoch):
                if step >= total_steps or time.perf_counter() > deadline:
                    break
                loss = step_fn(image, label)
                scheduler.step()
                losses.add(step, loss, len(image))
                step += 1
                if bar is not None:
                    bar.update(1)
            losses.flush()
            record = {"epoch": epoch, "step": step, "loss": losses.mean,
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
            if on_validation is not None and "val_dice" in record:
                on_validation(epoch, record["val_dice"])
            if last:
                break
    finally:
        if bar is not None:
            bar.close()
        feed.close()
        val_loader = None
    seconds = time.perf_counter() - start
    model.load_state_dict(torch.load(ckpt, map_location=device, weights_only=True))
    epochs_run = sum(1 for r in history if r["epoch"] > 0)
    return TrainResult(best_score=best, best_epoch=best_epoch, epochs_run=epochs_run, steps_run=step,
                       seconds=seconds, checkpoint=str(ckpt), history=history, settings=settings)
