// Shared device helpers of the hugectr-lab kernels (no CUDA headers needed: NVRTC and nvcc alike).
//
// Storage types: `float`, and `hctr_half` (IEEE binary16 bits, what a CuPy float16 array holds).
// Arithmetic is always in float32: load with `to_f32`, store with `from_f32<T>` (round to nearest
// even, as NumPy's astype). Kernels are compiled with --fmad=false so that a*b+c rounds twice, as
// the NumPy references do; that is what makes most kernels bit-identical to their reference.
#pragma once

struct hctr_half {
    unsigned short bits;
};

__device__ __forceinline__ float to_f32(float x) { return x; }

__device__ __forceinline__ float to_f32(hctr_half x) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.bits));
    return f;
}

template <typename T>
__device__ __forceinline__ T from_f32(float x);

template <>
__device__ __forceinline__ float from_f32<float>(float x) { return x; }

template <>
__device__ __forceinline__ hctr_half from_f32<hctr_half>(float x) {
    hctr_half h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(x));
    return h;
}

// Piece `at` of VW consecutive elements of a T array as one access (VW = 1, 2, 4: float4 / float2 / float,
// or VW halves in 8, 4 or 2 bytes; the piece aligned to its size), as float32 values. Indexing typed
// vector pointers (not casting an element address) lets the compiler keep each access one instruction.
template <typename T, int VW>
__device__ __forceinline__ void hctr_load_vec(const T* __restrict__ base, long long at, float (&x)[VW]) {
    if constexpr (sizeof(T) == sizeof(float)) {
        const float* f = reinterpret_cast<const float*>(base);
        if constexpr (VW == 4) {
            const float4 q = reinterpret_cast<const float4*>(f)[at];
            x[0] = q.x, x[1] = q.y, x[2] = q.z, x[3] = q.w;
        } else if constexpr (VW == 2) {
            const float2 q = reinterpret_cast<const float2*>(f)[at];
            x[0] = q.x, x[1] = q.y;
        } else {
            x[0] = f[at];
        }
    } else {
        unsigned int h[VW];
        if constexpr (VW == 4) {
            const uint2 q = reinterpret_cast<const uint2*>(base)[at];
            h[0] = q.x & 0xFFFFu, h[1] = q.x >> 16, h[2] = q.y & 0xFFFFu, h[3] = q.y >> 16;
        } else if constexpr (VW == 2) {
            const unsigned int q = reinterpret_cast<const unsigned int*>(base)[at];
            h[0] = q & 0xFFFFu, h[1] = q >> 16;
        } else {
            h[0] = base[at].bits;
        }
#pragma unroll
        for (int w = 0; w < VW; ++w) x[w] = to_f32(hctr_half{(unsigned short)h[w]});
    }
}

// Stores piece `at` of VW elements (rounded to T) as one access; the layout of hctr_load_vec.
template <typename T, int VW>
__device__ __forceinline__ void hctr_store_vec(T* __restrict__ base, long long at, const float (&x)[VW]) {
    if constexpr (sizeof(T) == sizeof(float)) {
        float* f = reinterpret_cast<float*>(base);
        if constexpr (VW == 4) reinterpret_cast<float4*>(f)[at] = float4{x[0], x[1], x[2], x[3]};
        else if constexpr (VW == 2) reinterpret_cast<float2*>(f)[at] = float2{x[0], x[1]};
        else f[at] = x[0];
    } else {
        unsigned int h[VW];
#pragma unroll
        for (int w = 0; w < VW; ++w) h[w] = from_f32<hctr_half>(x[w]).bits;
        if constexpr (VW == 4) reinterpret_cast<uint2*>(base)[at] = uint2{h[0] | (h[1] << 16), h[2] | (h[3] << 16)};
        else if constexpr (VW == 2) reinterpret_cast<unsigned int*>(base)[at] = h[0] | (h[1] << 16);
        else base[at].bits = (unsigned short)h[0];
    }
}

// Column blocks side by side that the concat and GEMV kernels take in one launch (their inputs' x0..x4):
// HugeCTR's Concat takes 2 to 5 inputs. backend/cuda/common.py: COLUMN_BLOCKS, block_args.
#define HCTR_COLUMN_BLOCKS 5

// Whether one element is an infinity or a NaN (its exponent bits all ones; float16's convert to float32's).
template <typename T>
__device__ __forceinline__ bool hctr_bad(T v) {
    return (__float_as_uint(to_f32(v)) & 0x7f800000u) == 0x7f800000u;
}

// Sum of `v` over the 32 lanes of a warp (every lane gets the total; fixed order: deterministic).
__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

// Sum of `v` over a block whose size is a multiple of 32 (at most 1024); `scratch` holds 32 floats.
// Every thread gets the total.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();   // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0f;
    return warp_sum(v);
}

// Key u's reduced gradient element e: its chunk sums partial (C, E) float32 (chunks chunk_offsets[u] ..
// chunk_offsets[u+1]-1) added in order from 0, then / scaler. The second pass of the embedding
// gradient reduction (embedding.cu), also run inside the fused update (sparse_update.cu).
// Eight chunks' loads are issued before their additions (same order): a hot key (a slot of 3 values at
// batch 16384: about 170 chunks) otherwise waits a load latency per chunk, and the whole kernel on it.
__device__ __forceinline__ float hctr_chunk_sum(const float* __restrict__ partial,
                                                const long long* __restrict__ chunk_offsets, long long u, int e,
                                                int vec, float scaler) {
    constexpr int kLoads = 8;
    float acc = 0.0f;
    long long c = chunk_offsets[u];
    const long long end = chunk_offsets[u + 1];
    for (; c + kLoads <= end; c += kLoads) {
        float p[kLoads];
#pragma unroll
        for (int j = 0; j < kLoads; ++j) p[j] = partial[(c + j) * vec + e];
#pragma unroll
        for (int j = 0; j < kLoads; ++j) acc += p[j];
    }
    for (; c < end; ++c) acc += partial[c * vec + e];
    return acc / scaler;
}

// The empty-key marker of a hash table: the key type's maximum (`sentinel_key` in the references),
// which also marks a padding key. Key = unsigned int (I32) | long long (I64).
template <typename Key>
__device__ __forceinline__ Key hctr_empty_key();
template <>
__device__ __forceinline__ unsigned int hctr_empty_key<unsigned int>() { return 0xFFFFFFFFu; }
template <>
__device__ __forceinline__ long long hctr_empty_key<long long>() { return 0x7FFFFFFFFFFFFFFFLL; }

// Strided index loops in 64-bit (sizes may pass 2^31):
//   for (long long i : hctr_grid_stride(n))   one index of [0, n) per grid thread at a time;
//   for (long long s : hctr_block_stride(n))  one per block (the block's threads share it);
//   for (long long r : hctr_warp_stride(n))   one per warp (blockDim.x a multiple of 32);
//   for (long long r : hctr_row_stride(n))    one per (block, threadIdx.y): the x threads of a row share it.
// After inlining each is the plain `for (i = first; i < n; i += step)`. Kernels write no strided loop
// over the grid of their own (tests/architecture checks that gridDim appears only in this file).
struct hctr_stride_range {
    struct iterator {
        long long i, step;
        __device__ __forceinline__ long long operator*() const { return i; }
        __device__ __forceinline__ iterator& operator++() {
            i += step;
            return *this;
        }
        __device__ __forceinline__ bool operator!=(const iterator& end) const { return i < end.i; }
    };
    long long first, n, step;
    __device__ __forceinline__ iterator begin() const { return {first, step}; }
    __device__ __forceinline__ iterator end() const { return {n, step}; }
};

__device__ __forceinline__ hctr_stride_range hctr_grid_stride(long long n) {
    return {blockIdx.x * (long long)blockDim.x + threadIdx.x, n, (long long)gridDim.x * blockDim.x};
}

__device__ __forceinline__ hctr_stride_range hctr_block_stride(long long n) {
    return {(long long)blockIdx.x, n, (long long)gridDim.x};
}

__device__ __forceinline__ hctr_stride_range hctr_row_stride(long long n) {
    return {blockIdx.x * (long long)blockDim.y + threadIdx.y, n, (long long)gridDim.x * blockDim.y};
}

__device__ __forceinline__ hctr_stride_range hctr_warp_stride(long long n) {
    return {(blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5, n, ((long long)gridDim.x * blockDim.x) >> 5};
}
