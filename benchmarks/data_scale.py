"""Data at real scale: time and peak memory of ``lfubench data phantom`` and ``data prepare`` on one
LiTS-sized case, and the speed-up of several jobs over one on a few cases.

Run: ``python benchmarks/data_scale.py [--shape 512x512x987] [--cases 2] [--jobs 2] [--size 256]
[--tmp DIR] [--limit-gb 3]`` (alone on the machine: about 5 minutes with the defaults on 2 cores;
``--shape 128x128x40`` takes well under a minute). Each step runs in a child process that calls
:func:`bench.data.write_phantom` or :func:`bench.data.prepare_cache`, as ``lfubench data phantom``
and ``lfubench data prepare`` do, and reports its own wall time and its peak resident set size
(``getrusage``: ``RUSAGE_SELF`` for the process, ``RUSAGE_CHILDREN`` for the largest of its
worker processes).

Steps: (1) a phantom of one case of ``--shape`` and (2) its cache, one job; then on ``--cases``
cases, side by side: (3, 4) phantoms with 1 and ``--jobs`` jobs, (5, 6) caches with 1 and
``--jobs`` jobs. Prints a Markdown table, the speed-ups, whether the files of 1 and ``--jobs``
jobs are byte-identical, and whether every peak is within ``--limit-gb``. Files go to a
temporary folder under ``--tmp`` (default: the system's), removed at the end.
Exit status 1 when a peak exceeds the limit or the files differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from lfubench.bench.data.parallel import available_memory, cpu_count
from lfubench.bench.errors import LfubenchError
from lfubench.cli.args import parse_shape
from lfubench.reports.text import format_rows

GB = 1e9

#: the child process: one step, then its wall time and peak RSS (Linux reports ru_maxrss in KiB)
CHILD = """
import json, resource, sys, time
from lfubench.bench.data import PreprocessConfig, prepare_cache, write_phantom

a = json.loads(sys.argv[1])
start = time.perf_counter()
if a["step"] == "phantom":
    write_phantom("lits", a["out"], a["cases"], shape=a["shape"], seed=0, jobs=a["jobs"])
else:
    prepare_cache("lits", a["root"], a["out"], PreprocessConfig("lits", size=a["size"]), jobs=a["jobs"])
seconds = time.perf_counter() - start
usage = {who: resource.getrusage(getattr(resource, who)).ru_maxrss * 1024
         for who in ("RUSAGE_SELF", "RUSAGE_CHILDREN")}
print(json.dumps({"seconds": seconds, "self": usage["RUSAGE_SELF"], "workers": usage["RUSAGE_CHILDREN"]}))
"""


def run_step(**kwargs) -> dict:
    """Run one step in a fresh interpreter; return its seconds and peak RSS in bytes."""
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(kwargs, default=str)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise LfubenchError(f"{kwargs['step']} with {kwargs['jobs']} job(s) failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def digest(root: Path) -> str:
    """One hash over every file under ``root`` (names relative to it, and contents)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                h.update(block)
    return h.hexdigest()


def _size(nbytes: float) -> str:
    return f"{nbytes / GB:.2f} GB" if nbytes >= 0.1 * GB else f"{nbytes / 1e6:.1f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--shape", default="512x512x987", help="XxYxZ of every case (default 512x512x987)")
    parser.add_argument("--cases", type=int, default=2, help="cases for the jobs comparison (default 2)")
    parser.add_argument("--jobs", type=int, default=2, help="jobs compared with one (default 2)")
    parser.add_argument("--size", type=int, default=256, help="prepare's in-plane size (default 256)")
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the files (default: system temp)")
    parser.add_argument("--limit-gb", type=float, default=3.0, help="peak RSS target per process (default 3)")
    args = parser.parse_args(argv)
    try:
        shape = parse_shape(args.shape, "--shape", "512x512x987", minimum=8)
    except LfubenchError as err:
        parser.error(str(err))
    if args.cases < 1 or args.jobs < 2:
        parser.error("--cases must be >= 1 and --jobs >= 2")
    if args.tmp is not None:
        args.tmp.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lfubench-data-scale-", dir=args.tmp))
    voxels = shape[0] * shape[1] * shape[2]
    print(f"LiTS phantom cases of {args.shape} ({_size(voxels * 3)} as int16 HU + uint8 labels; "
          f"a float32 copy of the volume is {_size(voxels * 4)}), cache size {args.size}; "
          f"{cpu_count()} cores, {available_memory() / GB:.1f} GB available; each step in its own process, "
          "wall time inside it, peak RSS by getrusage\n", flush=True)
    rows, peaks = [], []

    def step(name: str, cases: int, jobs: int, **kwargs) -> dict:
        print(f"running {name}, {cases} case(s), {jobs} job(s) ...", file=sys.stderr, flush=True)
        result = run_step(step=name, cases=cases, jobs=jobs, size=args.size, shape=list(shape), **kwargs)
        rows.append({"step": name, "cases": cases, "jobs": jobs, "seconds": f"{result['seconds']:.1f}",
                     "s/case": f"{result['seconds'] / cases:.1f}",
                     "peak_rss_gb": f"{result['self'] / GB:.2f}",
                     "worker_peak_rss_gb": f"{result['workers'] / GB:.2f}" if jobs > 1 else "-"})
        peaks.append(max(result["self"], result["workers"]) / GB)
        return result

    try:
        step("phantom", 1, 1, out=str(work / "one"))
        step("prepare", 1, 1, root=str(work / "one"), out=str(work / "one-cache"))
        shutil.rmtree(work / "one")
        shutil.rmtree(work / "one-cache")
        serial = step("phantom", args.cases, 1, out=str(work / "src-1"))
        parallel = step("phantom", args.cases, args.jobs, out=str(work / f"src-{args.jobs}"))
        same_phantom = digest(work / "src-1") == digest(work / f"src-{args.jobs}")
        phantom_speedup = serial["seconds"] / parallel["seconds"]
        shutil.rmtree(work / f"src-{args.jobs}")
        serial = step("prepare", args.cases, 1, root=str(work / "src-1"), out=str(work / "cache-1"))
        parallel = step("prepare", args.cases, args.jobs, root=str(work / "src-1"),
                        out=str(work / f"cache-{args.jobs}"))
        same_cache = digest(work / "cache-1") == digest(work / f"cache-{args.jobs}")
        prepare_speedup = serial["seconds"] / parallel["seconds"]
    except LfubenchError as err:
        print(f"data_scale.py: {err}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(format_rows(rows, "md", right=("seconds", "s/case", "peak_rss_gb", "worker_peak_rss_gb")))
    peak = max(peaks)
    within = peak <= args.limit_gb
    print(f"\nspeed-up of {args.jobs} jobs over 1 on {args.cases} case(s): phantom {phantom_speedup:.2f}x, "
          f"prepare {prepare_speedup:.2f}x")
    print(f"files of 1 and {args.jobs} jobs byte-identical: phantom {'yes' if same_phantom else 'NO'}, "
          f"cache {'yes' if same_cache else 'NO'}")
    print(f"largest peak RSS of a process: {peak:.2f} GB (target <= {args.limit_gb:g} GB): "
          f"{'PASS' if within else 'FAIL'}")
    return 0 if within and same_phantom and same_cache else 1


if __name__ == "__main__":
    raise SystemExit(main())
