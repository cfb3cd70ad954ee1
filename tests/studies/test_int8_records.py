"""The int8 models' scores in an item's record: kept apart from its metrics (so no score, sweep
objective or progress line of an item is an int8 one), joined to the results table beside them;
records stored before int8 was scored read as the model as trained."""

from __future__ import annotations

from types import SimpleNamespace

from lfubench.reports.aggregate import aggregate, series
from lfubench.reports.record import ItemRecord
from lfubench.reports.schema import RESULT_COLUMNS, row
from lfubench.studies.objectives import record_figures
from lfubench.studies.pipeline import scored_int8
from lfubench.studies.records import collect
from lfubench.studies.schema import MeasureSpec

KEY = {"item": "U-Net w8|lits|s0", "model": "unet", "label": "U-Net w8", "dataset": "lits", "seed": 0,
       "level": 0, "stage": "final"}


def _rows(value: float, **model) -> list[dict]:
    return [row(RESULT_COLUMNS, **KEY, **model, case=f"c{c}", region=region, metric="dice",
                value=value + c / 10, ref_empty=False, pred_empty=False)
            for c in range(2) for region in ("liver", "tumor")]


def _trial(record: ItemRecord | dict):
    attrs = record.to_attrs() if isinstance(record, ItemRecord) else record
    return SimpleNamespace(user_attrs=attrs)


def test_int8_rows_join_the_results_but_no_score_of_the_item():
    train = {"best_val_dice": 0.5, "best_epoch": 1, "epochs": 1, "steps": 4, "seconds": 2.0}
    record = ItemRecord(**{k: KEY[k] for k in ItemRecord.IDENTITY}, value=0.55, metrics=_rows(0.5),
                        int8_metrics=_rows(0.2, runtime="onnxruntime", quantize="int8"), train=train)
    back = ItemRecord.from_attrs(record.to_attrs())
    assert back.int8_metrics == record.int8_metrics and back.metrics == record.metrics
    # another seed's record, stored before int8 was scored: no int8_metrics, no runtime or quantize
    s1 = {"item": "s1", "seed": 1}
    old = {k: v for k, v in record.to_attrs().items() if k != "int8_metrics"} | s1
    old["metrics"] = [{k: v for k, v in r.items() if k not in ("runtime", "quantize")} | s1
                      for r in old["metrics"]]
    assert ItemRecord.from_attrs(old).int8_metrics == []

    results, _, items = collect([_trial(record), _trial(old)])
    assert len(results) == 3 * 4 and len(items) == 2
    pairs = results.groupby(["runtime", "quantize"]).size().to_dict()
    assert pairs == {("onnxruntime", "int8"): 4, ("torch", "none"): 8}  # the old record's rows: as trained
    # the results table and a sweep's objectives see the model as trained only
    assert series(aggregate(results), "dice", "liver").tolist() == [0.55]
    figures = record_figures(record.to_attrs(), ["dice:liver", "dice:mean"], MeasureSpec())
    assert figures == {"dice:liver": 0.55, "dice:mean": 0.55}


def test_the_runtimes_whose_int8_model_a_plan_scores():
    def plan(runtimes, quantize):
        return SimpleNamespace(measure=MeasureSpec(runtimes=runtimes, quantize=quantize))

    assert scored_int8(plan(["torch", "openvino", "compile", "onnxruntime"], ["none", "int8"])) == [
        "openvino", "onnxruntime"]
    assert scored_int8(plan(["torch", "onnxruntime"], ["none"])) == []
    assert scored_int8(plan(["torch", "compile"], ["none", "int8"])) == []
