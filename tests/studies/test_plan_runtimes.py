"""[measure] runtimes and quantize: declared in the schema, refused in one line naming the key."""

from __future__ import annotations

import importlib.util

import pytest

from lfubench.studies.plan import PlanError, check_devices, load_plan

PLAN = """
seeds = [0]
[train]
epochs = 1
[measure]
device = "cpu"
{measure}
[[datasets]]
name = "lits"
kind = "phantom-lits"
cases = 4
[[models]]
name = "unet"
base_width = 4
"""


def _plan(tmp_path, measure: str = ""):
    path = tmp_path / "plan.toml"
    path.write_text(PLAN.format(measure=measure))
    return path


def _problem(path) -> str:
    """The one problem line of a plan that fails to load."""
    with pytest.raises(PlanError) as info:
        load_plan(path)
    lines = str(info.value).splitlines()
    assert lines[0] == "1 problem(s) in plan:"
    assert len(lines) == 2
    return lines[1]


def test_defaults_measure_torch_unquantized_without_energy(tmp_path):
    plan = load_plan(_plan(tmp_path))
    assert plan.measure.runtimes == ["torch"] and plan.measure.quantize == ["none"]
    assert plan.measure.energy is False
    measure = plan.to_dict()["measure"]
    assert measure["runtimes"] == ["torch"] and measure["quantize"] == ["none"]


def test_runtimes_and_quantize_are_read(tmp_path):
    plan = load_plan(_plan(tmp_path, 'runtimes = ["torch", "onnxruntime"]\nquantize = ["none", "int8"]'))
    assert plan.measure.runtimes == ["torch", "onnxruntime"] and plan.measure.quantize == ["none", "int8"]
    again = load_plan(_plan(tmp_path), overrides=['measure.runtimes=["torch", "openvino"]'])
    assert again.measure.runtimes == ["torch", "openvino"]


def test_an_unknown_runtime_or_quantization_names_the_key(tmp_path):
    path = _plan(tmp_path, 'runtimes = ["torch", "tflite"]')
    assert _problem(path) == (f"{path}: [measure]: runtimes 'tflite' is not one of torch, compile, "
                              "onnxruntime, openvino, tensorrt")
    path = _plan(tmp_path, 'quantize = ["int4"]')
    assert _problem(path) == f"{path}: [measure]: quantize 'int4' is not one of none, int8"
    path = _plan(tmp_path, "runtimes = []")
    assert _problem(path) == f"{path}: [measure]: runtimes must have at least 1 item(s), got 0"


def test_tensorrt_on_the_cpu_is_refused_in_one_line(tmp_path):
    path = _plan(tmp_path, 'runtimes = ["torch", "tensorrt"]')
    assert _problem(path) == (f"{path}: [measure]: runtimes 'tensorrt' runs on NVIDIA GPUs only, and device "
                              "is 'cpu' (set device = \"cuda\", or leave tensorrt out)")


def test_a_runtime_whose_package_is_missing_names_the_extra(tmp_path, monkeypatch):
    path = _plan(tmp_path, 'runtimes = ["torch", "openvino"]\nquantize = ["none", "int8"]')
    plan = load_plan(path)  # loading does not check the machine: a run's plan is read back anywhere
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "nncf" else real(name, *a))
    with pytest.raises(PlanError) as info:
        check_devices(plan, None, cuda_devices=0)
    assert str(info.value) == (f"{path}: [measure] runtimes: runtime 'openvino' needs nncf, not installed: "
                               "pip install 'lfubench[openvino]'")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(PlanError, match=r"runtime 'openvino' needs onnx, onnxscript, openvino, nncf, not "):
        check_devices(plan, None, cuda_devices=0)
    check_devices(load_plan(_plan(tmp_path)), None, cuda_devices=0)  # torch alone needs nothing more
