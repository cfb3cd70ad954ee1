#!/usr/bin/env bash
# Prepares, on a machine with pip access, the wheels that benchmarks/gpu_check.sh installs on a GPU
# machine that reaches no package registry (its image already holds PyTorch, pandas, matplotlib,
# scipy, scikit-learn, ONNX, ONNX Runtime and pytest). Writes them into .whl/ (git-ignored through
# .git/info/exclude); carry that folder to the GPU machine. Python 3.12, x86-64 Linux by default
# (GPU_PYTHON=3.11 for another).
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${GPU_PYTHON:-3.12}
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
# lfubench's own dependencies missing from the GPU image; the report's Typst compiler (34 MB) is
# left out: gpu_check.sh makes no PDF
BINARY="iopath yacs ptflops optuna alembic sqlalchemy colorlog mako nibabel tomli-w adjustText nvidia-ml-py"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d .whl $BINARY
# published as source only (pure Python): built into wheels here
python3 -m pip wheel -q --no-deps -w .whl fvcore medpy
du -sh .whl
