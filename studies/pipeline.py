"""One plan item, start to finish: dataset, cache, splits, training, evaluation at every
pruning level, complexity and latency -- and the run folder that holds it all.

Run folder (``runs/NAME`` by default)::

    study.db            the Optuna storage (SQLite) unless --storage names another
    data/<dataset>/     generated phantoms, in the real LiTS / BraTS 2018 layouts
    cache/              preprocessed slice caches (one per dataset and preprocessing)
    items/<item>/       best.pt (state dict) and train.json of each item
    results.csv, results.parquet, efficiency.csv, table.{csv,md,tex}, pareto_*.png, report.pdf

Splits are made per dataset from its case ids (case level, seeded by the dataset's
``split_seed``, default 0) and are the same for every model and seed of the plan; the item's
seed drives the model initialisation, the training-slice draw and the loader order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

import models
from bench.complexity import count_params, fvcore_macs
from bench.data import (
    PreprocessConfig,
    make_splits,
    open_cache,
    prepare_cache,
    training_slices,
    write_phantom,
)
from bench.data.splits import SPLITS_FILE, write_splits
from bench.environment import environment_record
from bench.evaluate import evaluate_cases
from bench.latency import Timing, profile
from bench.train import TrainConfig, seed_everything, train

log = logging.getLogger(__name__)

NUM_CLASSES = {"lits": 3, "brats": 4}
REGIONS = {"lits": ["liver", "tumor"], "brats": ["WT", "TC", "ET"]}


def slug(text: str) -> str:
    """A folder name for ``text``: its safe characters plus a short hash, so distinct texts
    never share a folder (``UNet++`` and ``UNet+`` both reduce to ``UNet``)."""
    safe = re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")
    return f"{safe}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"


class CacheSlices(Dataset):
    """Training/validation items ``(image float32 CxSxS, label int64 SxS)`` from a slice cache."""

    def __init__(self, cache, indices) -> None:
        self.cache, self.indices = cache, np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        x, y = self.cache[int(self.indices[i])]
        return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


def dataset_name(kind: str) -> str:
    return "brats" if kind.endswith("brats") else "lits"


def dataset_root(spec, run_dir: Path) -> Path:
    """The dataset folder: the plan's root, or phantoms generated once under ``run_dir/data``.

    Phantoms are written to a temporary folder renamed into place when complete, so an
    interrupted generation is redone and concurrent workers never read a partial set.
    """
    if not spec.kind.startswith("phantom"):
        return Path(spec.root)
    final = run_dir / "data" / spec.name
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{spec.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    opts = spec.options
    shape = tuple(opts["shape"]) if "shape" in opts else None
    try:
        write_phantom(dataset_name(spec.kind), tmp, cases=int(opts.get("cases", 12)), shape=shape,
                      seed=int(opts.get("phantom_seed", 0)))
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # left only if another worker renamed first
    return final


def dataset_cache(spec, run_dir: Path):
    """The opened slice cache of a plan dataset (built on first use) and its splits."""
    dataset = dataset_name(spec.kind)
    root = dataset_root(spec, run_dir)
    size = spec.options.get("size")
    config = PreprocessConfig(dataset, size=size)
    path = prepare_cache(dataset, root, run_dir / "cache", config, progress=True)
    cache = open_cache(path)
    if (path / SPLITS_FILE).is_file():
        splits = json.loads((path / SPLITS_FILE).read_text())
    else:
        groups = {cid: c.get("group") for cid, c in cache.cases.items()}
        test = float(spec.options.get("test", 0.2))
        n = len(cache.case_ids)
        folds = int(spec.options.get("folds", min(5, max(2, n - max(1, round(test * n))))))
        splits = make_splits(cache.case_ids, seed=int(spec.options.get("split_seed", 0)),
                             test_fraction=test, folds=folds, groups=groups)
        write_splits(path, splits)
    return cache, splits


def _timing(measure: dict) -> Timing:
    """Latency bounds from the plan: ``warmup`` caps warm-up iterations, ``iterations`` the loop."""
    kw = {}
    if "warmup" in measure:
        kw["max_warmup"] = max(int(measure["warmup"]), Timing.min_warmup)
    if "iterations" in measure:
        kw["max_iters"] = max(int(measure["iterations"]), Timing.min_iters)
    return Timing(**kw)


def build_model(spec, dataset: str, in_channels: int, **extra) -> torch.nn.Module:
    return models.create_model(spec.name, in_channels=in_channels, num_classes=NUM_CLASSES[dataset],
                               **{**spec.kwargs, **extra})


def run_item(item, plan, run_dir: str | Path, progress: bool = True) -> dict:
    """Train and evaluate one plan item; return every figure (JSON-able) for its trial."""
    run_dir = Path(run_dir)
    spec, dspec = item.model, item.dataset
    dataset = dataset_name(dspec.kind)
    cache, splits = dataset_cache(dspec, run_dir)
    measure = plan.measure
    device = measure.get("device", "cpu")
    threads = measure.get("threads")
    if threads:
        torch.set_num_threads(int(threads))

    seed_everything(item.seed)
    model = build_model(spec, dataset, cache.in_channels)
    train_set = CacheSlices(cache, training_slices(cache, splits["train"], seed=item.seed))
    val_idx = [i for cid in splits["val"] for i in cache.case_indices(cid)]
    val_set = CacheSlices(cache, val_idx)
    config = TrainConfig(**{**plan.train, "seed": item.seed, "device": device, "progress": progress})
    out = run_dir / "items" / slug(item.id)
    result = train(model, train_set, val_set, NUM_CLASSES[dataset], config, out)
    state = {k: v.cpu() for k, v in model.state_dict().items()}

    top = getattr(model, "prune_level", None)
    levels = spec.levels or [top]
    size = cache.meta["size"]
    input_shape = (cache.in_channels, size, size)
    metrics, efficiency = [], []
    for level in levels:
        if level is None or level == top:
            net = model
        else:
            net = build_model(spec, dataset, cache.in_channels, prune_level=level)
            net.load_from_full(state)
        net.to(device)
        if config.channels_last:
            net.to(memory_format=torch.channels_last)
        rows = evaluate_cases(net, cache, splits["test"], device=device, channels_last=config.channels_last)
        base = {"item": item.id, "model": spec.name, "label": spec.label, "dataset": dspec.name,
                "seed": item.seed, "level": level if level is not None else 0}
        metrics += [{**base, **r} for r in rows]
        net_cpu = net.to("cpu").to(memory_format=torch.contiguous_format)
        eff = {**base, "params": count_params(net_cpu), "gmacs": fvcore_macs(net_cpu, input_shape) / 1e9,
               "input": "x".join(map(str, input_shape))}
        lat = profile(net_cpu, input_shape, batch_sizes=measure.get("batch_sizes", [1]),
                      precisions=measure.get("precision", ["fp32"]), modes=("inference",), device=device,
                      channels_last=measure.get("channels_last", True), threads=threads,
                      timing=_timing(measure))
        for row in lat:
            efficiency.append({**eff, "device": row["device"], "batch": row["batch"],
                               "precision": row["precision"], "latency_ms": row.get("median_ms"),
                               "p90_ms": row.get("p90_ms"),
                               "peak_mb": row.get("peak_allocated_mb") or row.get("peak_rss_mb"),
                               "status": row["status"]})
    top_rows = [r for r in metrics if r["level"] == (levels[-1] or 0) and r["metric"] == "dice"
                and r["value"] is not None]
    value = float(np.mean([r["value"] for r in top_rows])) if top_rows else float("nan")
    train_info = {"best_val_dice": result.best_score, "best_epoch": result.best_epoch,
                  "epochs": result.epochs_run, "steps": result.steps_run, "seconds": result.seconds,
                  "config": config.to_dict(), "history": result.history}
    (out / "train.json").write_text(json.dumps(train_info, indent=1))
    return {"value": value, "metrics": metrics, "efficiency": efficiency, "train": train_info,
            "checkpoint": str(result.checkpoint), "env": environment_record(device),
            "splits": {k: splits[k] for k in ("train", "val", "test")}}
