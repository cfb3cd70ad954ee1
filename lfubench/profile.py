"""``lfubench profile``: latency, throughput and peak memory (and MACs) of zoo models."""

from __future__ import annotations

import argparse
import logging

import torch

import models
from bench.complexity import MAC_CONVENTION, mac_report, param_counts, render_markdown, report_rows
from bench.complexity.counters import fvcore_macs
from bench.environment import environment_record, format_environment
from bench.errors import LfubenchError
from bench.latency import MODES, PRECISIONS, Timing, profile
from reports.text import FORMATS, format_rows

from .args import parse_kwargs, parse_list, parse_shape

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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profile",
        help="latency, throughput and peak memory of a model (or --macs: the four MAC counters)",
        description="Measure a zoo model's inference forward and training step. Model constructor "
        "arguments follow the name as key=value (e.g. lfunet base_width=16 groups=4).",
    )
    p.add_argument("model", nargs="?", help="model name (see lfubench zoo); omit with --all")
    p.add_argument("kwargs", nargs="*", metavar="KEY=VALUE", help="model constructor arguments")
    p.add_argument("--all", action="store_true", help="every zoo model at its default widths")
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
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the forward")
    p.add_argument(
        "--threads", type=int, default=None, help="intra-op CPU threads (default: torch's current)"
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
            raise ValueError(f"model {name!r} has no attribute {key!r} to set with --attr")
        setattr(model, key, value)
    return model


def display_name(name: str, kwargs: dict, attrs: dict) -> str:
    settings = [f"{k}={v}" for k, v in {**kwargs, **attrs}.items()]
    return f"{name} ({', '.join(settings)})" if settings else name


def _targets(args) -> list[tuple[str, dict]]:
    if args.all:
        if args.model or args.kwargs:
            raise ValueError("give either a MODEL or --all, not both")
        return [(name, {}) for name in models.list_models()]
    if not args.model:
        raise ValueError("name a MODEL (see lfubench zoo) or give --all")
    if "=" in args.model:
        raise ValueError(f"the first argument must be a model name, got {args.model!r}")
    return [(args.model, parse_kwargs(args.kwargs))]


def _shape_for(model, shape, all_models: bool) -> tuple[int, int, int]:
    c, h, w = shape
    in_ch = getattr(model, "in_channels", c)
    if c != in_ch:
        if not all_models:
            raise ValueError(
                f"--input has {c} channels but the model takes {in_ch}; "
                f"pass in_channels={c} or --input {in_ch}x{h}x{w}"
            )
        c = in_ch
    model.check_input(torch.empty(1, c, h, w)) if hasattr(model, "check_input") else None
    return c, h, w


def run(args: argparse.Namespace) -> int:
    shape = parse_shape(args.input)
    attrs = parse_kwargs(args.attr, "--attr")
    targets = _targets(args)
    if args.macs:
        return _run_macs(args, targets, attrs, shape)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise LfubenchError(
            "--device cuda: CUDA is not available on this machine "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none'})"
        )
    batches = [int(b) for b in parse_list(args.batch, what="batch size")]
    if min(batches) < 1:
        raise ValueError(f"--batch sizes must be positive, got {args.batch!r}")
    precisions = parse_list(args.precision, PRECISIONS, "precision")
    modes = parse_list(args.mode, MODES, "mode")
    timing = Timing(
        min_iters=args.min_iters,
        max_iters=args.max_iters,
        max_time_s=args.time,
        max_warmup_s=args.warmup_time,
    )
    rows = []
    for name, kwargs in targets:
        model = build(name, kwargs, attrs)
        ishape = _shape_for(model, shape, args.all)
        counts = param_counts(model, ishape)
        extra = {
            "params": counts.total,
            "params_trainable": counts.trainable,
            "params_used": counts.used,
            "gmacs": round(fvcore_macs(model, ishape) / 1e9, 4),
        }
        log.debug("profiling %s", name)
        rows += profile(
            model,
            ishape,
            name=display_name(name, kwargs, attrs),
            model_kwargs={**kwargs, **attrs},
            batch_sizes=batches,
            precisions=precisions,
            modes=modes,
            device=args.device,
            channels_last=args.channels_last,
            compile=args.compile,
            threads=args.threads,
            timing=timing,
            extra=extra,
        )
    print(render_rows(rows, args.format))
    failed = [r for r in rows if r["status"] != "ok"]
    return 1 if failed and len(failed) == len(rows) else 0


def render_rows(rows: list[dict], fmt: str) -> str:
    """Markdown: conventions and the environment once, then the main columns; CSV/JSON: all fields."""
    if fmt != "md":
        return format_rows(rows, fmt, conventions(rows[0]) if rows else None)
    first = rows[0]
    mem = ["peak_allocated_mb", "peak_reserved_mb"] if first["device"].startswith("cuda") else ["peak_rss_mb"]
    columns = list(MD_COLUMNS[:12]) + mem + list(MD_COLUMNS[12:])
    shown = [{c: ("n/a" if r.get(c) is None else r[c]) for c in columns} for r in rows]
    env = {k.removeprefix("env_"): v for k, v in first.items() if k.startswith("env_")}
    header = conventions(first) + "\n\nEnvironment:\n" + format_environment(env)
    text = format_rows(shown, "md", header)
    notes = [
        f"- {r['model']} batch {r['batch']} {r['precision']} {r['mode']}: {r['status']}: {r['error']}"
        for r in rows
        if r["status"] != "ok"
    ]
    return text + ("\n\nFailed configurations:\n" + "\n".join(notes) if notes else "")


def conventions(row: dict) -> str:
    return (
        f"Latency in ms per iteration ({row['timer']}; median, p90, p99, IQR = p75 - p25); images_per_s = "
        f"batch / median. Memory: {row['memory_convention'] or 'n/a'}. Device {row['device']}, "
        f"{row['threads']} threads, channels_last={row['channels_last']}, compile={row['compile']}. "
        f"Precision via torch.autocast. gmacs per image: {MAC_CONVENTION}. params_used: parameters the "
        "output depends on."
    )


def _run_macs(args, targets, attrs, shape) -> int:
    outputs, rows = [], []
    for name, kwargs in targets:
        model = build(name, kwargs, attrs)
        ishape = _shape_for(model, shape, args.all)
        report = mac_report(
            model, ishape, name=display_name(name, kwargs, attrs), module_depth=args.module_depth
        )
        outputs.append(render_markdown(report))
        rows += report_rows(report)
    if args.format == "md":
        env = environment_record("cpu")
        print(
            "\n\n".join(outputs) + f"\n\nEnvironment: torch {env['torch']}, git {env['git_commit']}"
            f"{' (dirty)' if env['git_dirty'] else ''}"
        )
    else:
        print(format_rows(rows, args.format, MAC_CONVENTION))
    return 0
