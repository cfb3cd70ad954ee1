"""A small fake run for the report tests: the tidy tables of :mod:`reports.schema` with values
drawn from a seeded generator, and overlays files in the pipeline's format. No training."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lfubench.reports.schema import (
    BASE_EFFICIENCY_COLUMNS,
    EFFICIENCY_COLUMNS,
    ITEM_COLUMNS,
    RESULT_COLUMNS,
    TUNE_COLUMNS,
    frame,
    row,
)

#: (model, label, levels, params at the top level, base width)
MODELS = [
    ("unet", "U-Net w8", [0], 490_000, 8),
    ("lfunet", "LFU-Net_w8 & #1", [1, 2, 3, 4], 48_000, 8),
    ("lfunet", "LFU-Net w4", [4], 13_000, 4),
    ("unetpp", "UNet++ w8", [4], 230_000, 8),
]

REGIONS = {"lits": ["liver", "tumor"], "brats": ["WT", "TC", "ET"]}

CONVENTIONS = {
    "conv_scores": "Dice and HD95 in 3D per test case",
    "conv_params": "parameters as evaluated",
    "conv_macs": "GMACs from fvcore, 1 multiply-add = 1 MAC",
    "conv_latency": "latency: median ms per batch of 1 on cpu; peak memory in MiB (process peak RSS)",
    "conv_deployment": None,  # a run measuring PyTorch eager alone
}
EMPTY = {
    "lits": "empty masks: one empty -> Dice 0, HD95 = the diagonal of the case's own volume in mm",
    "brats": "empty masks: one empty -> Dice 0, HD95 373.13 mm (the BraTS challenge's rule)",
}


def fake_run(
    root: Path | None = None,
    datasets=("lits",),
    seeds=(0,),
    cases: int = 8,
    models=MODELS,
    overlays: bool = True,
    rng_seed: int = 0,
):
    """``(results, efficiency, items)`` of a fake run; overlays files under ``root``."""
    rng = np.random.default_rng(rng_seed)
    results, efficiency, items = [], [], []
    for dataset in datasets:
        for m, (name, label, levels, params, _width) in enumerate(models):
            for seed in seeds:
                item = f"{label}|{dataset}|s{seed}"
                for level in levels:
                    key = dict(
                        item=item,
                        model=name,
                        label=label,
                        dataset=dataset,
                        seed=seed,
                        level=level,
                        stage="final",
                    )
                    scale = (level or 4) / 4
                    for c in range(cases):
                        for region in REGIONS[dataset]:
                            dice = float(np.clip(0.5 + 0.1 * m * scale + 0.05 * rng.standard_normal(), 0, 1))
                            if region in ("tumor", "ET") and c == 0 and m == 1:
                                dice = 0.0  # a missed region
                            results.append(
                                row(
                                    RESULT_COLUMNS,
                                    **key,
                                    case=f"case{c:02d}",
                                    region=region,
                                    metric="dice",
                                    value=dice,
                                    ref_empty=False,
                                    pred_empty=dice == 0,
                                )
                            )
                            results.append(
                                row(
                                    RESULT_COLUMNS,
                                    **key,
                                    case=f"case{c:02d}",
                                    region=region,
                                    metric="hd95",
                                    value=float(30 * (1 - dice) + rng.uniform(0, 2)),
                                    ref_empty=False,
                                    pred_empty=dice == 0,
                                )
                            )
                    efficiency.append(
                        row(
                            BASE_EFFICIENCY_COLUMNS,  # as recorded before runtimes were
                            **key,
                            params=int(params * scale),
                            gmacs=params * scale / 4e6,
                            input="3x64x64",
                            device="cpu",
                            batch=1,
                            precision="fp32",
                            latency_ms=1.0 + params * scale / 1e5,
                            p90_ms=1.2,
                            peak_mb=100.0,
                            status="ok",
                        )
                    )
                ov = None
                if overlays and root is not None:
                    ov = root / "items" / f"{m}-{dataset}-{seed}" / "overlays.npz"
                    write_overlays(ov, dataset, m)
                items.append(
                    row(
                        ITEM_COLUMNS,
                        item=item,
                        model=name,
                        label=label,
                        dataset=dataset,
                        seed=seed,
                        empty="diagonal",
                        best_val_dice=0.5,
                        best_epoch=1,
                        epochs=2,
                        steps=10,
                        train_seconds=10.0 + m,
                        item_seconds=20.0 + m,
                        prune_ratio=None,
                        prune_achieved=None,
                        prune_importance=None,
                        prune_scope=None,
                        prune_mode=None,
                        finetune_epochs=None,
                        prune_seconds=None,
                        overlays=str(ov) if ov is not None else None,
                        conv_empty=EMPTY[dataset],
                        **CONVENTIONS,
                        **dict.fromkeys(TUNE_COLUMNS),
                    )
                )
    return (frame(results, RESULT_COLUMNS), frame(efficiency, EFFICIENCY_COLUMNS), frame(items, ITEM_COLUMNS))


def write_overlays(path: Path, dataset: str, model: int, slices: int = 6, size: int = 32) -> Path:
    """An overlays file: ``slices`` slices of a disc (class 1) with a small blob (class 2); the
    model's prediction is the reference shifted by ``2 model`` pixels in slice 3 and ``model`` in slice 1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    label = np.zeros((slices, size, size), np.uint8)
    for k in range(slices):
        label[k][(yy - 16) ** 2 + (xx - 16) ** 2 < (6 + k) ** 2] = 1
        label[k][(yy - 14) ** 2 + (xx - 18) ** 2 < 4] = 2
    pred = label.copy()
    pred[3] = np.roll(label[3], model * 2, axis=1)
    pred[1] = np.roll(label[1], model, axis=0)
    image = label.astype(np.float32) * 0.5 + np.random.default_rng(model).normal(0, 0.1, label.shape).astype(
        np.float32
    )
    np.savez(
        path,
        case=np.array([f"case{k:02d}" for k in range(slices)]),
        slice=np.arange(slices) * 3,
        image=image,
        label=label,
        pred=pred,
        classes=np.array(
            ["background", "liver", "tumor"]
            if dataset == "lits"
            else ["background", "edema", "enhancing", "necrosis"]
        ),
    )
    return path
