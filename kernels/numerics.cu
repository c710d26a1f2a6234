// The training step's finiteness check: whether an array holds a NaN or an infinity, read once, no host
// synchronisation. A flag, not a sum: CuPy's reductions of DCN's fp16 gradients took 0.077 ms of the
// replayed step (row sums, then sums of the sums) for what one pass over 17 MB reads in about 0.01.
//
// Reference: `all_finite` (hugectr_lab/numerics.py); wrapper: hugectr_lab/backend/cuda/numerics_ops.py.
//
// Layouts (T = float | hctr_half): x is `rows` rows of `cols` contiguous elements, `ld` elements apart (a
// contiguous array is one row; an embedding's slice of a Concat gradient has ld > cols). flag (1,) int:
// set to 1 when an element is not finite, never cleared (the wrapper zeroes it once for several arrays).
// Launch mapping: a contiguous array grid-stride in 16-byte words (8 halves or 4 floats a load; the elements
// before the first 16-byte boundary and the tail one by one); a row-strided view a row per block
// (hctr_row_stride), its threads over the row (no division per element). Each thread keeps its verdict in
// a register and a warp with a non-finite element sets the flag once. An or is order-free, so the result
// is deterministic.
#include "hctr_common.cuh"

// Whether a 32-bit word of T values holds one whose exponent bits are all ones (an infinity or a NaN).
template <typename T>
__device__ __forceinline__ bool hctr_word_bad(unsigned int w);
template <>
__device__ __forceinline__ bool hctr_word_bad<float>(unsigned int w) {
    return (w & 0x7f800000u) == 0x7f800000u;
}
template <>
__device__ __forceinline__ bool hctr_word_bad<hctr_half>(unsigned int w) {
    return (w & 0x7c00u) == 0x7c00u || (w & 0x7c000000u) == 0x7c000000u;
}

template <typename T>
__global__ void hctr_all_finite(const T* __restrict__ x, long long rows, long long cols, long long ld,
                                int* __restrict__ flag) {
    bool bad = false;
    if (ld == cols || rows == 1) {
        // Contiguous: 16-byte words between the elements before x's first 16-byte boundary and the tail.
        constexpr int V = 16 / sizeof(T);
        const long long n = rows * cols;
        const long long misaligned = (long long)((reinterpret_cast<unsigned long long>(x) & 15ull) / sizeof(T));
        const long long head = misaligned ? (n < V - misaligned ? n : V - misaligned) : 0;
        const long long words = (n - head) / V;
        const uint4* body = reinterpret_cast<const uint4*>(x + head);
        for (long long i : hctr_grid_stride(words)) {
            const uint4 w = body[i];
            bad |= hctr_word_bad<T>(w.x) | hctr_word_bad<T>(w.y) | hctr_word_bad<T>(w.z) | hctr_word_bad<T>(w.w);
        }
        const long long tail = n - head - words * V;
        for (long long i : hctr_grid_stride(head + tail)) bad |= hctr_bad(x[i < head ? i : i + words * V]);
    } else {
        for (long long r : hctr_row_stride(rows))
            for (long long c = threadIdx.x; c < cols; c += blockDim.x) bad |= hctr_bad(x[r * ld + c]);
    }
    if (__any_sync(0xffffffffu, bad) && (threadIdx.x & 31) == 0) atomicOr(flag, 1);
}
