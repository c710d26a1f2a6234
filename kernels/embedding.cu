// Embedding gather + combine (forward), per-key gradient reduction (backward), row scatter.
//
// References (hugectr_lab/embedding/combine.py): `embedding_combine_fwd`, `embedding_reduce_grad`,
// `scatter_rows`, `csr_row_ids`; the sort and the first pass of the reduction also serve
// `sparse_reduce_update` (hugectr_lab/embedding/sparse_optimizers.py), whose second pass runs inside
// the update kernel (sparse_update.cu).
//
// Layouts (row-major, E = embedding_vec_size):
//   values      (V, E) float32       the device's table
//   rows        (K,)   int64         table row of each key occurrence, -1 = no row (zero vector); keys
//                                    past row_offsets[R] (a padded key buffer's tail) are not read
//   row_offsets (R+1,) int64         CSR over R (sample, slot) rows
//   row_scale   (R,)   float32       mean multipliers, or nullptr for sum
//   out         (R, E) T             T = float | hctr_half (the compute dtype)
//   wgrad       (R, E) T             top gradient per CSR row
//   occ_offsets (U+1,) int64, occ (K,) int64: the occurrences of distinct key u, in input order
//                                    (occurrences without a row, inverse -1, sort after occ_offsets[U]);
//                                    occ comes from a stable LSD radix sort of the group (inverse, -1 -> U)
//   radix:      keys_in/out, vals_in/out (K,) int64; hist, offsets (256 * T,) int64 digit-major over T
//               tiles of `tile` consecutive items (offsets = exclusive prefix sums of hist)
//   chunk_offsets (U+1,) int64, partial (C_max, E) float32: per-chunk sums (chunks of <= `chunk`
//                                    occurrences); the chunk count C = chunk_offsets[U] <= C_max = K is
//                                    read on the device, so no size crosses to the host
//   g           (U, E) float32       U = the fixed size of the distinct-key view (zero rows where unused)
//   scatter:    dst (V, W) T, rows (N,) int64 (-1 = padding), src (N, W) T; T = float | hctr_half | long long
//   row_ids     (K,)   int64         CSR row of each key; keys past row_offsets[R] (padding) get R
//
// Launch mapping: combine<T, VW>: block (X, Y), a group of X = min(32, next power of 2 >= E/VW) lanes
// per tile of 4 consecutive rows, Y = 256 / X groups, grid-stride over tiles; lane l reads the
// VW-float pieces l, l + X, ... of the table rows (VW = 4, 2, 1: the widest that divides E; 16-byte
// loads for E % 4 == 0) and writes VW outputs at once. Reduce: a radix pass is one warp (block of 32)
// per tile: a shared-memory digit histogram, then the tile's items in order, 32 at a time, each placed
// at its digit's running offset plus its rank among the lanes holding the same digit
// (__match_any_sync), so the sort is stable and deterministic; then one thread per element (chunk, e)
// over K*E (chunks past C exit), then per (u, e). Scatter: one thread per element of src. Row ids: one
// thread per CSR row writes its keys' ids (O(K) in all, where a binary search per key is O(K log R));
// items past R cover the padding keys.
// Combine sums a row's keys in CSR order and the reduction a key's occurrences in input order (chunk
// by chunk), in float32: add.at's order up to the chunk split, so results equal the reference up to
// rounding. A one-hot batch is the same combine kernel with one key per row.
#include "hctr_common.cuh"

// A lane group (blockDim.x lanes, one per VW-float piece of a row, looping when E / VW is larger) takes
// HCTR_COMBINE_ROWS consecutive CSR rows at a time. Their offsets, then their keys' table rows, then
// the table pieces are loaded side by side (key position i of every row of the tile at once), so a
// lane has that many independent loads in flight instead of one at the end of a dependent chain.
// Beside the offsets it loads rows[r] for each row r of the tile: the row of row r's key when key r
// belongs to row r (one key per row: offsets 0, 1, 2, ...), so a one-hot batch waits for two loads,
// not three, before its table reads. Each row adds its keys in CSR order starting from 0 and then
// takes the mean scale: the same float32 operations, in the same order, for every piece width.
// Blocks are 256 threads (the wrapper's); the bounds keep 4 of them per SM (at most 64 registers:
// without them ptxas takes 70 and fits 3).
constexpr int HCTR_COMBINE_ROWS = 4;

template <typename T, int VW>
__global__ void __launch_bounds__(256, 4) hctr_embedding_combine_fwd(const float* __restrict__ values, const long long* __restrict__ rows,
                                           const long long* __restrict__ row_offsets,
                                           const float* __restrict__ row_scale, T* __restrict__ out,
                                           long long num_rows, long long num_keys, int vec) {
    constexpr int N = HCTR_COMBINE_ROWS;
    const int pieces = vec / VW;
    for (long long t : hctr_row_stride((num_rows + N - 1) / N)) {
        const long long r0 = t * N;
        long long offset[N + 1], own[N];   // own[j] = rows[r0 + j], the table row of key r0 + j
        float scale[N];
#pragma unroll
        for (int j = 0; j <= N; ++j) offset[j] = row_offsets[r0 + j < num_rows ? r0 + j : num_rows];
#pragma unroll
        for (int j = 0; j < N; ++j) own[j] = r0 + j < num_keys ? rows[r0 + j] : -1;
#pragma unroll
        for (int j = 0; j < N; ++j) scale[j] = row_scale != nullptr && r0 + j < num_rows ? row_scale[r0 + j] : 1.0f;
        long long longest = 0;
#pragma unroll
        for (int j = 0; j < N; ++j) longest = offset[j + 1] - offset[j] > longest ? offset[j + 1] - offset[j] : longest;
        for (int p = threadIdx.x; p < pieces; p += blockDim.x) {
            float acc[N][VW];
#pragma unroll
            for (int j = 0; j < N; ++j)
#pragma unroll
                for (int w = 0; w < VW; ++w) acc[j][w] = 0.0f;
            for (long long i = 0; i < longest; ++i) {
                long long row[N];
#pragma unroll
                for (int j = 0; j < N; ++j) {
                    const long long k = offset[j] + i;
                    row[j] = k >= offset[j + 1] ? -1 : k == r0 + j ? own[j] : rows[k];
                }
                float x[N][VW];
#pragma unroll
                for (int j = 0; j < N; ++j) {
#pragma unroll
                    for (int w = 0; w < VW; ++w) x[j][w] = 0.0f;
                    if (row[j] >= 0) hctr_load_vec<float, VW>(values, row[j] * pieces + p, x[j]);
                }
#pragma unroll
                for (int j = 0; j < N; ++j)
                    if (row[j] >= 0)
#pragma unroll
                        for (int w = 0; w < VW; ++w) acc[j][w] += x[j][w];
            }
#pragma unroll
            for (int j = 0; j < N; ++j) {
                if (r0 + j >= num_rows) break;
                if (row_scale != nullptr)
#pragma unroll
                    for (int w = 0; w < VW; ++w) acc[j][w] *= scale[j];
                hctr_store_vec<T, VW>(out, (r0 + j) * pieces + p, acc[j]);
            }
        }
    }
}

// Stable LSD radix sort of the occurrences by group, 8 bits a pass (the wrapper runs the passes the
// largest group needs). A block is one warp and owns whole tiles; a lane loads HCTR_RADIX_BATCH rounds of
// its items before it uses their digits, so a warp waits for one load latency per batch of rounds, not per
// round (a tile's rounds are still handled in order: the same result). Pass histogram: hist[d * T + t] =
// items of tile t whose digit is d.
#define HCTR_RADIX_BATCH 8

__global__ void hctr_radix_hist(const long long* __restrict__ keys, long long n, int shift, long long tile,
                                long long num_tiles, long long* __restrict__ hist) {
    __shared__ int counts[256];
    for (long long t : hctr_block_stride(num_tiles)) {
        for (int d = threadIdx.x; d < 256; d += blockDim.x) counts[d] = 0;
        __syncthreads();
        const long long start = t * tile, end = start + tile < n ? start + tile : n;
        for (long long base = start + threadIdx.x; base < end; base += HCTR_RADIX_BATCH * blockDim.x) {
            long long key[HCTR_RADIX_BATCH];
#pragma unroll
            for (int j = 0; j < HCTR_RADIX_BATCH; ++j) {
                const long long i = base + j * blockDim.x;
                key[j] = i < end ? keys[i] : 0;
            }
#pragma unroll
            for (int j = 0; j < HCTR_RADIX_BATCH; ++j)
                if (base + j * blockDim.x < end) atomicAdd(&counts[(key[j] >> shift) & 255], 1);
        }
        __syncthreads();
        for (int d = threadIdx.x; d < 256; d += blockDim.x) hist[d * num_tiles + t] = counts[d];
        __syncthreads();
    }
}

// Pass scatter (block = one warp): tile t's items go, in order, to offsets[d * T + t] onwards. vals_in
// nullptr = the item's own index (the first pass).
__global__ void hctr_radix_scatter(const long long* __restrict__ keys_in, const long long* __restrict__ vals_in,
                                   long long n, int shift, long long tile, long long num_tiles,
                                   const long long* __restrict__ offsets, long long* __restrict__ keys_out,
                                   long long* __restrict__ vals_out) {
    __shared__ long long running[256];
    const int lane = threadIdx.x;
    const unsigned lanes_below = (1u << lane) - 1u;
    for (long long t : hctr_block_stride(num_tiles)) {
        for (int d = lane; d < 256; d += 32) running[d] = offsets[d * num_tiles + t];
        __syncwarp();
        const long long start = t * tile, end = start + tile < n ? start + tile : n;
        for (long long base = start; base < end; base += HCTR_RADIX_BATCH * 32) {
            long long key[HCTR_RADIX_BATCH], val[HCTR_RADIX_BATCH];
#pragma unroll
            for (int j = 0; j < HCTR_RADIX_BATCH; ++j) {
                const long long i = base + j * 32 + lane;
                key[j] = i < end ? keys_in[i] : 0;
                val[j] = i < end && vals_in != nullptr ? vals_in[i] : i;
            }
#pragma unroll
            for (int j = 0; j < HCTR_RADIX_BATCH; ++j) {
                const bool valid = base + j * 32 + lane < end;
                const unsigned active = __ballot_sync(0xFFFFFFFFu, valid);
                if (active == 0u) break;   // the tile's last round was j - 1 (the same for every lane)
                if (valid) {
                    const int d = (int)((key[j] >> shift) & 255);
                    const unsigned peers = __match_any_sync(active, d);
                    const int rank = __popc(peers & lanes_below);
                    const long long dst = running[d] + rank;
                    keys_out[dst] = key[j];
                    vals_out[dst] = val[j];
                    __syncwarp(active);   // every lane has read running[d] before its group's first lane moves it
                    if (rank == 0) running[d] += __popc(peers);
                }
                __syncwarp();
            }
        }
        __syncwarp();
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
                                                  int vec, int chunk) {
    const long long total = chunk_offsets[num_unique] * vec;   // C * E; the grid covers C_max * E
    for (long long i : hctr_grid_stride(total)) {
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

// Pass 2: g[u] = (sum of key u's chunk sums, in order) / scaler. (`sparse_reduce_update` runs this
// pass inside the update kernel instead: sparse_update.cu.)
__global__ void hctr_embedding_reduce_grad_bwd(const float* __restrict__ partial,
                                               const long long* __restrict__ chunk_offsets, float* __restrict__ g,
                                               long long num_unique, int vec, float scaler) {
    const long long total = num_unique * vec;
    for (long long i : hctr_grid_stride(total)) {
        const long long u = i / vec;
        g[i] = hctr_chunk_sum(partial, chunk_offsets, u, (int)(i - u * vec), vec, scaler);
    }
}

// dst[rows[i]] = src[i] for the rows that are not padding (-1); valid rows are distinct.
template <typename T>
__global__ void hctr_scatter_rows(T* __restrict__ dst, const long long* __restrict__ rows, const T* __restrict__ src,
                                  long long num_rows, long long width) {
    const long long total = num_rows * width;
    for (long long i : hctr_grid_stride(total)) {
        const long long r = i / width;
        const long long row = rows[r];
        if (row >= 0) dst[row * width + (i - r * width)] = src[i];
    }
}

// CSR row of every key occurrence. Item i < R writes row i's keys; item i < K at or past
// row_offsets[R] is a padding key and gets R (the reference's searchsorted gives R there).
__global__ void hctr_csr_row_ids(const long long* __restrict__ row_offsets, long long num_rows,
                                 long long* __restrict__ row_ids, long long num_keys) {
    const long long end_of_rows = row_offsets[num_rows];
    for (long long i : hctr_grid_stride(num_rows > num_keys ? num_rows : num_keys)) {
        if (i < num_rows) {
            const long long stop = row_offsets[i + 1] < num_keys ? row_offsets[i + 1] : num_keys;
            for (long long k = row_offsets[i]; k < stop; ++k) row_ids[k] = i;
        }
        if (i < num_keys && i >= end_of_rows) row_ids[i] = num_rows;
    }
}
