// Skinny products, where a GEMM library runs a general kernel over a degenerate shape: an FC with one
// output (DCN's, DeepFM's and W&D's last layer: (m, k) · (k, 1)), its weight gradient xᵀ·g and its
// data gradient g·wᵀ (an outer product, K = 1). On an H100 cuBLAS ran these as gemvx, gemv2T and an
// align1 tensor-op GEMM at about 1.2-1.5 TB/s, plus the bias epilogue as a kernel of its own.
//
// References: `gemm`, `gemm_bias_act` and `gemm_bias_act_concat` (hugectr_lab/layers/inner_product.py): the
// wrappers in hugectr_lab/backend/cuda/layer_ops.py (`skinny_product`, `gemv_rows`) launch these for those
// shapes only;
// hctr_column_sums is also the bias gradient's finish of `bias_act_bwd` and `bias_act_dropout_bwd`.
//
// Layouts (row-major, T = float | hctr_half; sums in float32, rounded to T once, as cuBLAS does):
//   hctr_gemv_rows: x (m, k) given as up to HCTR_COLUMN_BLOCKS column blocks side by side, block p (m, k_p)
//     with row stride ld_p >= k_p (k = sum k_p; an unused block has k_p = 0) -- one block for an FC's input,
//     several for a Concat's inputs read where they lie (`gemm_bias_act_concat`: no concatenated copy) --,
//     w (k,), b (1,) or NULL -> y (m,) = act(x · w + b), ReLU when relu; the dot is rounded to T before
//     the bias is added, as the GEMM and the epilogue kernel round it (an FC fused with its ReLU/Dropout
//     into one chain gives the same bits).
//   hctr_gemv_cols: x (m, k) with row stride ld, g (m,) -> partial (chunks, k) float32, the sums of
//     x[r, c] g[r] over each chunk's rows.
//   hctr_column_sums: partial (chunks, n) float32 -> out (n,) T, the chunks added in order (fixed order:
//     two runs give the same bits).
//   hctr_outer: g (m,), w (k,) -> out (m, k) = g[r] w[c].
// Launch mapping:
//   hctr_gemv_rows: one warp per row (hctr_warp_stride), its lanes strided over each block's columns in
//     turn with four independent sums in flight, then a warp sum (one block: the order of a plain row).
//   hctr_gemv_cols: grid (ceil(k / 32), chunks); a block of (32, 8) threads owns 32 columns of one chunk
//     of rows; each of its 8 row-lanes walks the chunk with stride 8 (four rows' loads in flight), and
//     the lanes' sums are added in lane order.
//   hctr_column_sums: one thread per column (hctr_grid_stride).
//   hctr_outer: a row per row of x threads (hctr_row_stride), the x threads strided over the columns.
#include "hctr_common.cuh"

template <typename T>
__global__ void hctr_gemv_rows(const T* __restrict__ x0, long long ld0, int k0, const T* __restrict__ x1,
                               long long ld1, int k1, const T* __restrict__ x2, long long ld2, int k2,
                               const T* __restrict__ x3, long long ld3, int k3, const T* __restrict__ x4,
                               long long ld4, int k4, const T* __restrict__ w, const T* __restrict__ b,
                               T* __restrict__ y, long long m, int relu) {
    const T* const xs[HCTR_COLUMN_BLOCKS] = {x0, x1, x2, x3, x4};
    const long long lds[HCTR_COLUMN_BLOCKS] = {ld0, ld1, ld2, ld3, ld4};
    const int ks[HCTR_COLUMN_BLOCKS] = {k0, k1, k2, k3, k4};
    const int lane = threadIdx.x & 31;
    const float bias = b ? to_f32(b[0]) : 0.0f;
    for (long long r : hctr_warp_stride(m)) {
        float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        const T* wp = w;
#pragma unroll
        for (int p = 0; p < HCTR_COLUMN_BLOCKS; ++p) {
            const int k = ks[p];
            if (k == 0) continue;   // an unused block (x NULL)
            const T* row = xs[p] + r * lds[p];
            int c = lane;
            for (; c + 96 < k; c += 128) {
#pragma unroll
                for (int u = 0; u < 4; ++u) s[u] += to_f32(row[c + 32 * u]) * to_f32(wp[c + 32 * u]);
            }
            for (; c < k; c += 32) s[0] += to_f32(row[c]) * to_f32(wp[c]);
            wp += k;
        }
        float v = warp_sum((s[0] + s[1]) + (s[2] + s[3]));
        if (lane == 0) {
            v = to_f32(from_f32<T>(v)) + bias;
            if (relu && v < 0.0f) v = 0.0f;
            y[r] = from_f32<T>(v);
        }
    }
}

template <typename T>
__global__ void hctr_gemv_cols(const T* __restrict__ x, long long ld, const T* __restrict__ g,
                               float* __restrict__ partial, long long m, int k, long long rows_per_block) {
    constexpr int kRows = 4;
    __shared__ float lanes[8][33];
    const int c = blockIdx.x * 32 + threadIdx.x;
    const long long first = blockIdx.y * rows_per_block;
    const long long last = first + rows_per_block < m ? first + rows_per_block : m;
    float acc = 0.0f;
    if (c < k) {
        long long r = first + threadIdx.y;
        for (; r + (kRows - 1) * 8 < last; r += kRows * 8) {
            float xv[kRows], gv[kRows];
#pragma unroll
            for (int u = 0; u < kRows; ++u) {
                xv[u] = to_f32(x[(r + u * 8) * ld + c]);
                gv[u] = to_f32(g[r + u * 8]);
            }
#pragma unroll
            for (int u = 0; u < kRows; ++u) acc += xv[u] * gv[u];
        }
        for (; r < last; r += 8) acc += to_f32(x[r * ld + c]) * to_f32(g[r]);
    }
    lanes[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < k) {
        float sum = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; ++j) sum += lanes[j][threadIdx.x];
        partial[blockIdx.y * (long long)k + c] = sum;
    }
}

template <typename T>
__global__ void hctr_column_sums(const float* __restrict__ partial, T* __restrict__ out, int chunks, long long n) {
    for (long long c : hctr_grid_stride(n)) {
        float sum = 0.0f;
        for (int j = 0; j < chunks; ++j) sum += partial[j * n + c];
        out[c] = from_f32<T>(sum);
    }
}

template <typename T>
__global__ void hctr_outer(const T* __restrict__ g, const T* __restrict__ w, T* __restrict__ out, long long m,
                           int k) {
    for (long long r : hctr_row_stride(m)) {
        const float gr = to_f32(g[r]);
        T* row = out + r * k;
        for (int c = threadIdx.x; c < k; c += blockDim.x) row[c] = from_f32<T>(gr * to_f32(w[c]));
    }
}
