"""An item's record (:class:`reports.record.ItemRecord`): stored once as trial attributes, read
once; records stored before the identity was stored still read; the tidy tables of
:mod:`studies.records` from trials."""

from __future__ import annotations

import json
import math

import optuna
import pytest
from optuna.trial import TrialState

from lfubench.reports.record import ItemRecord
from lfubench.reports.schema import ITEM_COLUMNS, RESULT_COLUMNS, row
from lfubench.studies import records
from lfubench.studies.engine import store_record

KEY = {"item": "U-Net w8|lits|s1", "model": "unet", "label": "U-Net w8", "dataset": "lits", "seed": 1}


def metric_rows(key=KEY) -> list[dict]:
    return [row(RESULT_COLUMNS, **key, level=0, stage="final", case=f"case{c}", region=region, metric="dice",
                value=0.25 * c, ref_empty=False, pred_empty=False)
            for c in (1, 2) for region in ("liver", "tumor")]


def make_record(**changes) -> ItemRecord:
    values = dict(
        **KEY, value=0.375, metrics=metric_rows(),
        efficiency=[{**KEY, "level": 0, "stage": "final", "params": 1000, "status": "ok"}],
        train={"best_val_dice": 0.5, "best_epoch": 3, "epochs": 4, "steps": 40, "seconds": 12.5},
        checkpoint="/runs/a/items/U-Net_w8_lits_s1-abc123/best.pt",
        model_config={"name": "unet", "base_width": 8},
        env={"device_type": "cpu", "torch": "2.9"}, empty="diagonal",
        overlays="items/U-Net_w8_lits_s1-abc123/overlays.npz", run_dir="/runs/a",
        conventions={"conv_scores": "Dice in 3D", "conv_empty": "one empty: Dice 0"},
        splits={"train": ("case0",), "val": ["case3"], "test": ["case1", "case2"]},
        pruning={"ratio": 0.5, "channel_ratio": 0.49, "importance": "l1", "scope": "local", "mode": "init",
                 "finetune_epochs": 0, "seconds": 0.2},
        item_seconds=20.0)
    values.update(changes)
    return ItemRecord(**values)


def test_attrs_are_json_one_per_field_and_read_back():
    record = make_record()
    attrs = record.to_attrs()
    assert list(attrs) == list(ItemRecord.attr_names())
    assert set(attrs) >= {"item", "model", "label", "dataset", "seed", "run_dir", "overlays", "item_seconds"}
    assert json.loads(json.dumps(attrs)) == attrs
    assert attrs["splits"]["train"] == ["case0"]  # tuples stored as lists
    back = ItemRecord.from_attrs({**attrs, "slot": 3, "heartbeat": 1.0, "fail_reason": ""})  # others ignored
    assert back == make_record(splits={"train": ["case0"], "val": ["case3"], "test": ["case1", "case2"]})


def test_a_record_stored_before_its_identity_takes_it_from_its_first_metric_row():
    old = {"metrics": metric_rows(), "efficiency": [], "train": {"seconds": 1.0}, "empty": "diagonal",
           "overlays": "items/x/overlays.npz", "item_seconds": 3.0, "item": "U-Net w8|lits|s1"}
    record = ItemRecord.from_attrs(old)
    assert (record.item, record.model, record.label, record.dataset, record.seed) == tuple(KEY.values())
    assert record.run_dir is None and record.checkpoint is None and record.pruning is None
    assert math.isnan(record.value) and record.item_seconds == 3.0
    # a record with its identity keeps its own, whatever its rows say
    other = {**KEY, "label": "U-Net w8 renamed"}
    assert ItemRecord.from_attrs({**old, **other}).label == "U-Net w8 renamed"
    assert ItemRecord.from_attrs({}).item is None  # a trial without a record


def test_overlays_resolve_against_the_folder_the_item_ran_in(tmp_path):
    record = make_record(run_dir=str(tmp_path / "worker"))
    assert record.overlays_file(root="/elsewhere") == tmp_path / "worker" / record.overlays
    old = make_record(run_dir=None)
    assert old.overlays_file(root=tmp_path) == tmp_path / old.overlays
    assert make_record(overlays=None).overlays_file(tmp_path) is None


def test_store_record_stores_every_field_on_the_trial():
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, direction="maximize")
    trial = study.ask()
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    stored = store_record(storage, trial_id, make_record(item_seconds=None), 7.5)
    study.tell(trial, stored["value"])
    frozen = study.trials[0]
    assert frozen.value == 0.375
    assert frozen.user_attrs == stored and stored["item_seconds"] == 7.5
    assert ItemRecord.from_attrs(frozen.user_attrs) == make_record(
        item_seconds=7.5, splits={"train": ["case0"], "val": ["case3"], "test": ["case1", "case2"]})


def _trials(record_attrs: list[dict], states=None) -> list:
    dist = {"item": optuna.distributions.CategoricalDistribution([a.get("item") for a in record_attrs])}
    out = []
    for k, attrs in enumerate(record_attrs):
        state = (states or {}).get(k, TrialState.COMPLETE)
        value = 0.5 if state == TrialState.COMPLETE else None
        out.append(optuna.trial.create_trial(params={"item": attrs.get("item")}, distributions=dist,
                                             state=state, value=value, user_attrs=attrs))
    return out


def test_tables_read_new_and_old_records_alike():
    new = make_record().to_attrs()
    old_key = {**KEY, "item": "U-Net w8|lits|s2", "seed": 2}
    old = {k: v for k, v in make_record(**old_key, metrics=metric_rows(old_key)).to_attrs().items()
           if k not in ("model", "label", "dataset", "seed", "run_dir", "value")}  # as stored before
    failed = {"item": "UNet++|lits|s1", "fail_reason": "ValueError: diverged"}
    trials = _trials([new, old, failed], states={2: TrialState.FAIL})
    results, efficiency, items = records.collect([t for t in trials if t.state == TrialState.COMPLETE])
    assert len(results) == 8 and list(results.columns) == RESULT_COLUMNS
    assert list(items.columns) == ITEM_COLUMNS
    assert items["item"].tolist() == ["U-Net w8|lits|s1", "U-Net w8|lits|s2"]
    assert items["seed"].tolist() == [1, 2] and items["item_seconds"].tolist() == [20.0, 20.0]
    first = items.iloc[0]
    assert (first["best_val_dice"], first["prune_ratio"], first["prune_mode"], first["conv_scores"]) == (
        0.5, 0.5, "init", "Dice in 3D")
    assert records.item_row(new) == records.item_row(make_record())
    assert records.item_row(new, item_seconds=1.0)["item_seconds"] == 1.0
    assert [r.item for r in records.records(trials)] == ["U-Net w8|lits|s1", "U-Net w8|lits|s2"]
    split = {"train": ["case0"], "val": ["case3"], "test": ["case1", "case2"]}
    assert records.splits(trials) == {"lits": split}
    env = records.environments(trials)
    assert env["item"].tolist() == ["U-Net w8|lits|s1", "U-Net w8|lits|s2"] and set(env["torch"]) == {"2.9"}
    fails = records.failures(trials)
    assert fails.to_dict("records") == [{"item": "UNet++|lits|s1", "state": "failed", "attempts": 1,
                                         "reason": "ValueError: diverged"}]


def local_storage(tmp_path):
    """An RDB storage class that opens a SQLite file in ``tmp_path`` whatever URL it is given."""

    class Local(optuna.storages.RDBStorage):
        def __init__(self, url, **kwargs):
            super().__init__(f"sqlite:///{tmp_path}/local.db")

    return Local


def test_load_trials_of_a_missing_study_hides_the_password(monkeypatch, tmp_path):
    from lfubench.bench.errors import LfubenchError

    monkeypatch.setattr(optuna.storages, "RDBStorage", local_storage(tmp_path))
    with pytest.raises(LfubenchError) as err:
        records.load_trials("postgresql://lfu:s3cret-pw@db.example/bench", "nope")
    assert str(err.value) == "storage postgresql://lfu:***@db.example/bench has no study 'nope'; it has none"
