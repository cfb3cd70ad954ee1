"""``lfubench profile``: latency, throughput and peak memory (and MACs) of zoo models, in each runtime.

A model is a zoo name or a user's own model (``package.module:callable``, e.g. ``mynet:build`` for
``build`` in ``mynet.py`` of the working folder; or an entry-point model): built with ``in_channels``
from ``--input`` unless given, and given one dry forward at the input size (``models.check_forward``)
before anything is measured.

One call measures one or more models (``MODEL [KEY=VALUE ...]`` repeated, or ``--all`` with an
optional ``--pattern``) over a grid of runtimes (``--runtime torch,compile,onnxruntime,openvino``,
``tensorrt`` on CUDA), quantizations (``--quantize none,int8``), batch sizes, precisions and modes:
one row per model x runtime x quantization x batch x precision x mode. ``--baseline`` adds each
row's ratios of MACs, latency and the model's own peak memory to one of the models in the same
runtime and quantization (e.g. U-Net on a GPU: does a model with a tenth of the MACs run ten times
faster?).

Every mistake in the arguments raises :class:`bench.errors.LfubenchError` (one line, exit 2);
any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import time

import torch

from lfubench import models
from lfubench.bench.complexity import fvcore_macs, mac_report, param_counts, report_rows
from lfubench.bench.conventions import ENERGY, INT8, INTENSITY, MACS, MODEL_MEMORY, PEAK, RUNTIMES
from lfubench.bench.environment import environment_record, format_environment
from lfubench.bench.errors import LfubenchError
from lfubench.bench.latency import MODES, PRECISIONS, Timing, profile
from lfubench.bench.runtimes import QUANTIZE, check_runtimes
from lfubench.bench.runtimes import RUNTIMES as RUNTIME_NAMES
from lfubench.models._registry import is_user_model
from lfubench.reports.text import FORMATS, format_rows

from .args import parse_kwargs, parse_list, parse_shape
from .macs import MAC_HEADER, render_markdown

log = logging.getLogger(__name__)

MD_COLUMNS = (
    "model",
    "input",
    "batch",
    "precision",
    "mode",
    "status",
    "iters",
    "median_ms",
    "p90_ms",
    "p99_ms",
    "iqr_ms",
    "images_per_s",
    "params",
    "params_used",
    "gmacs",
)
#: shown after the memory columns in Markdown: the model's own memory and the share of the hardware
MODEL_COLUMNS = ("model_peak_mb", "pct_of_peak")
#: shown in Markdown when more than the default runtime or quantization is measured
RUNTIME_COLUMNS = ("runtime", "quantize")
DEPLOY_COLUMNS = ("max_abs_diff", "precision_used", "model_file_mb", "joules_per_image")
RATIO_COLUMNS = ("gmacs_ratio", "latency_ratio", "memory_ratio")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="latency, throughput and peak memory of models (or --macs: the four MAC counters)",
        description="Measure zoo models' inference forward and training step, in each runtime. Model "
        "constructor arguments follow each name as KEY=VALUE; several models may be given "
        "(e.g. lfunet base_width=8 unet base_width=32).",
    )
    p.add_argument(
        "targets",
        nargs="*",
        metavar="MODEL [KEY=VALUE ...]",
        help="model names (see lfubench zoo) or your own as package.module:callable, each followed by its "
        "constructor arguments; omit with --all",
    )
    p.add_argument("--all", action="store_true", help="every zoo model at its default widths")
    p.add_argument("--pattern", default=None, help="with --all: only the models matching this wildcard")
    p.add_argument(
        "--attr",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a model attribute after construction, e.g. --attr dedupe=false (LFU-Net in "
        "the authors' order of work); repeatable",
    )
    p.add_argument(
        "--input",
        default="3x256x256",
        help="CxHxW (default 3x256x256); with --all each model "
        "gets its own default number of input channels at HxW",
    )
    p.add_argument("--batch", default="1", help="comma-separated batch sizes (default 1)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="default cpu")
    p.add_argument(
        "--precision",
        default="fp32",
        help=f"comma-separated, of {', '.join(PRECISIONS)} (fp16/bf16 via autocast; default fp32)",
    )
    p.add_argument(
        "--mode",
        default=",".join(MODES),
        help="comma-separated, of inference, train (train = forward + backward + Adam step; default both)",
    )
    p.add_argument(
        "--runtime",
        default="torch",
        help=f"comma-separated, of {', '.join(RUNTIME_NAMES)} (default torch = PyTorch eager; tensorrt on "
        "CUDA only; the ONNX-based runtimes measure inference only)",
    )
    p.add_argument(
        "--quantize",
        default="none",
        help="comma-separated, of none, int8 (int8: static post-training quantization in onnxruntime and "
        "openvino, calibrated on 8 seeded random inputs; default none)",
    )
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format (PyTorch)")
    p.add_argument("--compile", action="store_true", help="torch.compile the forward (= --runtime compile)")
    p.add_argument(
        "--threads", type=int, default=None,
        help="CPU threads of every runtime (torch and ONNX Runtime intra-op, OpenVINO INFERENCE_NUM_THREADS; "
        "default: torch's current count)",
    )
    p.add_argument("--min-iters", type=int, default=Timing.min_iters, help="measured iterations, at least")
    p.add_argument("--max-iters", type=int, default=Timing.max_iters, help="measured iterations, at most")
    p.add_argument(
        "--time",
        type=float,
        default=Timing.max_time_s,
        help="stop measuring after this many seconds once --min-iters are done",
    )
    p.add_argument("--warmup-time", type=float, default=Timing.max_warmup_s, help="warm-up bound in seconds")
    p.add_argument(
        "--baseline",
        metavar="MODEL",
        help="add the ratios of GMACs, median latency and the model's own peak memory to this model's row "
        "in the same runtime, quantization, batch, precision and mode (its name as given, or as displayed "
        "with its settings)",
    )
    p.add_argument(
        "--macs",
        action="store_true",
        help="instead of timing: the four MAC counters side by side, reconciled per op category "
        "and per module",
    )
    p.add_argument("--module-depth", type=int, default=2, help="module depth of the --macs breakdown")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default md)")
    p.set_defaults(func=run)


def build(name: str, kwargs: dict, attrs: dict) -> torch.nn.Module:
    """``models.create_model(name, **kwargs)`` with ``attrs`` set on it (each must exist)."""
    torch.manual_seed(0)
    model = models.create_model(name, **kwargs)
    for key, value in attrs.items():
        if not hasattr(model, key) or callable(getattr(model, key)):
            raise LfubenchError(f"model {name!r} has no attribute {key!r} to set with --attr")
        setattr(model, key, value)
    return model


def build_all(targets: list[tuple[str, dict]], attrs: dict, shape: tuple[int, int, int],
              own_channels: bool) -> list[tuple[str, dict, torch.nn.Module, tuple[int, int, int]]]:
    """Every model built and its input checked before anything is measured, so that a mistake in
    the last model's arguments stops the run at once: ``(display name, settings, model, input)``.
    With ``own_channels`` (``--all``) an outside baseline that cannot run here (its library is
    missing, or it does not take the input size) is skipped with a warning naming why."""
    out = []
    for name, kwargs in targets:
        user = is_user_model(name)
        given = {"in_channels": shape[0], **kwargs} if user and not own_channels else kwargs
        given = {**models.sized_arguments(name, shape[1]), **given}
        try:
            model = build(name, given, attrs)
            ishape = fit_input(model, shape, own_channels)
        except (models.ModelConfigError, LfubenchError) as err:
            if user or not own_channels or models.model_source(name) not in models.OUTSIDE_SOURCES:
                raise
            log.warning("--all: %s skipped: %s", name, err)
            continue
        if user:
            models.check_forward(model, ishape)
        out.append((display_name(name, kwargs, attrs), {**kwargs, **attrs}, model, ishape))
    return out


def display_name(name: str, kwargs: dict, attrs: dict) -> str:
    settings = [f"{k}={v}" for k, v in {**kwargs, **attrs}.items()]
    return f"{name} ({', '.join(settings)})" if settings else name


def parse_targets(tokens: list[str]) -> list[tuple[str, dict]]:
    """``["lfunet", "base_width=8", "unet"]`` -> ``[("lfunet", {"base_width": 8}), ("unet", {})]``.

    A token without ``=`` starts a model; the first token must be one. A later token without ``=``
    must be a registered model name or a reference ``package.module:callable`` (an unknown first
    name is left to ``models.create_model``, which suggests close matches).
    """
    groups: list[tuple[str, list[str]]] = []
    known = set(models.list_models())
    for token in tokens:
        if "=" in token:
            if not groups:
                raise LfubenchError(f"the first argument must be a model name, got {token!r}")
            groups[-1][1].append(token)
        elif not groups or token in known or models.is_reference(token):
            groups.append((token, []))
        else:
            close = difflib.get_close_matches(token, known, n=3, cutoff=0.6)
            hint = f"; close model names: {', '.join(close)}" if close else ""
            raise LfubenchError(
                f"model argument {token!r} of {groups[-1][0]!r} must look like KEY=VALUE "
                f"(or name a model: see lfubench zoo){hint}"
            )
    return [(name, parse_kwargs(items)) for name, items in groups]


def _targets(args) -> list[tuple[str, dict]]:
    if args.pattern is not None and not args.all:
        raise LfubenchError("--pattern selects models for --all; give --all too")
    if args.all:
        if args.targets:
            raise LfubenchError("give either a MODEL or --all, not both")
        pattern = args.pattern or "*"
        names = models.list_models(pattern)
        if not names:
            raise LfubenchError(f"no model matches --pattern {pattern!r} (see lfubench zoo)")
        return [(name, {}) for name in names]
    if not args.targets:
        raise LfubenchError("name a MODEL (see lfubench zoo) or give --all")
    return parse_targets(args.targets)


def fit_input(model, shape: tuple[int, int, int], own_channels: bool) -> tuple[int, int, int]:
    """The ``(C, H, W)`` input of ``model`` for ``--input shape``: with ``own_channels`` (``--all``,
    ``lfubench zoo``) C is the model's own ``in_channels``; otherwise C must equal it. H and W
    must suit the model (``model.check_input``)."""
    c, h, w = shape
    in_ch = getattr(model, "in_channels", c)
    if c != in_ch:
        if not own_channels:
            raise LfubenchError(
                f"--input has {c} channels but the model takes {in_ch}; "
                f"pass in_channels={c} or --input {in_ch}x{h}x{w}"
            )
        c = in_ch
    if hasattr(model, "check_input"):
        try:
            model.check_input(torch.empty(1, c, h, w, device="meta"))
        except ValueError as err:  # the model's own check of the size the user asked for
            raise LfubenchError(f"--input {c}x{h}x{w}: {err}") from None
    return c, h, w


def _batches(text: str) -> list[int]:
    try:
        batches = [int(b) for b in parse_list(text, what="batch size")]
    except ValueError:
        batches = [0]
    if min(batches) < 1:
        raise LfubenchError(f"--batch sizes must be positive integers (e.g. 1,16), got {text!r}")
    return batches


def _check_numbers(args) -> None:
    """The numeric options, checked before anything is built (one line naming the option)."""
    limits = [
        ("--min-iters", args.min_iters, 1),
        ("--max-iters", args.max_iters, max(args.min_iters, 1)),
        ("--time", args.time, 0),
        ("--warmup-time", args.warmup_time, 0),
        ("--module-depth", args.module_depth, 1),
    ]
    if args.threads is not None:
        limits.append(("--threads", args.threads, 1))
    for option, value, low in limits:
        if value < low:
            raise LfubenchError(f"{option} must be at least {low}, got {value}")


def run(args: argparse.Namespace) -> int:
    shape = parse_shape(args.input)
    attrs = parse_kwargs(args.attr, "--attr")
    _check_numbers(args)
    targets = _targets(args)
    if args.macs:
        return _run_macs(args, targets, attrs, shape)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise LfubenchError(
            "--device cuda: CUDA is not available on this machine "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none'})"
        )
    batches = _batches(args.batch)
    precisions = parse_list(args.precision, PRECISIONS, "precision")
    modes = parse_list(args.mode, MODES, "mode")
    runtimes = parse_list(args.runtime, RUNTIME_NAMES, "runtime")
    quantize = parse_list(args.quantize, QUANTIZE, "quantization")
    if args.compile:
        if runtimes != ["torch"]:
            raise LfubenchError("give --runtime compile (with the other runtimes) instead of --compile")
        runtimes = ["compile"]
    check_runtimes(runtimes, quantize, args.device)  # a missing package: one line naming the extra
    timing = Timing(
        min_iters=args.min_iters,
        max_iters=args.max_iters,
        max_time_s=args.time,
        max_warmup_s=args.warmup_time,
    )
    names = [display_name(name, kwargs, attrs) for name, kwargs in targets]
    baseline = _baseline(args.baseline, targets, names) if args.baseline else None
    built = build_all(targets, attrs, shape, args.all)
    rows = []
    start = time.perf_counter()
    for shown, settings, model, ishape in built:
        counts = param_counts(model, ishape)
        extra = {
            "params": counts.total,
            "params_trainable": counts.trainable,
            "params_used": counts.used,
            "gmacs": fvcore_macs(model, ishape) / 1e9,
        }
        rows += profile(
            model,
            ishape,
            name=shown,
            model_kwargs=settings,
            batch_sizes=batches,
            precisions=precisions,
            modes=modes,
            device=args.device,
            channels_last=args.channels_last,
            threads=args.threads,
            timing=timing,
            extra=extra,
            runtimes=runtimes,
            quantize=quantize,
        )
        if len(built) > 1:
            log.info("[%6.1f s] %s done", time.perf_counter() - start, shown)
    if baseline:
        add_ratios(rows, baseline)
    print(render_rows(rows, args.format, baseline))
    return 0 if any(r["status"] == "ok" for r in rows) else 1


def _baseline(wanted: str, targets: list[tuple[str, dict]], names: list[str]) -> str:
    """The display name of the ``--baseline`` model among the profiled ones."""
    if wanted in names:
        return wanted
    matches = [shown for (name, _), shown in zip(targets, names, strict=True) if name == wanted]
    if len(matches) != 1:
        why = "is not among" if not matches else "matches several of"
        raise LfubenchError(
            f"--baseline {wanted!r} {why} the profiled models ({', '.join(names)}); give one of them"
        )
    return matches[0]


#: the fields a row is matched with its baseline row on
RATIO_KEYS = ("runtime", "quantize", "batch", "precision", "mode")


def add_ratios(rows: list[dict], baseline: str) -> None:
    """Add ``gmacs_ratio``, ``latency_ratio`` (median) and ``memory_ratio`` (the model's own peak,
    ``model_peak_mb``) of each row to the ``baseline`` model's row in the same runtime, quantization,
    batch, precision and mode (``None`` where either failed or has no figure)."""
    ref = {tuple(r[k] for k in RATIO_KEYS): r for r in rows if r["model"] == baseline}

    def ratio(a, b):
        return None if a is None or not b else a / b

    for r in rows:
        base = ref.get(tuple(r[k] for k in RATIO_KEYS))
        ok = base is not None and r["status"] == base["status"] == "ok"
        r["gmacs_ratio"] = ratio(r["gmacs"], base["gmacs"]) if base else None
        r["latency_ratio"] = ratio(r["median_ms"], base["median_ms"]) if ok else None
        r["memory_ratio"] = ratio(r["model_peak_mb"], base["model_peak_mb"]) if ok else None


def render_rows(rows: list[dict], fmt: str, baseline: str | None = None) -> str:
    """Markdown: conventions and the environment once, then the main columns; CSV/JSON: all fields."""
    if fmt != "md":
        return format_rows(rows, fmt, conventions(rows[0], baseline, _deployment(rows)) if rows else None)
    first = rows[0]
    mem = ["peak_allocated_mb", "peak_reserved_mb"] if first["device"].startswith("cuda") else ["peak_rss_mb"]
    deploy = _deployment(rows)
    columns = (
        list(MD_COLUMNS[:1]) + list(RUNTIME_COLUMNS if deploy else ()) + list(MD_COLUMNS[1:12]) + mem
        + list(MODEL_COLUMNS) + list(DEPLOY_COLUMNS if deploy else ()) + list(MD_COLUMNS[12:])
        + list(RATIO_COLUMNS if baseline else ())
    )
    shown = [{c: ("n/a" if r.get(c) is None else r[c]) for c in columns} for r in rows]
    env = {k.removeprefix("env_"): v for k, v in first.items() if k.startswith("env_")}
    header = conventions(first, baseline, deploy) + "\n\nEnvironment:\n" + format_environment(env)
    text = format_rows(shown, "md", header)
    def where(r):
        runtime = f" {r['runtime']} {r['quantize']}" if deploy else ""
        return f"- {r['model']}{runtime} batch {r['batch']} {r['precision']} {r['mode']}"

    notes = [f"{where(r)}: {r['status']}: {r['error']}" for r in rows if r["status"] in ("oom", "error")]
    skipped = [f"{where(r)}: {r['error']}" for r in rows if r["status"] == "unsupported"]
    if notes:
        text += "\n\nFailed configurations:\n" + "\n".join(notes)
    if skipped:
        text += "\n\nNot measured:\n" + "\n".join(skipped)
    return text


def _deployment(rows: list[dict]) -> bool:
    """Whether more than PyTorch eager unquantized is measured (the deployment columns are shown)."""
    return any(r["runtime"] != "torch" or r["quantize"] != "none" for r in rows)


def conventions(row: dict, baseline: str | None = None, deployment: bool = False) -> str:
    text = (
        f"Latency in ms per iteration ({row['timer']}; median, p90, p99, IQR = p75 - p25); images_per_s = "
        f"batch / median. Memory: {row['memory_convention'] or 'n/a'}. Device {row['device']}, "
        f"{row['threads']} threads, channels_last={row['channels_last']}, compile={row['compile']}. "
        f"Precision via torch.autocast in PyTorch. gmacs: {MACS}. params_used: parameters the output "
        f"depends on. {MODEL_MEMORY}. {PEAK}; {row['hardware_method'] or 'not measured'}. {INTENSITY}. "
        f"{ENERGY}."
    )
    if deployment:
        text += f" {RUNTIMES}. {INT8}."
    if baseline:
        text += (
            f" gmacs_ratio, latency_ratio (median), memory_ratio (model_peak_mb): this row / {baseline} in "
            "the same runtime, quantization, batch, precision and mode."
        )
    return text


def _run_macs(args, targets, attrs, shape) -> int:
    outputs, rows = [], []
    for shown, _, model, ishape in build_all(targets, attrs, shape, args.all):
        report = mac_report(model, ishape, name=shown, module_depth=args.module_depth)
        outputs.append(render_markdown(report))
        rows += report_rows(report)
    if args.format == "md":
        env = environment_record("cpu")
        print(
            "\n\n".join(outputs) + f"\n\nEnvironment: torch {env['torch']}, git {env['git_commit']}"
            f"{' (dirty)' if env['git_dirty'] else ''}"
        )
    else:
        print(format_rows(rows, args.format, MAC_HEADER))
    return 0
