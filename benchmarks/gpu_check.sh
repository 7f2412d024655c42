#!/usr/bin/env bash
# One short session on a lent GPU machine (see /work/.library/device): installs the carried
# wheels, places gradatlas on the path, runs the GPU tests, the quickstart on the GPU and the
# runner and batched-seed benchmarks. Results land in $OUT. Usage (device tool): bash benchmarks/gpu_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
# The device gets a copy of the tree: link the sub-packages where `import gradatlas.X` looks.
for d in suites models runners reports; do [ -e gradatlas/$d ] || ln -s ../$d gradatlas/$d; done
export PYTHONPATH=$PWD:/tmp/site
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, pytorch_lightning as pl, mlflow; print('torch', torch.__version__, 'lightning', pl.__version__, 'mlflow', mlflow.__version__, torch.cuda.get_device_name(0))"
} 2>&1 | tee "$OUT/env.txt"
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_runner.py 2>&1 | tail -15 | tee "$OUT/pytest_gpu.txt"
work=$(mktemp -d); root=$PWD
( cd "$work" && /usr/bin/time -v python3 -m gradatlas run quickstart --accelerator gpu ) > "$OUT/quickstart_gpu.txt" 2>&1
tail -30 "$OUT/quickstart_gpu.txt"
timeout 200 python3 "$root/benchmarks/runner_overhead.py" --accelerator gpu --repeats 3 --json "$OUT/runner_overhead_gpu.json" 2>&1 | tail -6
timeout 240 python3 "$root/benchmarks/batched_seeds.py" --accelerator gpu --one-cell --depths 3,20 --ks 1,8,64 --repeats 1 --epochs 4 --json "$OUT/batched_seeds_gpu.json" --markdown "$OUT/batched_seeds_gpu.md" 2>&1 | tail -22
