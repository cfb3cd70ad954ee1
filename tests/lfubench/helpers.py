"""Helpers of the command-line tests: a small stored run for ``lfubench report`` (a run folder with
a plan and a tiny Optuna SQLite study whose trials hold item records like the pipeline's, no
training) and the text of a PDF."""

from __future__ import annotations

import optuna
import pytest

from tests.reports.fake import CONVENTIONS, EMPTY, fake_run
from tests.studies._plans import lits, measure, toml_text, train

#: the stored run's plan, a ``str.format`` template of ``name`` and ``seed``
PLAN = toml_text('name = "{name}"\nseeds = [{seed}]', train(), measure(), lits(cases=8, tiny=False), """
[[models]]
name = "unet"
label = "U-Net w8"
base_width = 8
[[models]]
name = "lfunet"
label = "LFU-Net w4"
base_width = 4
groups = 4
levels = [4]
[[models]]
name = "unetpp"
label = "UNet++ w8"
base_width = 8
levels = [4]
""")

MODELS = [("unet", "U-Net w8", [0], 490_000, 8), ("lfunet", "LFU-Net w4", [4], 13_000, 4)]


def _record(results, efficiency, items, item, run_dir=None) -> dict:
    it = items[items["item"] == item].iloc[0]
    return {"run_dir": run_dir} | {
        "metrics": results[results["item"] == item].to_dict("records"),
        "efficiency": efficiency[efficiency["item"] == item].to_dict("records"),
        "train": {"best_val_dice": 0.5, "best_epoch": 1, "epochs": 1, "steps": 4, "seconds": 3.0},
        "env": {
            "device_type": "cpu",
            "device_name": "Fake CPU",
            "torch": "2.13.0",
            "python": "3.11",
            "git_commit": "feedbeef",
            "git_dirty": False,
        },
        "empty": "diagonal",
        "conventions": {**CONVENTIONS, "conv_empty": EMPTY["lits"]},
        "splits": {"train": ["case02"], "val": ["case03"], "test": sorted(set(results["case"]))},
        "overlays": f"items/{it['model']}/overlays.npz",
    }


def make_run(root, name: str, seed: int, run_dir: bool = False):
    """A run folder: plan.toml and study.db with two COMPLETE items and one FAIL (UNet++); with
    ``run_dir``, the records name the folder they ran in (older ones do not)."""
    root.mkdir(parents=True)
    (root / "plan.toml").write_text(PLAN.format(name=name, seed=seed))
    results, efficiency, items = fake_run(root, seeds=(seed,), cases=6, models=MODELS, rng_seed=seed)
    for k, model in enumerate(("unet", "lfunet")):  # overlays where the records say they are
        (root / "items" / model).mkdir(parents=True)
        (root / "items" / f"{k}-lits-{seed}" / "overlays.npz").rename(root / "items" / model / "overlays.npz")
    study = optuna.create_study(
        storage=f"sqlite:///{root / 'study.db'}", study_name=name, direction="maximize"
    )
    dist = {
        "item": optuna.distributions.CategoricalDistribution(
            [f"{m[1]}|lits|s{seed}" for m in MODELS] + [f"UNet++ w8|lits|s{seed}"]
        )
    }
    for item in items["item"]:
        where = str(root.resolve()) if run_dir else None
        attrs = {"item": item, **_record(results, efficiency, items, item, where), "item_seconds": 5.0}
        study.add_trial(
            optuna.trial.create_trial(params={"item": item}, distributions=dist, value=0.5, user_attrs=attrs)
        )
    failed = f"UNet++ w8|lits|s{seed}"
    study.add_trial(
        optuna.trial.create_trial(
            params={"item": failed},
            distributions=dist,
            state=optuna.trial.TrialState.FAIL,
            user_attrs={"item": failed, "fail_reason": "ValueError: diverged at epoch 1"},
        )
    )
    return results


def pdf(path) -> str:
    """The text of the PDF file ``path``, its whitespace runs made single spaces (skips the test where
    pypdf is not installed)."""
    pypdf = pytest.importorskip("pypdf")
    return " ".join(" ".join(p.extract_text() for p in pypdf.PdfReader(path).pages).split())
