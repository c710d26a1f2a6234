#!/usr/bin/env bash
# Multi-GPU session (nvidia-h100-x2/x4): the multi-GPU tests, then the scaling benchmark.
# Run from the repository root on the GPU machine (no install): bash bench/gpu_multi.sh
# Writes logs and results under $OUT (default ./gpu_multi_out).
set -u
OUT=${OUT:-gpu_multi_out}
mkdir -p "$OUT"
export PYTHONPATH=. PYTHONUNBUFFERED=1
python3 -c "import hugectr_lab.kernels" 2>/dev/null || ln -s ../kernels hugectr_lab/kernels
{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nvidia-smi topo -m;
  python3 -c "import cupy, numpy; from cupy.cuda import nccl; print('cupy', cupy.__version__, 'numpy', numpy.__version__, 'nccl', nccl.get_version())";
  python3 -c "import mpi4py; print('mpi4py', mpi4py.__version__)"; which mpiexec mpirun; } 2>&1 | tee "$OUT/device.txt"
timeout "${TEST_CAP:-240}" python3 -m pytest -o addopts="" -m gpu -q -p no:cacheprovider -rfE -x tests/distributed \
    2>&1 | tee "$OUT/multi_gpu_tests.log" | tail -40
for model in ${MODELS:-dcn}; do
    timeout "${SCALING_CAP:-200}" python3 -m bench.scaling --model "$model" --precision fp16 --steps "${STEPS:-20}" \
        --out "$OUT" 2>&1 | tee -a "$OUT/scaling.log" | tail -12
done
