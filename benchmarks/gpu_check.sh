#!/usr/bin/env bash
# One short session (<= 8 min) on a lent GPU machine (see /work/.library/device): installs the
# carried wheels, places gradatlas on the path, runs the GPU tests (fused parity included), the
# quickstart on the GPU (fused, and --no-fuse for the before figure), the fused-trials
# benchmark and the runner and batched-seed benchmarks. Results land in $OUT.
# Usage (device tool): bash benchmarks/gpu_check.sh   (ACCEL=cpu runs the same steps on a CPU)
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl > /dev/null 2>&1; then  # the device: a bare machine, the carried wheels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  # The device gets a copy of the tree: link the sub-packages where `import gradatlas.X` looks.
  for d in suites models runners reports; do [ -e gradatlas/$d ] || ln -s ../$d gradatlas/$d; done
  export PYTHONPATH=$PWD:/tmp/site
fi  # else (a CPU check here: PATH=.venv/bin:$PATH ACCEL=cpu bash benchmarks/gpu_check.sh) the venv's install
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch, pytorch_lightning as pl, mlflow; print('torch', torch.__version__, 'lightning', pl.__version__, 'mlflow', mlflow.__version__, torch.cuda.get_device_name(0))"
} 2>&1 | tee "$OUT/env.txt"
ACCEL=${ACCEL:-gpu}
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_runner.py 2>&1 | tail -15 | tee "$OUT/pytest_$ACCEL.txt"
work=$(mktemp -d); root=$PWD
( cd "$work" && /usr/bin/time -v python3 -m gradatlas run quickstart --accelerator "$ACCEL" ) > "$OUT/quickstart_$ACCEL.txt" 2>&1
( cd "$work" && /usr/bin/time -v python3 -m gradatlas run quickstart --accelerator "$ACCEL" --no-fuse --set name=quickstart-nofuse ) > "$OUT/quickstart_nofuse_$ACCEL.txt" 2>&1
tail -12 "$OUT/quickstart_$ACCEL.txt" "$OUT/quickstart_nofuse_$ACCEL.txt"
timeout 200 python3 "$root/benchmarks/fused.py" --accelerator "$ACCEL" --workload slice --json "$OUT/fused_$ACCEL.json" --markdown "$OUT/fused_$ACCEL.md" 2>&1 | tail -8
timeout 90 python3 "$root/benchmarks/runner_overhead.py" --accelerator "$ACCEL" --repeats 3 --json "$OUT/runner_overhead_$ACCEL.json" 2>&1 | tail -6
timeout 90 python3 "$root/benchmarks/fused_cost.py" --accelerator "$ACCEL" --repeats 1 --json "$OUT/fused_cost_$ACCEL.json" --markdown "$OUT/fused_cost_$ACCEL.md" 2>&1 | tail -14
timeout 120 python3 "$root/benchmarks/gpu_step.py" --accelerator "$ACCEL" --json "$OUT/gpu_step_$ACCEL.json" 2>&1 | tail -8
