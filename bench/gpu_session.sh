#!/usr/bin/env bash
# One GPU-machine session: the GPU test lane, then both benchmarks, each under a time cap.
# Run from the repository root on the GPU machine (no install): bash bench/gpu_session.sh
# Packs logs and results into $OUT/session.tgz (default ./gpu_session_out).
set -u
FINAL=${OUT:-gpu_session_out}
OUT=$(mktemp -d)   # everything is packed into $FINAL/session.tgz at the end (one file to fetch)
mkdir -p "$OUT/results" "$FINAL"
trap 'tar czf "$FINAL/session.tgz" -C "$OUT" .' EXIT
export PYTHONPATH=. PYTHONUNBUFFERED=1
# Without an install, hugectr_lab.kernels (the top-level kernels/ folder) is reached through a link.
python3 -c "import hugectr_lab.kernels" 2>/dev/null || ln -s ../kernels hugectr_lab/kernels

{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader;
  python3 -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)"; } | tee "$OUT/device.txt"

timeout "${TEST_CAP:-270}" python3 -m pytest -o addopts="" --strict-markers -m gpu -q -p no:cacheprovider -rfE --junitxml="$OUT/gpu_tests.xml" \
    tests/gpu tests/layers/test_layers_cupy.py tests/embedding/test_gpu_parity.py tests/metrics/test_auc.py \
    tests/optim/test_dense_optimizers.py tests/backend/test_backends.py 2>&1 | tee "$OUT/pytest.log" | tail -40

for run in "dlrm --precision fp16" "dcn --precision fp32"; do
    timeout "${PROFILE_CAP:-40}" python3 -m bench.profile --model $run --cap 1000000 2>&1 | tee -a "$OUT/profile.log"
done
# fp16 (the headline) first: each precision's row is saved as it completes, so a cap keeps the finished
# ones. The caps leave room for torch.compile's first (autotuning) step per precision; COMPILE_MODES
# overrides bench.train's ladder (e.g. COMPILE_MODES=default for a short run).
timeout "${DCN_CAP:-360}" python3 -m bench.train --model dcn --precision fp16 tf32 fp32 --steps "${STEPS:-20}" \
    ${COMPILE_MODES:+--compile-modes $COMPILE_MODES} --out "$OUT/results" 2>&1 | tee "$OUT/bench_dcn.log" | tail -40
timeout "${DLRM_CAP:-480}" python3 -m bench.train --model dlrm --precision fp16 tf32 fp32 --steps "${STEPS:-20}" \
    ${COMPILE_MODES:+--compile-modes $COMPILE_MODES} --out "$OUT/results" 2>&1 | tee "$OUT/bench_dlrm.log" | tail -40
