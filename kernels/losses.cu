// Binary cross-entropy loss over logits: value (forward) and d(logits) (backward).
//
// References (hugectr_lab/layers/losses.py): `bce_loss_fwd`, `bce_loss_bwd`.
//
// Layouts: logits (c, 1) T = float | hctr_half; labels (c, 1) float32; d_logits (c, 1) T;
//          loss: one float32 (a 0-d array).
// Launch mapping: hctr_bce_loss_fwd is ONE block of 1024 threads (c is a per-device batch, at most
//   a few 100k): grid-stride partial sums, then a fixed-order block reduction -- deterministic.
//   hctr_bce_loss_bwd: one thread per sample, grid-stride.
// Math in float32: per-sample loss max(x, 0) - x*y + log1p(exp(-|x|)); sigma(x) = (1 + tanh(x/2))/2.
#include "hctr_common.cuh"

template <typename T>
__global__ void hctr_bce_loss_fwd(const T* __restrict__ logits, const float* __restrict__ labels,
                                  float* __restrict__ loss, long long count) {
    __shared__ float scratch[32];
    float acc = 0.0f;
    for (long long i = threadIdx.x; i < count; i += blockDim.x) {
        const float x = to_f32(logits[i]), y = labels[i];
        acc += fmaxf(x, 0.0f) - x * y + log1pf(expf(-fabsf(x)));
    }
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) *loss = acc / (float)count;
}

template <typename T>
__global__ void hctr_bce_loss_bwd(const T* __restrict__ logits, const float* __restrict__ labels,
                                  T* __restrict__ d_logits, long long count, float scale) {
    for (long long i : hctr_grid_stride(count)) {
        const float sigma = 0.5f * (1.0f + tanhf(0.5f * to_f32(logits[i])));
        d_logits[i] = from_f32<T>((sigma - labels[i]) * scale);
    }
}
