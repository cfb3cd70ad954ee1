#!/usr/bin/env bash
# lfubench's GPU checks in one prepared script (at most about 8 minutes on one H100):
#   1. the CUDA tests (every test whose name says cuda or gpu; they skip on a machine without CUDA);
#   2. benchmarks/train_throughput.py --device cuda: loader-fed vs pre-loaded images/s, eager vs compiled;
#   3. lfubench profile --device cuda for LFU-Net w8, U-Net w64 and UNet++ w32 at batch 1 and 16:
#      runtimes torch, compile, onnxruntime (its CUDA execution provider) and tensorrt (ONNX Runtime's
#      TensorRT execution provider) where installed, fp32 and fp16, int8, with energy (NVML).
# Each step has its own time limit; a step that fails or runs out is reported and the next one runs.
# Output: the console, and under $OUT (default runs/gpu_check) one log and one CSV per step.
#
# On a GPU machine without a package registry, first run benchmarks/gpu_wheels.sh on a machine with
# one and bring the .whl/ folder: this script installs it and lfubench (no dependencies) into
# /tmp/site. Run: bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
SITE=/tmp/lfubench-site
rm -rf "$SITE"
if [ -d .whl ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .whl/*.whl || exit 1
fi
"$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$SITE" . || exit 1
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
LFU=("$PY" -m lfubench)

"$PY" - <<'PY' || { echo "gpu_check: no CUDA device; nothing to check"; exit 1; }
import torch
assert torch.cuda.is_available()
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0))
try:
    import onnxruntime
    print("onnxruntime", onnxruntime.__version__, "providers:", ", ".join(onnxruntime.get_available_providers()))
except ImportError:
    print("onnxruntime: not installed")
PY
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
"${LFU[@]}" --version

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log
  local name=$1 limit=$2; shift 2
  echo; echo "=== $name (at most ${limit} s): $*"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $((SECONDS - t0)) s"
}

step cuda_tests 150 "$PY" -m pytest -q -p no:cacheprovider -k "cuda or gpu" tests/bench tests/lfubench tests/studies
step train_throughput 120 "$PY" benchmarks/train_throughput.py --device cuda --models lfunet:8,unet:64 \
  --batch 16 --steps 30

# the runtimes this machine has (tensorrt needs ONNX Runtime's TensorRT execution provider)
RUNTIMES=$("$PY" - <<'PY'
import sys
from lfubench.bench.runtimes import check_runtimes
chosen = ["torch", "compile"]
for runtime, provider in (("onnxruntime", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider")):
    try:
        check_runtimes([runtime], ["none"], device="cuda")
        import onnxruntime
        if provider not in onnxruntime.get_available_providers():
            raise RuntimeError(f"ONNX Runtime here has no {provider}")
        chosen.append(runtime)
    except Exception as exc:  # noqa: BLE001 - reported and left out
        print(f"runtime {runtime} left out: {exc}", file=sys.stderr)
print(",".join(chosen))
PY
)
step profile 240 "${LFU[@]}" profile lfunet base_width=8 unet base_width=64 unetpp base_width=32 \
  --device cuda --batch 1,16 --precision fp32,fp16 --mode inference --runtime "$RUNTIMES" \
  --quantize none,int8 --max-iters 100 --time 2 --baseline lfunet --format csv
cp "$OUT/profile.log" "$OUT/profile.csv" 2>/dev/null || true
