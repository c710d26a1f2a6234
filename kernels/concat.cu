// Concat's forward: out = [x_0 | x_1 | ...] along columns, one launch per input writing its columns. Also
// what makes a row-strided view (a Concat gradient's slice, a Slice output) contiguous for a kernel that
// needs it -- the concat of one input -- and what pads a GEMM operand with zero columns
// (hugectr_lab/backend/cuda/rows.py: copy_rows, contiguous, zero_padded).
//
// References: `concat_columns` (hugectr_lab/layers/concat_slice.py). The wrappers of `bias_act_fwd`,
// `bias_act_bwd`, `bias_act_dropout_fwd`, `bias_act_dropout_bwd`, `gemm_bias_act`
// (hugectr_lab/layers/inner_product.py), `multicross_fwd` and `multicross_bwd`
// (hugectr_lab/layers/multi_cross.py) launch it on a row-strided input (layer_ops._rows).
//
// Layouts (row-major, T = float | hctr_half): x (m, w) with row stride ld_x >= w elements (a view into a
// wider array, or contiguous: ld_x = w); out (m, ...) with row stride ld_out; the launch gets out's
// pointer already moved to the input's first column; columns w .. w_out of each out row get zeros.
// Launch mapping: a row per row of x threads (hctr_row_stride); the x threads stride over the w columns
// (a warp reads and writes consecutive elements), four strides' loads issued before their stores so that
// an SM keeps enough bytes in flight; no division per element. Plain copies: bit-exact.
#include "hctr_common.cuh"

template <typename T>
__global__ void hctr_concat_columns(const T* __restrict__ x, long long ld_x, T* __restrict__ out, long long ld_out,
                                    long long m, int w, int w_out) {
    constexpr int kBatch = 4;
    const int step = blockDim.x;
    for (long long r : hctr_row_stride(m)) {
        const T* src = x + r * ld_x;
        T* dst = out + r * ld_out;
        int c = threadIdx.x;
        for (; c + (kBatch - 1) * step < w; c += kBatch * step) {
            T v[kBatch];
#pragma unroll
            for (int u = 0; u < kBatch; ++u) v[u] = src[c + u * step];
#pragma unroll
            for (int u = 0; u < kBatch; ++u) dst[c + u * step] = v[u];
        }
        for (; c < w; c += step) dst[c] = src[c];
        for (c = w + threadIdx.x; c < w_out; c += step) dst[c] = from_f32<T>(0.0f);
    }
}
