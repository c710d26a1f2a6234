// Element-wise dense-layer kernels: the FC epilogue (bias + ReLU, optionally followed by dropout)
// forward/backward and dropout.
//
// References: `bias_act_fwd`, `bias_act_bwd`, `bias_act_dropout_fwd`, `bias_act_dropout_bwd`
//             (hugectr_lab/layers/inner_product.py), `dropout_fwd` (hugectr_lab/layers/dropout.py);
//             `gemm_bias_act` (inner_product.py) runs hctr_bias_act_fwd after the GEMM where cuBLASLt's
//             epilogue does not serve the call.
//
// Layouts (row-major): y, d_y, z, d_pre, x, u-mask (m, n) T; b (1, n) T; T = float | hctr_half.
// Dropout: keep element i (flat index r * n + c) when u(seed, i) >= rate, u drawn in place from a
// counter-based hash of (seed, i) -- `dropout_uniform` in the reference -- so no random array travels,
// and the backward draws the mask again instead of reading one. The seed is read from device memory
// (seed_ptr; null: no dropout), so a CUDA graph of the step draws a new mask at every replay.
// Launch mapping:
//   hctr_bias_act_fwd: a row per row of x threads (hctr_row_stride), its x threads stride over the n
//     columns (no division per element): y + b rounded to T, ReLU, times the dropout mask.
//   hctr_bias_act_bwd: grid (ceil(n/32), chunks); a block of (32, 8) threads owns 32 columns of one
//     chunk of rows; each of its 8 row-lanes walks the chunk with stride 8, writes the gradient
//     d_y * mask * (y > 0) (rounded to T after each product, as the reference) and sums it in
//     float32. The block writes its column sums to partial (chunks, n) float32; the wrapper adds the
//     chunks (fixed order: deterministic) and rounds d_b to T.
//   hctr_dropout_fwd: one thread per element.
#include "hctr_common.cuh"

// splitmix64 of (seed + (i+1) * golden ratio); the top 24 bits as a float in [0, 1).
__device__ __forceinline__ float hctr_uniform(unsigned long long seed, unsigned long long i) {
    unsigned long long x = seed + (i + 1ull) * 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    x ^= x >> 31;
    return (float)(x >> 40) * (1.0f / 16777216.0f);
}

// Dropout's mask value of element i: scale (1/(1-rate), already rounded to T by the wrapper) or 0.
__device__ __forceinline__ float hctr_keep(unsigned long long seed, long long i, float rate, float scale) {
    return hctr_uniform(seed, (unsigned long long)i) >= rate ? scale : 0.0f;
}

template <typename T>
__global__ void hctr_bias_act_fwd(const T* __restrict__ y, const T* __restrict__ b, T* __restrict__ z, long long m,
                                  int n, int relu, const unsigned long long* __restrict__ seed_ptr, float rate,
                                  float scale) {
    const unsigned long long seed = seed_ptr ? *seed_ptr : 0ull;
    for (long long r : hctr_row_stride(m)) {
        for (int c = threadIdx.x; c < n; c += blockDim.x) {
            const long long i = r * n + c;
            // Round the sum to T before the ReLU, as the reference does (y + b is a T array).
            float v = to_f32(from_f32<T>(to_f32(y[i]) + to_f32(b[c])));
            if (relu && v < 0.0f) v = 0.0f;
            if (seed_ptr) v *= hctr_keep(seed, i, rate, scale);   // T times T, rounded to T below
            z[i] = from_f32<T>(v);
        }
    }
}

template <typename T>
__global__ void hctr_bias_act_bwd(const T* __restrict__ d_y, const T* __restrict__ y, T* __restrict__ d_pre,
                                  float* __restrict__ partial, long long m, int n, int relu, long long rows_per_block,
                                  const unsigned long long* __restrict__ seed_ptr, float rate, float scale) {
    __shared__ float lanes[8][33];
    const unsigned long long seed = seed_ptr ? *seed_ptr : 0ull;
    const int col = blockIdx.x * 32 + threadIdx.x;
    const long long first = blockIdx.y * rows_per_block;
    const long long last = first + rows_per_block < m ? first + rows_per_block : m;
    float acc = 0.0f;
    if (col < n) {
        for (long long r = first + threadIdx.y; r < last; r += 8) {
            const long long i = r * n + col;
            float g = to_f32(d_y[i]);
            if (seed_ptr) g = to_f32(from_f32<T>(g * hctr_keep(seed, i, rate, scale)));
            // A product, not a select: NaN and -0 come out as the reference's d * (y > 0).
            if (relu) g *= to_f32(y[i]) > 0.0f ? 1.0f : 0.0f;
            if (d_pre) d_pre[i] = from_f32<T>(g);
            acc += g;
        }
    }
    lanes[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < n) {
        float total = 0.0f;
        for (int j = 0; j < 8; ++j) total += lanes[j][threadIdx.x];
        partial[blockIdx.y * (long long)n + col] = total;
    }
}

// y = x * mask, mask = (u >= rate) * scale.
template <typename T>
__global__ void hctr_dropout_fwd(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ mask, long long total,
                                 const unsigned long long* __restrict__ seed_ptr, float rate, float scale) {
    const unsigned long long seed = *seed_ptr;
    for (long long i : hctr_grid_stride(total)) {
        const float keep = hctr_keep(seed, i, rate, scale);
        mask[i] = from_f32<T>(keep);
        y[i] = from_f32<T>(to_f32(x[i]) * keep);
    }
}
