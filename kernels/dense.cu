// Element-wise dense-layer kernels: the FC epilogue (bias + ReLU, optionally followed by dropout)
// forward/backward, dropout and the sigmoid.
//
// References: `bias_act_fwd`, `bias_act_bwd`, `bias_act_dropout_fwd`, `bias_act_dropout_bwd`
//             (hugectr_lab/layers/inner_product.py), `dropout_fwd` (hugectr_lab/layers/dropout.py),
//             `sigmoid` (hugectr_lab/layers/activations.py);
//             `gemm_bias_act` (inner_product.py) runs hctr_bias_act_fwd after the GEMM where cuBLASLt's
//             epilogue does not serve the call.
//
// Layouts (row-major): y, z, d_pre, x, u-mask (m, n) T; d_y (m, n) T with row stride ld_dy >= n (the
// backward reads a Concat gradient's columns in place); b (1, n) T; T = float | hctr_half.
// Dropout: keep element i (flat index r * n + c) when u(seed, i) >= rate, u drawn in place from a
// counter-based hash of (seed, i) -- `dropout_uniform` in the reference -- so no random array travels,
// and the backward draws the mask again instead of reading one. The seed is read from device memory
// (seed_ptr; null: no dropout), so a CUDA graph of the step draws a new mask at every replay.
// Launch mapping (V = 4 consecutive columns per thread where n % 4 == 0 and every array is aligned to 4
// elements -- 16-byte float or 8-byte half accesses -- else V = 1; the wrapper picks):
//   hctr_bias_act_fwd<T, V>: a row per row of x threads (hctr_row_stride), its x threads stride over the
//     row's pieces of V columns (no division per element): y + b rounded to T, ReLU, times the dropout mask.
//   hctr_bias_act_bwd<T, V>: grid (ceil(n / 32V), chunks); a block of (32, 8) threads owns 32V columns
//     of one chunk of rows; each of its 8 row-lanes walks the chunk with stride 8, four rows' loads
//     issued before their arithmetic (bytes in flight: the kernel is bound by HBM latency otherwise),
//     writes the gradient d_y * mask * (y > 0) (rounded to T after each product, as the reference) and
//     sums it in float32 in row order. The block writes its column sums to partial (chunks, n) float32;
//     the wrapper adds the chunks (fixed order: deterministic; hctr_column_sums of gemv.cu) and rounds d_b to T.
//   hctr_dropout_fwd, hctr_sigmoid: one thread per element.
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

template <typename T, int V>
__global__ void hctr_bias_act_fwd(const T* __restrict__ y, const T* __restrict__ b, T* __restrict__ z, long long m,
                                  int n, int relu, const unsigned long long* __restrict__ seed_ptr, float rate,
                                  float scale) {
    const unsigned long long seed = seed_ptr ? *seed_ptr : 0ull;
    const int pieces = n / V;
    for (long long r : hctr_row_stride(m)) {
        for (int p = threadIdx.x; p < pieces; p += blockDim.x) {
            float v[V], bias[V];
            hctr_load_vec<T, V>(y, r * pieces + p, v);
            hctr_load_vec<T, V>(b, p, bias);
#pragma unroll
            for (int k = 0; k < V; ++k) {
                // Round the sum to T before the ReLU, as the reference does (y + b is a T array).
                v[k] = to_f32(from_f32<T>(v[k] + bias[k]));
                if (relu && v[k] < 0.0f) v[k] = 0.0f;
                if (seed_ptr) v[k] *= hctr_keep(seed, r * n + p * V + k, rate, scale);   // rounded to T below
            }
            hctr_store_vec<T, V>(z, r * pieces + p, v);
        }
    }
}

// The gradient of V columns of row r: d_y (times the dropout mask, rounded to T) times (y > 0); added to acc.
template <typename T, int V>
__device__ __forceinline__ void hctr_bias_act_grad(float (&g)[V], const float (&yv)[V], long long i, int relu,
                                                   const unsigned long long* seed_ptr, unsigned long long seed,
                                                   float rate, float scale, float (&acc)[V]) {
#pragma unroll
    for (int k = 0; k < V; ++k) {
        if (seed_ptr) g[k] = to_f32(from_f32<T>(g[k] * hctr_keep(seed, i + k, rate, scale)));
        // A product, not a select: NaN and -0 come out as the reference's d * (y > 0).
        if (relu) g[k] *= yv[k] > 0.0f ? 1.0f : 0.0f;
        acc[k] += g[k];
    }
}

// Piece p (V columns) of row r of d_y, whose rows are ld_dy elements apart: one V-wide access where d_y is
// contiguous and aligned (dy_vec), else V element loads (a Concat gradient's columns, read in place).
template <typename T, int V>
__device__ __forceinline__ void hctr_load_dy(const T* __restrict__ d_y, long long ld_dy, int dy_vec, long long r,
                                             int p, float (&g)[V]) {
    if (dy_vec) {
        hctr_load_vec<T, V>(d_y, r * (ld_dy / V) + p, g);
    } else {
#pragma unroll
        for (int k = 0; k < V; ++k) g[k] = to_f32(d_y[r * ld_dy + p * V + k]);
    }
}

template <typename T, int V>
__global__ void hctr_bias_act_bwd(const T* __restrict__ d_y, long long ld_dy, int dy_vec, const T* __restrict__ y,
                                  T* __restrict__ d_pre, float* __restrict__ partial, long long m, int n, int relu,
                                  long long rows_per_block, const unsigned long long* __restrict__ seed_ptr,
                                  float rate, float scale) {
    constexpr int kRows = 4;   // rows whose loads are in flight together
    __shared__ float lanes[8][32 * V + 1];
    const unsigned long long seed = seed_ptr ? *seed_ptr : 0ull;
    const int pieces = n / V, p = blockIdx.x * 32 + threadIdx.x;
    const long long first = blockIdx.y * rows_per_block;
    const long long last = first + rows_per_block < m ? first + rows_per_block : m;
    float acc[V] = {};
    if (p < pieces) {
        long long r = first + threadIdx.y;
        for (; r + 8 * (kRows - 1) < last; r += 8 * kRows) {
            float g[kRows][V], yv[kRows][V];
#pragma unroll
            for (int u = 0; u < kRows; ++u) {
                hctr_load_dy<T, V>(d_y, ld_dy, dy_vec, r + 8 * u, p, g[u]);
                if (relu) hctr_load_vec<T, V>(y, (r + 8 * u) * pieces + p, yv[u]);
            }
#pragma unroll
            for (int u = 0; u < kRows; ++u) {
                hctr_bias_act_grad<T, V>(g[u], yv[u], (r + 8 * u) * n + p * V, relu, seed_ptr, seed, rate, scale, acc);
                if (d_pre) hctr_store_vec<T, V>(d_pre, (r + 8 * u) * pieces + p, g[u]);
            }
        }
        for (; r < last; r += 8) {
            float g[V], yv[V];
            hctr_load_dy<T, V>(d_y, ld_dy, dy_vec, r, p, g);
            if (relu) hctr_load_vec<T, V>(y, r * pieces + p, yv);
            hctr_bias_act_grad<T, V>(g, yv, r * n + p * V, relu, seed_ptr, seed, rate, scale, acc);
            if (d_pre) hctr_store_vec<T, V>(d_pre, r * pieces + p, g);
        }
    }
#pragma unroll
    for (int k = 0; k < V; ++k) lanes[threadIdx.y][threadIdx.x * V + k] = acc[k];
    __syncthreads();
    if (threadIdx.y == 0 && p < pieces) {
#pragma unroll
        for (int k = 0; k < V; ++k) {
            float total = 0.0f;
            for (int j = 0; j < 8; ++j) total += lanes[j][threadIdx.x * V + k];
            partial[blockIdx.y * (long long)n + p * V + k] = total;
        }
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

// y = 0.5 * (1 + tanh(0.5 * x)), each step rounded to T as the reference's array operations round
// (one kernel where CuPy launched four: the inference head runs it at every predict).
template <typename T>
__global__ void hctr_sigmoid(const T* __restrict__ x, T* __restrict__ y, long long total) {
    for (long long i : hctr_grid_stride(total)) {
        const float half_x = to_f32(from_f32<T>(0.5f * to_f32(x[i])));
        const float t = to_f32(from_f32<T>(tanhf(half_x)));
        const float one_plus = to_f32(from_f32<T>(1.0f + t));
        y[i] = from_f32<T>(0.5f * one_plus);
    }
}
