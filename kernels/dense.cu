// Element-wise dense-layer kernels: the FC epilogue (bias + ReLU) forward/backward and dropout.
//
// References: `bias_act_fwd`, `bias_act_bwd` (hugectr_lab/layers/inner_product.py),
//             `dropout_fwd` (hugectr_lab/layers/dropout.py).
//
// Layouts (row-major): y, d_y, z, d_pre, x, u-mask (m, n) T; b (1, n) T; T = float | hctr_half.
// Launch mapping:
//   hctr_bias_act_fwd: one thread per element, grid-stride over m*n.
//   hctr_bias_act_bwd: grid (ceil(n/32), chunks); a block of (32, 8) threads owns 32 columns of one
//     chunk of rows; each of its 8 row-lanes walks the chunk with stride 8, writes the masked
//     gradient and sums it in float32. The block writes its column sums to partial (chunks, n)
//     float32; the wrapper adds the chunks (fixed order: deterministic) and rounds d_b to T.
//   hctr_dropout_fwd: one thread per element; u is drawn in place from a counter-based hash of
//     (seed, element index) -- `dropout_uniform` in the reference -- so no random array travels. The
//     seed is read from device memory, so a CUDA graph of the step draws a new mask at every replay.
#include "hctr_common.cuh"

template <typename T>
__global__ void hctr_bias_act_fwd(const T* __restrict__ y, const T* __restrict__ b, T* __restrict__ z, long long m,
                                  int n, int relu) {
    const long long total = m * n;
    for (long long i : hctr_grid_stride(total)) {
        // Round the sum to T before the ReLU, as the reference does (y + b is a T array).
        float v = to_f32(from_f32<T>(to_f32(y[i]) + to_f32(b[i % n])));
        if (relu && v < 0.0f) v = 0.0f;
        z[i] = from_f32<T>(v);
    }
}

template <typename T>
__global__ void hctr_bias_act_bwd(const T* __restrict__ d_y, const T* __restrict__ y, T* __restrict__ d_pre,
                                  float* __restrict__ partial, long long m, int n, int relu, long long rows_per_block) {
    __shared__ float lanes[8][33];
    const int col = blockIdx.x * 32 + threadIdx.x;
    const long long first = blockIdx.y * rows_per_block;
    const long long last = first + rows_per_block < m ? first + rows_per_block : m;
    float acc = 0.0f;
    if (col < n) {
        for (long long r = first + threadIdx.y; r < last; r += 8) {
            const long long i = r * n + col;
            float g = to_f32(d_y[i]);
            if (relu) {
                if (!(to_f32(y[i]) > 0.0f)) g = 0.0f;
                d_pre[i] = from_f32<T>(g);
            }
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

// splitmix64 of (seed + (i+1) * golden ratio); the top 24 bits as a float in [0, 1).
__device__ __forceinline__ float hctr_uniform(unsigned long long seed, unsigned long long i) {
    unsigned long long x = seed + (i + 1ull) * 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    x ^= x >> 31;
    return (float)(x >> 40) * (1.0f / 16777216.0f);
}

// y = x * mask, mask = (u >= rate) * scale; scale is 1/(1-rate) already rounded to T by the wrapper.
template <typename T>
__global__ void hctr_dropout_fwd(const T* __restrict__ x, T* __restrict__ y, T* __restrict__ mask, long long total,
                                 const unsigned long long* __restrict__ seed_ptr, float rate, float scale) {
    const unsigned long long seed = *seed_ptr;
    for (long long i : hctr_grid_stride(total)) {
        const float keep = hctr_uniform(seed, (unsigned long long)i) >= rate ? scale : 0.0f;
        mask[i] = from_f32<T>(keep);
        y[i] = from_f32<T>(to_f32(x[i]) * keep);
    }
}
