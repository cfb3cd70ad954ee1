"""The conventions behind every figure lfubench prints, written once.

Tables, figures and reports state how their numbers were obtained. The sentences live here
and nowhere else; those that depend on a run's settings (the empty-mask rule, the latency
settings) are functions of those settings, and the item pipeline stores the sentences it
used with every record, so a report states the rules its run used and no other.
"""

from __future__ import annotations

from .metrics import BRATS_MAX_DISTANCE_MM, EMPTY_CONVENTIONS

#: how MACs are counted (fvcore, the primary counter of every table)
MACS = "GMACs from fvcore, 1 multiply-add = 1 MAC (GFLOPs = 2 x GMACs), per image"

#: how the four counters of ``lfubench profile --macs`` relate
MAC_COUNTERS = (
    "fvcore's and ptflops' figures are MACs; torch.utils.flop_counter reports FLOPs "
    "(2 per multiply-add), shown /2 as MACs"
)

#: what Dice and HD95 are computed on
SCORES = (
    "Dice and HD95 in 3D per test case, on the case's original voxel grid and spacing (mm); HD95 as "
    "medpy defines it (95th percentile of both directions' surface distances pooled, surfaces by "
    "erosion with connectivity 1)"
)

#: what the parameter count counts
PARAMS = "parameters of the model as evaluated (at its pruning level)"


#: the sentence for each empty-mask rule of :mod:`bench.metrics`
EMPTY_RULES = {
    "brats": ("empty masks: both empty -> Dice 1, HD95 0; one empty -> Dice 0, HD95 "
              f"{BRATS_MAX_DISTANCE_MM:.2f} mm (the BraTS challenge's rule)"),
    "diagonal": ("empty masks: both empty -> Dice 1, HD95 0; one empty -> Dice 0, HD95 = the diagonal "
                 "of the case's own volume in mm"),
    "nan": ("empty masks: Dice and HD95 NaN where undefined, counted in the 'nan' columns, left out "
            "of means"),
}


def empty_rule(rule: str) -> str:
    """The sentence for an empty-mask rule of :mod:`bench.metrics` (``brats``, ``diagonal``, ``nan``)."""
    if rule not in EMPTY_RULES:
        raise ValueError(f"unknown empty-mask rule {rule!r}; choose one of {', '.join(EMPTY_CONVENTIONS)}")
    return EMPTY_RULES[rule]


def latency(device: str, batch: int, precision: str, input_shape: str, threads: int | None,
            channels_last: bool) -> str:
    """The sentence for a latency/memory figure measured with these settings."""
    where = device
    if device == "cpu" and threads:
        where += f", {threads} thread{'s' if threads != 1 else ''}"
    layout = "channels_last" if channels_last else "NCHW"
    return (f"latency: median ms per batch of {batch} at input {input_shape}, {precision}, {layout}, "
            f"on {where}; {PEAK_MEMORY}")


#: what a table's or a sweep's peak memory (``peak_mb``) is, and what it is not
PEAK_MEMORY = ("peak memory: the model's own peak tensor memory in MiB (weights + input + activations alive "
               "at once during one forward, model_peak_mb), not the process's resident set (peak_rss_mb, "
               "its own column, which counts the interpreter and libraries too)")


#: how each runtime is run and compared (bench.runtimes, bench.latency)
RUNTIMES = (
    "runtimes: torch = PyTorch eager, compile = torch.compile, onnxruntime = ONNX Runtime (CPU execution "
    "provider; CUDA's on a GPU), openvino = OpenVINO CPU with INFERENCE_PRECISION_HINT set to the row's "
    "precision (f32 for fp32), tensorrt = ONNX Runtime's TensorRT execution provider (CUDA only); all at "
    "the same fixed thread count, from one ONNX export (torch.onnx.export, torch.export-based, opset 18, "
    "dynamic batch), timed by the same loop; max_abs_diff = the largest absolute difference of a row's "
    "logits from PyTorch fp32 eager's on one seeded input, argmax_agreement = the fraction of pixels with "
    "the same arg-max class; precision_used = what the runtime reports it ran"
)

#: how int8 models are made and judged (bench.quantize)
INT8 = (
    "int8: static post-training quantization, ONNX Runtime QDQ (weights int8 per channel, activations int8 "
    "per tensor, min/max calibration) and OpenVINO NNCF (default preset), calibrated on 8 seeded "
    "standard-normal inputs in lfubench profile (training slices of the item's dataset in a plan); "
    "operators the runtime does not run in int8 stay fp32; in a plan, the int8 model of onnxruntime and of "
    "openvino is scored on the test cases by the same evaluation as the fp32 model (on the CPU), and gated "
    "as MLPerf Inference gates it (int8 Dice per region / fp32 Dice; thresholds in the deployment table)"
)

#: what model_peak_mb measures (bench.memory)
MODEL_MEMORY = (
    "model_peak_mb: the model's own peak tensor memory during one forward (inference rows) or one training "
    "step (train rows: gradients and Adam state included) = weights + input + activations alive at once, "
    "MiB; CPU: live tensor storages tracked per operator; CUDA: torch.cuda.max_memory_allocated; measured "
    "in PyTorch eager (the same figure on every fp32 runtime row, none for int8); the process RSS is the "
    "separate peak_rss_mb"
)

#: the hardware's limit and a row's share of it (bench.hardware)
PEAK = (
    "pct_of_peak = 100 x achieved GMAC/s (GMACs per image x batch / median s) / the device's peak fp32 "
    "GMAC/s, measured once per process as the faster of a large torch.mm and a large 3x3 convolution on "
    "the run's threads (a runtime with faster or Winograd kernels, and int8 rows, compared with the same "
    "fp32 peak, can exceed 100); memory bandwidth = best 256 MiB copy, bytes read + written"
)

#: what the arithmetic intensity divides by (bench.memory.traffic_bytes)
INTENSITY = (
    "arithmetic_intensity = MACs per byte moved in one fp32 forward per image, bytes moved = weights read "
    "once + input read once + every operator's output written once and read once (no cache reuse between "
    "operators); roofline_gmacs_per_s = min(peak, intensity x bandwidth)"
)

#: where joules come from (bench.hardware.EnergyMeter)
ENERGY = (
    "joules_per_image: energy counter difference over >= 1 s of repeated iterations / images; NVML total "
    "energy of the GPU board on CUDA, RAPL package counters (whole socket, other processes included) on "
    "the CPU; empty where no counter can be read (energy_note says why), never estimated from a TDP"
)


def tuning(search: dict[str, list], trial_budget: str, kept: bool) -> str:
    """The sentence for a plan's ``[tune]`` search (:mod:`studies.tune`): ``search`` maps each
    searched setting to its values, ``trial_budget`` is one trial's budget in words, ``kept``
    whether the winning trial is the delivered model (trial budget = training budget)."""
    grid = " x ".join(f"{k} {{{', '.join(f'{v:g}' for v in values)}}}" for k, values in search.items())
    trials = 1
    for values in search.values():
        trials *= len(values)
    delivered = ("the winning trial is the delivered model (its budget is the training budget)" if kept
                 else "the delivered model is trained afresh with the chosen values at the training budget")
    plural = "s" if trials != 1 else ""
    return (f"tuning: every model searched the same grid, {grid} ({trials} trial{plural}), "
            f"each trial {trial_budget} from the item's same initial weights, the other training settings "
            "unchanged; the values chosen are those of the trial with the best validation Dice (pooled Dice "
            "over the validation cases of the first cross-validation fold of the non-test cases, at the "
            "trial's best validation), never a test case; a tie goes to the lower last training loss, then "
            f"to the first in grid order; {delivered}; a trial whose loss diverged loses")
