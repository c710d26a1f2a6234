// Concat's forward: out = [x_0 | x_1 | ...] along columns, up to HCTR_COLUMN_BLOCKS inputs in one launch
// (one graph node per Concat, not one per input). Also what makes a row-strided view (a Concat gradient's
// slice, a Slice output) contiguous for a kernel that needs it -- the concat of one input -- and what pads
// a GEMM operand with zero columns (hugectr_lab/backend/cuda/rows.py: copy_parts, contiguous, zero_padded).
//
// References: `concat_columns` (hugectr_lab/layers/concat_slice.py). The wrappers of `bias_act_fwd`,
// `bias_act_bwd`, `bias_act_dropout_fwd`, `bias_act_dropout_bwd`, `gemm_bias_act`
// (hugectr_lab/layers/inner_product.py), `multicross_fwd` and `multicross_bwd`
// (hugectr_lab/layers/multi_cross.py) launch it on a row-strided input (layer_ops._rows).
//
// Layouts (row-major, T = float | hctr_half): part p is x_p (m, w_p) with row stride ld_p >= w_p elements
// (a view into a wider array, or contiguous: ld_p = w_p); an unused part has w_p = 0 (and a NULL x_p).
// out (m, ...) has row stride ld_out; the launch gets out's pointer already moved to the first part's
// column; the parts land side by side from there, and the columns after them up to w_out get zeros.
// Launch mapping: a row per row of x threads (hctr_row_stride); the x threads stride over each part's
// columns in turn (a warp reads and writes consecutive elements), four strides' loads issued before their
// stores so that an SM keeps enough bytes in flight; no division per element. Plain copies: bit-exact.
#include "hctr_common.cuh"

template <typename T>
__device__ __forceinline__ void hctr_copy_row(const T* __restrict__ src, T* __restrict__ dst, int w) {
    constexpr int kBatch = 4;
    const int step = blockDim.x;
    int c = threadIdx.x;
    for (; c + (kBatch - 1) * step < w; c += kBatch * step) {
        T v[kBatch];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) v[u] = src[c + u * step];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) dst[c + u * step] = v[u];
    }
    for (; c < w; c += step) dst[c] = src[c];
}

template <typename T>
__global__ void hctr_concat_columns(const T* __restrict__ x0, long long ld0, int w0,
                                    const T* __restrict__ x1, long long ld1, int w1,
                                    const T* __restrict__ x2, long long ld2, int w2,
                                    const T* __restrict__ x3, long long ld3, int w3,
                                    const T* __restrict__ x4, long long ld4, int w4,
                                    T* __restrict__ out, long long ld_out, long long m, int w_out) {
    const T* const xs[HCTR_COLUMN_BLOCKS] = {x0, x1, x2, x3, x4};
    const long long lds[HCTR_COLUMN_BLOCKS] = {ld0, ld1, ld2, ld3, ld4};
    const int ws[HCTR_COLUMN_BLOCKS] = {w0, w1, w2, w3, w4};
    for (long long r : hctr_row_stride(m)) {
        T* dst = out + r * ld_out;
        int start = 0;
#pragma unroll
        for (int p = 0; p < HCTR_COLUMN_BLOCKS; ++p) {
            if (ws[p] > 0) hctr_copy_row(xs[p] + r * lds[p], dst + start, ws[p]);
            start += ws[p];
        }
        for (int c = start + threadIdx.x; c < w_out; c += blockDim.x) dst[c] = from_f32<T>(0.0f);
    }
}
