#!/usr/bin/env bash
# Everything this project measures on a GPU, in one call of the device machine (an H200 or
# H100 whose python3 has torch with CUDA, numpy 2, scipy, scikit-image and pandas, and no
# network). Prepared here, run there:
#
#   make device-wheels          # here: the packages that machine lacks, into .whl/ (ignored)
#   device run: command "bash benchmarks/gpu_check.sh", carry [".whl"], timeout_s 590
#
# Steps, each under its own time limit so that a slow one leaves the others their turn:
#   1. the engine tests on that machine (training and picking run on CUDA there): the numpy 2
#      and CUDA paths, copick left out (its many dependencies are not carried);
#   2. the GPU speed table (benchmarks/speed.py --gpu);
#   3. the default-size networks of the three recipes trained and scored on seed 1's ribosome
#      tomograms of the WBP benchmark (benchmarks/accuracy.py, "… default size").
# Writes into $OUT (the device's return folder; benchmarks/results/gpu here): device.txt,
# engine_tests.log, speed_gpu.md, speed_gpu.csv, accuracy_gpu.md, accuracy_gpu_per_seed.csv,
# gpu_check.log.
set -uo pipefail
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_check: the wheels in .whl/ did not install (run 'make device-wheels' here first)"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD
{ nvidia-smi -L; python3 -c 'import torch, numpy; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "numpy", numpy.__version__)'; } | tee "$OUT/device.txt"

echo "== 1. engine tests"
timeout 150 python3 -m pytest -q -p no:cacheprovider --maxfail=20 tests/engine \
    --ignore=tests/engine/test_copick_project.py > "$OUT/engine_tests.log" 2>&1
echo "engine tests: exit $? (124: out of time): $(tail -1 "$OUT/engine_tests.log")"

echo "== 2. GPU speed table"
timeout 100 python3 benchmarks/speed.py --gpu --out /tmp/speed
echo "speed: exit $? (124: out of time)"
cp /tmp/speed/speed_gpu.md /tmp/speed/speed_gpu.csv "$OUT/" 2>/dev/null

echo "== 3. default-size recipes, seed 1, ribosome"
timeout 300 python3 benchmarks/accuracy.py --seeds 1 --tasks 4v94 --label-fractions 1.0 --no-template-matching \
    --recipes "TomoPicker default size" "DeepETPicker default size" "tomoCPT default size" --out /tmp/accuracy
echo "accuracy: exit $? (124: out of time; the rows finished are kept)"
cp /tmp/accuracy/accuracy.md "$OUT/accuracy_gpu.md" 2>/dev/null
cp /tmp/accuracy/accuracy_per_seed.csv "$OUT/accuracy_gpu_per_seed.csv" 2>/dev/null
echo "gpu_check: done"
