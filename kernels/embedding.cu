// Embedding gather + combine (forward) and per-key gradient reduction (backward).
//
// References (hugectr_lab/embedding/combine.py): `embedding_combine_fwd`, `embedding_reduce_grad`.
//
// Layouts (row-major, E = embedding_vec_size):
//   values      (V, E) float32       the device's table
//   rows        (K,)   int64         table row of each key occurrence, -1 = no row (zero vector)
//   row_offsets (R+1,) int64         CSR over R (sample, slot) rows
//   row_scale   (R,)   float32       mean multipliers, or nullptr for sum
//   out         (R, E) T             T = float | hctr_half (the compute dtype)
//   wgrad       (R, E) T             top gradient per CSR row
//   occ_offsets (U+1,) int64, occ (K,) int64: the occurrences of distinct key u, in input order
//   chunk_offsets (U+1,) int64, partial (C, E) float32: per-chunk sums (chunks of <= `chunk` occurrences)
//   g           (U, E) float32
//
// Launch mapping: combine: block (X, Y) with X = min(E, 128) lanes over e and Y = 256 / X rows,
// grid-stride over rows; the lanes of a row read one contiguous table row (coalesced) and the row's
// keys are read once per lane group. Reduce: one thread per element (chunk, e), then per (u, e).
// Combine sums a row's keys in CSR order and the reduction a key's occurrences in input order (chunk
// by chunk), in float32: add.at's order up to the chunk split, so results equal the reference up to
// rounding. A one-hot batch is the same combine kernel with one key per row.
#include "hctr_common.cuh"

template <typename T>
__global__ void hctr_embedding_combine_fwd(const float* __restrict__ values, const long long* __restrict__ rows,
                                           const long long* __restrict__ row_offsets,
                                           const float* __restrict__ row_scale, T* __restrict__ out,
                                           long long num_rows, int vec) {
    for (long long r = blockIdx.x * (long long)blockDim.y + threadIdx.y; r < num_rows;
         r += (long long)gridDim.x * blockDim.y) {
        const long long first = row_offsets[r], end = row_offsets[r + 1];
        const float scale = row_scale != nullptr ? row_scale[r] : 1.0f;
        for (int e = threadIdx.x; e < vec; e += blockDim.x) {
            float acc = 0.0f;
            for (long long k = first; k < end; ++k) {
                const long long row = rows[k];
                if (row >= 0) acc += values[row * vec + e];
            }
            if (row_scale != nullptr) acc *= scale;
            out[r * vec + e] = from_f32<T>(acc);
        }
    }
}

// Pass 1 of the reduction: partial[c] = sum of wgrad[row_ids[k]] over the occurrences k of chunk c.
// A key's occurrences (in input order) are cut into chunks of at most `chunk`; key u owns chunks
// chunk_offsets[u] .. chunk_offsets[u+1]-1. Chunks keep a hot key (a Zipf head key occurs thousands
// of times per batch) from serialising on one thread.
template <typename T>
__global__ void hctr_embedding_reduce_grad_chunks(const T* __restrict__ wgrad, const long long* __restrict__ row_ids,
                                                  const long long* __restrict__ occ_offsets,
                                                  const long long* __restrict__ occ,
                                                  const long long* __restrict__ chunk_offsets,
                                                  float* __restrict__ partial, long long num_unique,
                                                  long long num_chunks, int vec, int chunk) {
    const long long total = num_chunks * vec;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long c = i / vec;
        const int e = (int)(i - c * vec);
        long long lo = 0, hi = num_unique - 1;   // the key u owning chunk c: last u with chunk_offsets[u] <= c
        while (lo < hi) {
            const long long mid = (lo + hi + 1) >> 1;
            if (chunk_offsets[mid] <= c) lo = mid;
            else hi = mid - 1;
        }
        const long long first = occ_offsets[lo] + (c - chunk_offsets[lo]) * chunk;
        const long long end = first + chunk < occ_offsets[lo + 1] ? first + chunk : occ_offsets[lo + 1];
        float acc = 0.0f;
        for (long long j = first; j < end; ++j) acc += to_f32(wgrad[row_ids[occ[j]] * vec + e]);
        partial[i] = acc;
    }
}

// Pass 2: g[u] = (sum of key u's chunk sums, in order) / scaler.
__global__ void hctr_embedding_reduce_grad_bwd(const float* __restrict__ partial,
                                               const long long* __restrict__ chunk_offsets, float* __restrict__ g,
                                               long long num_unique, int vec, float scaler) {
    const long long total = num_unique * vec;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long u = i / vec;
        const int e = (int)(i - u * vec);
        float acc = 0.0f;
        for (long long c = chunk_offsets[u], end = chunk_offsets[u + 1]; c < end; ++c) acc += partial[c * vec + e];
        g[i] = acc / scaler;
    }
}
