// The 3xTF32 split of an FC's float32 input: the activation operand of a float32-accurate GEMM on TF32
// tensor cores (x·W ≈ x_hi·W_hi + x_lo·W_hi + x_hi·W_lo as one TF32 GEMM over K = 3k; W' = [W_hi; W_hi; W_lo]
// is built once per weight load by `tf32_split_weight`, in array operations, from the same rounding).
//
// Reference: `tf32_split` (hugectr_lab/layers/inner_product.py), bit for bit: the rounding is integer
//            operations on the float's bits (`tf32_parts`), the remainder an exact subtraction.
//
// Layouts: x (m, k) float, rows ld_x >= k elements apart (a Concat's output or a Slice's columns, read in
// place); out (m, width) float, C-contiguous, width >= 3k (the wrapper's caller rounds 3k up to 16 bytes so
// that the GEMM reads aligned rows): out[r] = [x_hi | x_lo | x_hi | 0 ...], where hi = x rounded to TF32
// (10 explicit mantissa bits; nearest, ties to even; truncated where rounding would overflow to infinity;
// hi = x for inf and NaN) and lo = x - hi (exact in float32; 0 for inf and NaN).
// Launch mapping (hctr_tf32_split<V>): a row of x per row of threads (hctr_row_stride), its threads striding
// over the row's pieces of V columns; each piece is one load and three stores. V = 4 (16-byte accesses)
// where k, ld_x and width are multiples of 4 and both arrays 16-byte aligned, else V = 1 (the wrapper picks).
// The row's width - 3k padding columns are written zero after its pieces.
#include "hctr_common.cuh"

// x = hi + lo as described above; the integer operations of `tf32_parts`, so the bits match.
__device__ __forceinline__ void hctr_tf32_parts(float x, float& hi, float& lo) {
    if (hctr_bad(x)) {   // inf, NaN
        hi = x;
        lo = 0.0f;
        return;
    }
    const unsigned int bits = __float_as_uint(x);
    // + half the 13 dropped bits' weight less one, + the kept LSB: to nearest, ties to even
    unsigned int up = (bits + 0xFFFu + ((bits >> 13) & 1u)) & 0xFFFFE000u;
    if ((up & 0x7F800000u) == 0x7F800000u) up = bits & 0xFFFFE000u;   // past the largest finite: truncated
    hi = __uint_as_float(up);
    lo = x - hi;
}

template <int V>
__global__ void hctr_tf32_split(const float* __restrict__ x, long long ld_x, float* __restrict__ out, long long m,
                                int k, int width) {
    const int pieces = k / V;
    for (long long r : hctr_row_stride(m)) {
        const float* row = x + r * ld_x;
        float* o = out + r * width;
        for (int p = threadIdx.x; p < pieces; p += blockDim.x) {
            float v[V], hi[V], lo[V];
            hctr_load_vec<float, V>(row, p, v);
#pragma unroll
            for (int j = 0; j < V; ++j) hctr_tf32_parts(v[j], hi[j], lo[j]);
            hctr_store_vec<float, V>(o, p, hi);
            hctr_store_vec<float, V>(o + k, p, lo);
            hctr_store_vec<float, V>(o + 2 * k, p, hi);
        }
        for (int c = 3 * k + threadIdx.x; c < width; c += blockDim.x) o[c] = 0.0f;
    }
}
