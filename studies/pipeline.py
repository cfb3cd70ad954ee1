"""One plan item, start to finish: dataset, cache, splits, training, evaluation at every
pruning level, complexity and latency, in the item's run folder (:class:`studies.run.Run`
holds its layout).

Splits are made per dataset from its case ids (case level, seeded by the dataset's
``split_seed``) and are the same for every model and seed of the plan; the item's seed drives
the model initialisation, the training-slice draw and the loader order. Every figure of an
item is returned as one :class:`reports.record.ItemRecord` whose tables follow
:mod:`reports.schema`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lfubench import models
from lfubench.bench import conventions
from lfubench.bench.complexity import count_params, fvcore_macs
from lfubench.bench.data import (
    PreprocessConfig,
    make_splits,
    open_cache,
    prepare_cache,
    training_slices,
    write_phantom,
)
from lfubench.bench.data.splits import read_splits, splits_path, write_splits
from lfubench.bench.datasets import get_dataset
from lfubench.bench.environment import environment_record, torch_threads
from lfubench.bench.evaluate import evaluate_cases, overlay_slices
from lfubench.bench.latency import profile
from lfubench.bench.quantize import CALIBRATION_INPUTS, SCORED_RUNTIMES, int8_predictor
from lfubench.bench.quantize import calibration_inputs as int8_calibration_inputs
from lfubench.bench.runtimes import Artifacts
from lfubench.bench.train import TrainConfig, seed_everything, train
from lfubench.reports.record import ItemRecord
from lfubench.reports.schema import DEPLOYMENT_COLUMNS, EFFICIENCY_COLUMNS, RESULT_COLUMNS, row

from .plan import Item, Plan
from .run import Run
from .schema import DatasetSpec, ModelSpec
from .tune import train_tuned

log = logging.getLogger(__name__)


class CacheSlices(Dataset):
    """Training/validation items ``(image float32 CxSxS, label int64 SxS)`` from a slice cache."""

    def __init__(self, cache, indices) -> None:
        self.cache, self.indices = cache, np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        x, y = self.cache[int(self.indices[i])]
        return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    def __getitems__(self, items):
        """A whole batch in one read of the cache (the DataLoader's batched fetch)."""
        x, y = self.cache.read_batch(self.indices[np.asarray(items, dtype=np.int64)])
        return [(torch.from_numpy(a), torch.from_numpy(b.astype(np.int64)))
                for a, b in zip(x, y, strict=True)]


def dataset_root(spec: DatasetSpec, run_dir: Path) -> Path:
    """The dataset folder: the plan's root, or phantoms generated once under ``run_dir/data``.

    Phantoms are written to a temporary folder renamed into place when complete, so an
    interrupted generation is redone and concurrent workers never read a partial set.
    """
    if not spec.phantom:
        return Path(spec.root)
    final = Run(run_dir).data_dir / spec.name
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{spec.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        write_phantom(spec.dataset, tmp, cases=spec.cases, shape=tuple(spec.shape), seed=spec.phantom_seed)
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # left only if another worker renamed first
    return final


_OPENED: dict[tuple[str, str], tuple] = {}


def dataset_cache(spec: DatasetSpec, run_dir: Path):
    """The opened slice cache of a plan dataset (built on first use) and its splits.

    The splits file is named by its settings (seed, test fraction, folds), so changing any of
    them in a plan makes new splits instead of reusing old ones. Opened once per process.
    """
    key = (str(run_dir.resolve()), json.dumps(dataclasses.asdict(spec), sort_keys=True))
    if key in _OPENED:
        return _OPENED[key]
    root = dataset_root(spec, run_dir)
    config = PreprocessConfig(spec.dataset, size=spec.size)
    path = prepare_cache(spec.dataset, root, Run(run_dir).cache_dir, config, progress=True)
    cache = open_cache(path)
    n = len(cache.case_ids)
    folds = spec.folds or min(5, max(2, n - max(1, round(spec.test * n))))
    split_file = splits_path(path, spec.split_seed, spec.test, folds)
    if split_file.is_file():
        splits = read_splits(split_file)
    else:
        groups = {cid: c.get("group") for cid, c in cache.cases.items()}
        splits = make_splits(cache.case_ids, seed=spec.split_seed, test_fraction=spec.test, folds=folds,
                             groups=groups)
        write_splits(path, splits)
    _OPENED[key] = cache, splits
    return cache, splits


def build_model(spec: ModelSpec, dataset: DatasetSpec, in_channels: int, **extra) -> torch.nn.Module:
    num_classes = get_dataset(dataset.dataset).num_classes
    return models.create_model(spec.name, in_channels=in_channels, num_classes=num_classes,
                               **{**models.sized_arguments(spec.name, dataset.size), **spec.kwargs, **extra})


def finetune_config(config: TrainConfig, spec: ModelSpec) -> TrainConfig:
    """The fine-tuning run after pruning: ``finetune_epochs`` epochs, or by default a quarter of
    the training budget (steps or epochs, at least 1); peak learning rate ``finetune_lr``
    (default training's: one-shot pruning of half the channels of a trained model leaves its
    validation Dice near 0, and a tenth of the rate recovered little of it within such a
    budget); the pruned model's own validation score counts as epoch 0, so fine-tuning never
    delivers weights worse on validation than it started from. Other settings are training's."""
    tuned = dataclasses.replace(config, lr=spec.finetune_lr or config.lr, val_at_start=True)
    if spec.finetune_epochs is not None:
        return dataclasses.replace(tuned, epochs=spec.finetune_epochs, steps=None)
    if config.steps:
        return dataclasses.replace(tuned, steps=max(1, config.steps // 4))
    return dataclasses.replace(tuned, epochs=max(1, config.epochs // 4))


def prune(model: models.SegmentationNet, spec: ModelSpec, seed: int) -> models.SegmentationNet:
    """``model`` channel-pruned as the plan entry says (the seed drives ``random`` importance)."""
    return models.prune_channels(model, spec.prune_ratio, importance=spec.prune_importance,
                                 scope=spec.prune_scope, seed=seed)


def budget(plan: Plan) -> str:
    """The training budget of every item, in words."""
    t = plan.train
    n, unit = (t.steps, "step") if t.steps else (t.epochs, "epoch")
    what = f"{n} {unit}{'s' if n != 1 else ''}"
    return what + (f" (at most {t.minutes:g} min)" if t.minutes else "") + f", batch {t.batch_size}"


def deploys(plan: Plan) -> bool:
    """Whether the plan measures more than PyTorch eager, unquantized (other runtimes or int8)."""
    return plan.measure.runtimes != ["torch"] or plan.measure.quantize != ["none"]


def item_conventions(dataset: DatasetSpec, plan: Plan, input_shape: str) -> dict:
    """The convention sentences of an item's figures (stored with it; reports print them);
    ``conv_deployment`` (runtimes, int8, model memory, share of peak, energy) only where
    :func:`deploys`."""
    m = plan.measure
    lat = "; ".join(conventions.latency(m.device, b, p, input_shape, m.threads, m.channels_last)
                    for b in m.batch_sizes for p in m.precision)
    deployment = None
    if deploys(plan):
        deployment = "; ".join([conventions.RUNTIMES, *([conventions.INT8] if "int8" in m.quantize else []),
                                conventions.MODEL_MEMORY, conventions.PEAK, conventions.INTENSITY,
                                *([conventions.ENERGY] if m.energy else [])])
    return {"conv_scores": conventions.SCORES, "conv_empty": conventions.empty_rule(dataset.empty),
            "conv_params": conventions.PARAMS, "conv_macs": conventions.MACS, "conv_latency": lat,
            "conv_deployment": deployment}


def calibration(plan: Plan, item: Item, cache, splits) -> tuple[list[np.ndarray] | None, str | None]:
    """int8's calibration inputs and what they are: :data:`bench.quantize.CALIBRATION_INPUTS`
    training slices of the item's own dataset (drawn from its training slices by the item's
    seed), each ``(1, C, S, S)``; ``(None, None)`` without int8. A dataset without training
    slices leaves the profile's seeded random inputs, and says so."""
    if "int8" not in plan.measure.quantize:
        return None, None
    pool = training_slices(cache, splits["train"], seed=item.seed)
    if not len(pool):
        return None, f"{CALIBRATION_INPUTS} seeded standard-normal inputs"
    rng = np.random.default_rng(item.seed)
    chosen = np.sort(rng.choice(np.unique(pool), size=min(CALIBRATION_INPUTS, len(np.unique(pool))),
                                replace=False))
    x, _ = cache.read_batch(chosen)
    return [a[None].astype(np.float32) for a in x], f"{len(chosen)} training slices of {item.dataset.name}"


def scored_int8(plan: Plan) -> list[str]:
    """The runtimes whose int8 model each item scores on its test cases: where the plan measures
    int8, those of its runtimes in :data:`bench.quantize.SCORED_RUNTIMES` (in the plan's order)."""
    if "int8" not in plan.measure.quantize:
        return []
    return [r for r in plan.measure.runtimes if r in SCORED_RUNTIMES]


def _score_int8(net, key: dict, plan: Plan, cache, splits, empty: str, input_shape, calibration_inputs,
                threads: int | None, progress: bool) -> list[dict]:
    """Result rows of ``net``'s int8 model in each runtime of :func:`scored_int8`, scored on the test
    cases by the same evaluation as the model itself (on the CPU; calibrated as its latency rows
    are). A runtime whose int8 model cannot be made is logged and left out (its efficiency rows say
    why)."""
    runtimes = scored_int8(plan)
    if not runtimes:
        return []
    if calibration_inputs is None:  # no training slices: the profile's seeded inputs
        calibration_inputs = int8_calibration_inputs((1, *input_shape))
    rows = []
    with tempfile.TemporaryDirectory(prefix="lfubench-int8-") as folder, torch_threads(threads):
        artifacts = Artifacts(net, torch.zeros(1, *input_shape), folder, list(calibration_inputs))
        for runtime in runtimes:
            try:
                predict = int8_predictor(artifacts, runtime)
            except Exception as err:  # the efficiency rows record the failure
                why = str(err).splitlines()[0] if str(err) else type(err).__name__
                log.warning("%s level %s: int8 model of %s not scored: %s", key["item"], key["level"],
                            runtime, why)
                continue
            scored = evaluate_cases(predict, cache, splits["test"], empty=empty, progress=progress)
            rows += [row(RESULT_COLUMNS, **key, runtime=runtime, quantize="int8", **r) for r in scored]
    return rows


def _evaluate_levels(model, spec: ModelSpec, item: Item, plan: Plan, cache, splits, config: TrainConfig,
                     precision: str, stage: str, progress: bool) -> tuple[list[dict], list[dict], list[dict]]:
    """Result and efficiency rows of ``model`` at every pruning level the entry asks for (the
    levels' weights loaded from the full model), under ``stage``, and the result rows of its int8
    models (:func:`scored_int8`)."""
    dspec, measure, device = item.dataset, plan.measure, plan.measure.device
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    top = getattr(model, "prune_level", None)
    size = cache.meta["size"]
    input_shape = (cache.in_channels, size, size)
    metrics, efficiency, int8 = [], [], []
    calibration_inputs, calibrated = calibration(plan, item, cache, splits)
    for level in spec.levels or [top]:
        if level is None or level == top:
            net = model
        else:
            net = models.create_model(**{**model.config, "prune_level": level})
            net.load_from_full(state)
        net.to(device)
        if config.channels_last:
            net.to(memory_format=torch.channels_last)
        with torch_threads(config.threads):
            rows = evaluate_cases(net, cache, splits["test"], empty=dspec.empty, device=device,
                                  channels_last=config.channels_last, precision=precision, progress=progress)
        key = {"item": item.id, "model": spec.name, "label": spec.label, "dataset": dspec.name,
               "seed": item.seed, "level": level if level is not None else 0, "stage": stage}
        metrics += [row(RESULT_COLUMNS, **key, **r) for r in rows]
        net_cpu = net.to("cpu").to(memory_format=torch.contiguous_format)
        params, gmacs = count_params(net_cpu), fvcore_macs(net_cpu, input_shape) / 1e9
        lat = profile(net_cpu, input_shape, batch_sizes=measure.batch_sizes, precisions=measure.precision,
                      modes=("inference",), device=device, channels_last=measure.channels_last,
                      threads=measure.threads, timing=measure.timing(), runtimes=measure.runtimes,
                      quantize=measure.quantize, calibration=calibration_inputs, gmacs=gmacs,
                      energy=measure.energy)
        for r in lat:
            efficiency.append(row(
                EFFICIENCY_COLUMNS, **key, params=params, gmacs=gmacs, input="x".join(map(str, input_shape)),
                device=r["device"], batch=r["batch"], precision=r["precision"], latency_ms=r.get("median_ms"),
                p90_ms=r.get("p90_ms"), peak_mb=r.get("model_peak_mb"),
                status=r["status"],
                calibration=calibrated if r["quantize"] == "int8" and r["status"] != "unsupported" else None,
                **{c: r.get(c) for c in DEPLOYMENT_COLUMNS if c != "calibration"}))
        int8 += _score_int8(net_cpu, key, plan, cache, splits, dspec.empty, input_shape, calibration_inputs,
                            config.threads, progress)
    return metrics, efficiency, int8


def _train_info(result, config: TrainConfig) -> dict:
    return {"best_val_dice": result.best_score, "best_epoch": result.best_epoch, "epochs": result.epochs_run,
            "steps": result.steps_run, "seconds": result.seconds, "config": config.to_dict(),
            "settings": result.settings, "history": result.history}


def run_item(item: Item, plan: Plan, run_dir: str | Path, progress: bool = True,
             on_validation: Callable[[int, float], None] | None = None) -> ItemRecord:
    """Train and evaluate one plan item in the run folder ``run_dir``; return its record (every
    figure, stored on its trial).

    A channel-pruned entry (``prune_ratio > 0``) in ``finetune`` mode trains the full model,
    evaluates and measures it (stage ``before-pruning``), prunes it and fine-tunes the pruned
    model (its own ``finetune/best.pt``); in ``init`` mode the pruned widths (chosen on the
    freshly initialised model) are trained from scratch for the whole budget. The item folder
    holds ``model.json`` (``models.create_model(**config)`` rebuilds the delivered model, whose
    state dict is the last ``best.pt``) and ``overlays.npz`` (test slices for figures).
    ``on_validation(epoch, val_dice)`` goes to the main training run only
    (:func:`bench.train.train`), not to fine-tuning after pruning: a sweep's pruner judges a
    trial by it.
    """
    run_dir = Path(run_dir)
    run = Run(run_dir)
    spec, dspec = item.model, item.dataset
    cache, splits = dataset_cache(dspec, run_dir)
    device = plan.measure.device
    config = dataclasses.replace(plan.train, seed=item.seed, device=device, progress=progress)
    num_classes = get_dataset(dspec.dataset).num_classes

    seed_everything(item.seed)
    model = build_model(spec, dspec, cache.in_channels)
    pruning = None
    if spec.pruned and spec.prune_mode == "init":  # the pruned widths, freshly initialised
        shape = prune(model, spec, item.seed)
        pruning = shape.prune_report
        seed_everything(item.seed)
        model = models.create_model(**shape.config)
    train_set = CacheSlices(cache, training_slices(cache, splits["train"], seed=item.seed))
    val_idx = [i for cid in splits["val"] for i in cache.case_indices(cid)]
    val_set = CacheSlices(cache, val_idx)
    out = run.item_dir(item.id)
    tuned = train_tuned(model, train_set, val_set, num_classes, config, plan.tune, out, item=item.id,
                        train_budget=budget(plan), on_validation=on_validation)  # [tune]: studies.tune
    model, result, config = tuned.model, tuned.result, tuned.config
    precision = result.settings["precision"]
    train_info = _train_info(result, config)
    metrics, efficiency, int8 = [], [], []
    checkpoint = result.checkpoint
    if spec.pruned and spec.prune_mode == "finetune":
        metrics, efficiency, int8 = _evaluate_levels(model, spec, item, plan, cache, splits, config,
                                                     precision, "before-pruning", progress)
        model = prune(model.to("cpu").to(memory_format=torch.contiguous_format), spec, item.seed)
        pruning = model.prune_report
        tune = finetune_config(config, spec)
        if (tune.steps or tune.epochs) and spec.finetune_epochs != 0:
            finetuned = train(model, train_set, val_set, num_classes, tune, out / "finetune")
            train_info["finetune"] = _train_info(finetuned, tune)
            train_info["seconds"] += finetuned.seconds
            checkpoint = finetuned.checkpoint
        else:
            torch.save(model.state_dict(), out / "pruned.pt")
            checkpoint = str(out / "pruned.pt")
    (out / "model.json").write_text(json.dumps(model.config, indent=1))
    final_metrics, final_efficiency, final_int8 = _evaluate_levels(model, spec, item, plan, cache, splits,
                                                                   config, precision, "final", progress)
    metrics, efficiency, int8 = metrics + final_metrics, efficiency + final_efficiency, int8 + final_int8
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    with torch_threads(config.threads):
        slices = overlay_slices(model, cache, splits["test"], device=device,
                                channels_last=config.channels_last, precision=precision)
    np.savez_compressed(out / "overlays.npz", **slices)
    top = spec.levels[-1] if spec.levels else (getattr(model, "prune_level", None) or 0)
    top_rows = [r for r in final_metrics
                if r["level"] == top and r["metric"] == "dice" and r["value"] is not None]
    value = float(np.mean([r["value"] for r in top_rows])) if top_rows else float("nan")
    (out / "train.json").write_text(json.dumps(train_info, indent=1))
    size = cache.meta["size"]
    pruned = None
    if pruning is not None:
        info = pruning.to_dict()
        info.pop("kept")  # which channels: in the checkpoint's shapes; the record keeps the figures
        pruned = {**info, "mode": spec.prune_mode,
                  "finetune_epochs": (train_info.get("finetune") or {}).get("epochs", 0)}
    return ItemRecord(
        item=item.id, model=spec.name, label=spec.label, dataset=dspec.name, seed=item.seed, value=value,
        metrics=metrics, int8_metrics=int8, efficiency=efficiency, train=train_info,
        checkpoint=str(checkpoint),
        model_config=model.config, env=environment_record(device), empty=dspec.empty,
        overlays=str((out / "overlays.npz").relative_to(run_dir)), run_dir=str(run_dir.resolve()),
        conventions=item_conventions(dspec, plan, f"{cache.in_channels}x{size}x{size}"),
        splits={k: splits[k] for k in ("train", "val", "test")}, pruning=pruned, tuning=tuned.record)
