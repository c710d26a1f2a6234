#!/usr/bin/env bash
# Same-machine before/after of a change to the training step: the tree of an older commit (BASE) and the
# working tree, one after the other, ROUNDS times, `python -m bench.train` without PyTorch (hugectr-lab only);
# BENCH=inference: of a change to the predict path, `python -m bench.inference --part latency` instead.
# Timings of two code versions cannot share a process, and H100 hosts differ (one ran Python 2.5x slower than
# another on 2026-12-07/08), so a before/after must come from one machine in one command.
#
#   here:        bash bench/ab_train.sh prepare 7ae2de1     # .baseline/ = that commit's tree (git archive),
#                                                           # ignored through .git/info/exclude
#   GPU machine: bash bench/ab_train.sh run                 # run tool: carry [".baseline"]
#
# Knobs: MODEL (dcn), PRECISION (fp16), STEPS (30), ROUNDS ("1 2"); for BENCH=inference, BACKEND (cupy) and
# BATCHES ("1 64 1024"). Writes $OUT/ab.log (per run its table rows -- train: one and a phase row; inference:
# one per batch size and its host phases -- prefixed base1/new1/...) and $OUT/ab.tgz (each run's JSON and
# markdown).
set -u
case "${1:-}" in
prepare)
    base=${2:?usage: bash bench/ab_train.sh prepare COMMIT}
    rm -rf .baseline && mkdir .baseline
    git archive "$base" hugectr_lab kernels bench tests/config/configs pyproject.toml | tar -x -C .baseline
    grep -qx ".baseline/" .git/info/exclude 2>/dev/null || echo ".baseline/" >> .git/info/exclude
    echo "$base" > .baseline/COMMIT
    echo "prepared .baseline/ at $(cat .baseline/COMMIT)"
    ;;
run)
    OUT=$(cd "${OUT:-.}" && pwd)
    export PYTHONUNBUFFERED=1
    for tree in . .baseline; do   # without an install, hugectr_lab.kernels is reached through a link
        [ -e "$tree/hugectr_lab/kernels" ] || ln -s ../kernels "$tree/hugectr_lab/kernels"
    done
    mkdir -p "$OUT/ab"
    for i in ${ROUNDS:-1 2}; do
        for tree in base new; do
            dir=.; [ $tree = base ] && dir=.baseline
            if [ "${BENCH:-train}" = inference ]; then
                (cd $dir && PYTHONPATH=. timeout 120 python3 -m bench.inference --backend "${BACKEND:-cupy}" --part latency \
                    --batches ${BATCHES:-1 64 1024} --out "$OUT/ab/$tree$i") 2>&1 \
                    | grep -E "^  batch .*p50|µs, medians" | sed "s/^/$tree$i /" | tee -a "$OUT/ab.log"
            else
                (cd $dir && PYTHONPATH=. timeout 90 python3 -m bench.train --model "${MODEL:-dcn}" --precision "${PRECISION:-fp16}" \
                    --no-torch --steps "${STEPS:-30}" --out "$OUT/ab/$tree$i") 2>&1 \
                    | grep -E "^\| ${MODEL:-dcn} " | sed "s/^/$tree$i /" | tee -a "$OUT/ab.log"
            fi
        done
    done
    echo "base = $(cat .baseline/COMMIT 2>/dev/null)" >> "$OUT/ab.log"
    tar czf "$OUT/ab.tgz" -C "$OUT" ab && rm -rf "$OUT/ab"
    ;;
*)
    echo "usage: bash bench/ab_train.sh prepare COMMIT | run" >&2
    exit 2
    ;;
esac
