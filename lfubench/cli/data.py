"""``lfubench data {phantom,verify,prepare}``: synthetic data sets, integrity checks, the slice cache."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from lfubench.bench.datasets import DATASETS, dataset_for
from lfubench.bench.errors import LfubenchError
from lfubench.reports.text import format_rows

from .args import parse_shape

log = logging.getLogger(__name__)


def _per_dataset(what) -> str:
    """``"lits: ...; brats: ..."``, one entry per dataset, from ``what(dataset)``."""
    return "; ".join(f"{kind}: {what(dataset)}" for kind, dataset in DATASETS.items())


def _layouts(dataset) -> str:
    names = [f"{layout.name} ({layout.about})" for layout in dataset.layouts]
    names[0] = names[0].replace(" (", " (default, ", 1)
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="write phantoms, verify a dataset folder, prepare the slice cache",
                       description="Datasets: LiTS 2017 / MSD Task03_Liver, BraTS 2018-2023 layouts, and any "
                       "dataset in nnU-Net v2's raw layout (nnunet: dataset.json, imagesTr, labelsTr).")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    ph = data_sub.add_parser("phantom", help="write a synthetic data set in the real layout",
                             description="Write synthetic cases ("
                             + ", ".join(f"{d.phantom_about} ({k})" for k, d in DATASETS.items())
                             + ") as NIfTI files in the official layout, deterministic for a seed.")
    ph.add_argument("dataset", choices=DATASETS)
    ph.add_argument("out", type=Path, help="the dataset folder to create")
    ph.add_argument("--cases", type=int, required=True, help="number of cases")
    ph.add_argument("--shape", default=None,
                    help="XxYxZ voxels per case (default 128x128x48; in-plane first, slices last)")
    ph.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ph.add_argument("--layout", default=None, help=_per_dataset(_layouts))
    plain = [layout.name for d in DATASETS.values() for layout in d.layouts if not layout.gzip]
    ph.add_argument("--gzip", action=argparse.BooleanOptionalAction, default=None,
                    help=f"write .nii.gz (default: as the real layout: .nii for {', '.join(plain)})")
    ph.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty folder")
    _add_jobs(ph)
    ph.set_defaults(func=run_phantom)

    ve = data_sub.add_parser("verify", help="check every case; list every problem; exit non-zero on any",
                             description="Check every case of a dataset folder (missing or unreadable files, "
                             "geometry mismatches, label values, NaN/Inf, all-zero and 4D images) and print "
                             "one line per problem naming the case and the file. Reads only.")
    ve.add_argument("dataset", choices=DATASETS)
    ve.add_argument("root", type=Path, help="the dataset folder")
    ve.add_argument("--format", choices=("text", "csv", "json"), default="text",
                    help="text: one line per problem (default); csv/json: case, file, problem rows")
    _add_jobs(ve)
    ve.set_defaults(func=run_verify)

    pr = data_sub.add_parser("prepare", help="preprocess into the memory-mapped slice cache and write splits",
                             description="Read every case, preprocess it and write the slice cache "
                             "(atomically) plus the splits (splits-s<seed>-t<test>-f<folds>.json) into "
                             "OUT/<dataset>-s<size>-<key>/. Reuses a "
                             "complete cache with the same data and config.")
    pr.add_argument("dataset", choices=DATASETS)
    pr.add_argument("root", type=Path, help="the dataset folder (only read)")
    pr.add_argument("--out", type=Path, default=Path("runs/cache"), help="cache folder (default runs/cache)")
    pr.add_argument("--size", type=int, default=None,
                    help="in-plane size, multiple of 16 (default: "
                    + ", ".join(f"{k} {d.default_size}" for k, d in DATASETS.items()) + "; phantoms: 128)")
    stacked = [k for k, d in DATASETS.items() if d.slice_context]
    pr.add_argument("--context", type=int, default=3,
                    help=f"{', '.join(stacked)}: adjacent slices as channels (default 3)")
    pr.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    pr.add_argument("--test-fraction", type=float, default=0.2, help="share of cases held out (default 0.2)")
    pr.add_argument("--folds", type=int, default=5, help="cross-validation folds over the rest (default 5)")
    pr.add_argument("--force", action="store_true", help="rebuild even if a complete cache exists")
    _add_jobs(pr)
    pr.set_defaults(func=run_prepare)


def _add_jobs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="worker processes, one case each (default: the machine's cores, as many as "
                        "the available memory holds; the output is the same for any N)")


def run_phantom(args: argparse.Namespace) -> int:
    from lfubench.bench.data import write_phantom

    shape = parse_shape(args.shape, "--shape", "128x128x48", minimum=8) if args.shape else None
    if args.out.exists() and any(args.out.iterdir()) and not args.overwrite:
        raise LfubenchError(f"{args.out} is not empty; choose a new folder or pass --overwrite")
    start = time.perf_counter()
    paths = write_phantom(args.dataset, args.out, args.cases, shape=shape, seed=args.seed, layout=args.layout,
                          gzip=args.gzip, progress=True, jobs=args.jobs)
    print(f"wrote {args.cases} {args.dataset} phantom case(s), {len(paths)} files, to {args.out} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from lfubench.bench.data import verify_dataset

    cases, problems = verify_dataset(args.dataset, args.root, progress=True, jobs=args.jobs)
    if args.format == "text":
        for problem in problems:
            print(problem)
    elif problems:
        rows = [{"case": p.case, "file": p.file, "problem": p.message} for p in problems]
        print(format_rows(rows, args.format))
    if problems:
        bad = len({p.case for p in problems if p.case != "-"})  # "-": the dataset's own files (dataset.json)
        where = f"{bad} of {len(cases)} case(s)" if cases else "the dataset's files"
        raise LfubenchError(f"{len(problems)} problem(s) in {where} under {args.root}")
    if args.format == "text":
        print(f"ok: {len(cases)} {args.dataset} case(s) under {args.root}, no problems")
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    from lfubench.bench.data import (
        PreprocessConfig,
        find_cases,
        make_splits,
        open_cache,
        prepare_cache,
        write_splits,
    )

    start = time.perf_counter()
    cases, problems = find_cases(args.dataset, args.root)
    if not cases:
        raise LfubenchError(f"{args.root}: {problems[0].message}" if problems else f"{args.root}: no cases")
    kind = dataset_for(args.dataset, args.root).kind  # nnunet: the folder's own, from its dataset.json
    config = PreprocessConfig(kind, size=args.size, context=args.context)  # options checked first
    splits = make_splits([c.case_id for c in cases], seed=args.seed, test_fraction=args.test_fraction,
                         folds=args.folds, groups={c.case_id: c.group for c in cases})
    path = prepare_cache(kind, args.root, args.out, config, force=args.force, progress=True, jobs=args.jobs)
    cache = open_cache(path)
    split_path = write_splits(path, splits)
    print(f"cache: {path}")
    n_fg = int(cache.foreground.sum())
    print(f"{len(cache.case_ids)} cases, {len(cache)} slices ({n_fg} with foreground), "
          f"input {cache.in_channels}x{config.size}x{config.size}, {time.perf_counter() - start:.1f} s")
    print(f"splits: {split_path} (seed {args.seed}: {len(splits['train'])} train, {len(splits['val'])} val, "
          f"{len(splits['test'])} test; {args.folds} folds)")
    return 0
