#!/usr/bin/env bash
# One short session on a lent GPU machine (see /work/.library/device): installs the carried
# wheels, places gradatlas on the path, then runs its steps most important first, each under
# the smaller of its own limit and what is left of BUDGET_S (540 s: one device call may run 600),
# so a slow machine loses the last figures, never the first: the GPU tests (fused parity
# included), the fused-trials benchmark on the atlas slice (one-by-one timed on a sample), the
# quickstart fused, the step anatomy (gpu_step: CUDA graphs, host syncs, the packing probe vs
# the real peak), the kernels and host reads per step on the CUDA path (step_anatomy), the
# stacked step with every member dropping (each swaps its random stream per layer: the one
# per-member cost left in a fused step), the
# stacked-group cost fit, the quickstart --no-fuse (the before figure), the
# quickstart on 4 workers sharing the GPU (0.25 each; needs Ray, whose wheel is too large to carry:
# skipped without it), the runner overhead. Results land in
# $OUT; $OUT/steps.txt says how each step ended.
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
BUDGET_S=${BUDGET_S:-540}
START=$(date +%s)
root=$PWD; work=$(mktemp -d)
export OUT ACCEL root work
# step NAME MAX_S COMMAND: COMMAND (a bash -c string) under min(MAX_S, what is left of BUDGET_S)
step() {
  local name=$1 max=$2 cmd=$3 left t0 rc
  left=$(( BUDGET_S - ($(date +%s) - START) )); (( left > max )) && left=$max
  if (( left < 20 )); then echo "== $name: skipped, budget spent" | tee -a "$OUT/steps.txt"; return; fi
  t0=$(date +%s); timeout "$left" bash -c "$cmd"; rc=$?
  echo "== $name: exit $rc after $(( $(date +%s) - t0 )) s (limit $left s)" | tee -a "$OUT/steps.txt"
}
# share_processes: the quickstart split by activation into 3 processes that train at once
share_processes() {
  cd "$work" || return 1
  local start=$SECONDS a
  trap 'kill $(jobs -p) 2> /dev/null' TERM EXIT
  for a in relu tanh sigmoid; do
    python3 -m gradatlas run quickstart --accelerator "$ACCEL" ${QS_EXTRA:-} --set "grid.activation=[$a]" \
      --set "name=qs-$a" --tracking-uri "sqlite:///$work/qs-$a.db" > "$OUT/quickstart_3p_$a.txt" 2>&1 &
  done
  wait
  echo "3 processes at once: $(( SECONDS - start )) s" | tee "$OUT/quickstart_3p_$ACCEL.txt"
  tail -n 3 "$OUT"/quickstart_3p_*.txt
}
export -f share_processes
step pytest 100 'python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_runner.py 2>&1 | tail -15 | tee "$OUT/pytest_$ACCEL.txt"'
step fused_slice 130 'python3 "$root/benchmarks/fused.py" --accelerator "$ACCEL" --workload slice --sample-one-by-one 24 --json "$OUT/fused_$ACCEL.json" --markdown "$OUT/fused_$ACCEL.md" 2>&1 | tail -8'
step quickstart 60 'cd "$work" && /usr/bin/time -v python3 -m gradatlas run quickstart --accelerator "$ACCEL" > "$OUT/quickstart_$ACCEL.txt" 2>&1; tail -12 "$OUT/quickstart_$ACCEL.txt"'
step gpu_step 60 'python3 "$root/benchmarks/gpu_step.py" --accelerator "$ACCEL" --steps 50 --json "$OUT/gpu_step_$ACCEL.json" 2>&1 | tail -8'
step step_anatomy 60 'python3 "$root/benchmarks/step_anatomy.py" --accelerator "$ACCEL" --depths 20 --members 8 64 --json "$OUT/step_anatomy_$ACCEL.json" --markdown "$OUT/step_anatomy_$ACCEL.md" 2>&1 | tail -8'
step gpu_step_dropout 45 'python3 "$root/benchmarks/gpu_step.py" --accelerator "$ACCEL" --steps 30 --depths 20 --members 1 16 108 --dropout 0.1 --json "$OUT/gpu_step_dropout_$ACCEL.json" 2>&1 | tail -4'
step fused_cost 90 'python3 "$root/benchmarks/fused_cost.py" --accelerator "$ACCEL" --repeats 1 --json "$OUT/fused_cost_$ACCEL.json" --markdown "$OUT/fused_cost_$ACCEL.md" 2>&1 | tail -14'
step quickstart_nofuse 120 'cd "$work" && /usr/bin/time -v python3 -m gradatlas run quickstart --accelerator "$ACCEL" --no-fuse --set name=quickstart-nofuse > "$OUT/quickstart_nofuse_$ACCEL.txt" 2>&1; tail -12 "$OUT/quickstart_nofuse_$ACCEL.txt"'
share=""; [ "$ACCEL" = gpu ] && share="--gpus-per-worker 0.25"
export share
if python3 -c "import ray" 2> /dev/null; then
step quickstart_4_per_gpu 90 'cd "$work" && /usr/bin/time -v python3 -m gradatlas run quickstart --accelerator "$ACCEL" --workers 4 $share --set name=quickstart-4w > "$OUT/quickstart_4w_$ACCEL.txt" 2>&1; tail -12 "$OUT/quickstart_4w_$ACCEL.txt"'
else  # Ray's wheel (75.6 MiB) is over what one device call carries: see benchmarks/gpu_wheels.py
  echo "== quickstart_4_per_gpu: skipped, no ray here" | tee -a "$OUT/steps.txt"
  # The same question without Ray: the quickstart's 3 activations as 3 processes sharing the
  # GPU at once (each its own store), against the quickstart step's one process above.
  step quickstart_3_processes 90 'share_processes'
fi
step runner_overhead 60 'python3 "$root/benchmarks/runner_overhead.py" --accelerator "$ACCEL" --repeats 3 --json "$OUT/runner_overhead_$ACCEL.json" 2>&1 | tail -6'
