// Set-associative embedding cache of the inference path: set index, query, insert.
//
// References (hugectr_lab/inference/cache_ops.py): `embedding_cache_set_index`, `embedding_cache_query`,
// `embedding_cache_insert` -- same names and arguments, bit-identical results.
//
// Layouts: a table's cache holds C = num_sets * 64 entries, entry set*64 + way:
//          cache_keys (C,) Key, the empty key max(Key) marks a free entry; cache_stamps (C,) long long,
//          the lookup call that last touched the entry (0 = free); cache_values (C, E) float32.
//          Key = unsigned int (I32) | long long (I64). keys (N,) Key; values (N, E) float32.
//          Set of a key: MurmurHash3_x86_32 of its little-endian bytes (4 or 8), seed 0, mod num_sets.
// Launch mapping:
//   hctr_embedding_cache_set_index: one thread per key, grid-stride.
//   hctr_embedding_cache_query: one warp per key (grid-stride over warps, blocks of 256 threads);
//     lane l compares ways l and l+32, a ballot finds the hit (lowest way), lane 0 stamps it, and
//     the warp copies the E floats (zeros for a miss).
//   hctr_embedding_cache_insert: one block of 64 threads per touched set (grid-stride over sets);
//     the new keys arrive grouped by set (order: sorted by set, input order within a set;
//     group_offsets (G+1,), group_sets (G,)). Thread w ranks way w in victim order -- (stamp, way)
//     ascending, so free ways first, then least recently used -- and takes the group's new key of
//     that rank if there is one; the block then copies the vectors. A set takes at most 64 keys per
//     call; out_slots / out_evicted must be pre-filled with -1 / the empty key.
//
// The frequency-aware policy ("tinylfu"; references of the same names in cache_ops.py:
// `embedding_cache_sketch_update`, `embedding_cache_frequency`, `embedding_cache_insert_tinylfu`):
//   sketch (4, W) unsigned int, W a power of two; row d counts key k at column murmur3(k, seed d+1) & (W-1).
//   hctr_embedding_cache_sketch_halve: one thread per counter, grid-stride (aging: every counter >>= 1).
//   hctr_embedding_cache_sketch_update: one thread per (distinct) key, 4 atomicAdds.
//   hctr_embedding_cache_frequency: one thread per key, the minimum of its 4 counters.
//   hctr_embedding_cache_insert_tinylfu: as hctr_embedding_cache_insert (a 64-thread block per touched
//     set, keys grouped by set in input order), with each new key's estimate in freqs (N,). Thread w
//     ranks way w in victim order (free first, then estimate, stamp, way ascending); the group's keys
//     are ranked by (estimate descending, input order) into a shared table of the first 64; the key of
//     rank r goes to the way of rank r if that way is free or holds a key of strictly lower estimate.
#include "hctr_common.cuh"

#define HCTR_CACHE_WAYS 64

__device__ __forceinline__ unsigned int hctr_rotl32(unsigned int x, int r) { return (x << r) | (x >> (32 - r)); }

__device__ __forceinline__ unsigned int hctr_murmur3_block(unsigned int h, unsigned int k) {
    k *= 0xcc9e2d51u;
    k = hctr_rotl32(k, 15);
    k *= 0x1b873593u;
    h = hctr_rotl32(h ^ k, 13);
    return h * 5u + 0xe6546b64u;
}

__device__ __forceinline__ unsigned int hctr_murmur3_final(unsigned int h, unsigned int length) {
    h ^= length;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    return h ^ (h >> 16);
}

__device__ __forceinline__ unsigned int hctr_murmur3(unsigned int key, unsigned int seed = 0u) {
    return hctr_murmur3_final(hctr_murmur3_block(seed, key), 4u);
}

__device__ __forceinline__ unsigned int hctr_murmur3(long long key, unsigned int seed = 0u) {
    const unsigned long long u = (unsigned long long)key;
    const unsigned int h = hctr_murmur3_block(hctr_murmur3_block(seed, (unsigned int)(u & 0xffffffffull)),
                                              (unsigned int)(u >> 32));
    return hctr_murmur3_final(h, 8u);
}

template <typename Key>
__device__ __forceinline__ long long hctr_cache_set(Key key, long long num_sets) {
    return (long long)hctr_murmur3(key) % num_sets;
}

template <typename Key>
__global__ void hctr_embedding_cache_set_index(const Key* __restrict__ keys, long long num_keys, long long num_sets,
                                               long long* __restrict__ out) {
    for (long long k : hctr_grid_stride(num_keys)) {
        out[k] = hctr_cache_set(keys[k], num_sets);
    }
}

template <typename Key>
__global__ void hctr_embedding_cache_query(const Key* __restrict__ cache_keys, long long* __restrict__ cache_stamps,
                                           const float* __restrict__ cache_values, long long num_sets,
                                           const Key* __restrict__ keys, long long num_keys, int vec, long long now,
                                           float* __restrict__ out_values, long long* __restrict__ out_slots) {
    const int lane = threadIdx.x & 31;
    for (long long k : hctr_warp_stride(num_keys)) {
        const Key key = keys[k];
        const long long base = hctr_cache_set(key, num_sets) * HCTR_CACHE_WAYS;
        const bool real = key != hctr_empty_key<Key>();
        const unsigned int low = __ballot_sync(0xffffffffu, real && cache_keys[base + lane] == key);
        const unsigned int high = __ballot_sync(0xffffffffu, real && cache_keys[base + 32 + lane] == key);
        long long slot = -1;
        if (low) slot = base + __ffs(low) - 1;
        else if (high) slot = base + 32 + __ffs(high) - 1;
        if (lane == 0) {
            out_slots[k] = slot;
            if (slot >= 0) cache_stamps[slot] = now;
        }
        float* out = out_values + k * vec;
        if (slot >= 0) {
            const float* src = cache_values + slot * vec;
            for (int e = lane; e < vec; e += 32) out[e] = src[e];
        } else {
            for (int e = lane; e < vec; e += 32) out[e] = 0.0f;
        }
    }
}

template <typename Key>
__global__ void hctr_embedding_cache_insert(Key* __restrict__ cache_keys, long long* __restrict__ cache_stamps,
                                            float* __restrict__ cache_values, int vec, const Key* __restrict__ keys,
                                            const float* __restrict__ values, const long long* __restrict__ order,
                                            const long long* __restrict__ group_offsets,
                                            const long long* __restrict__ group_sets, long long num_groups,
                                            long long now, long long* __restrict__ out_slots,
                                            Key* __restrict__ out_evicted) {
    __shared__ long long stamps[HCTR_CACHE_WAYS];
    __shared__ long long source[HCTR_CACHE_WAYS];   // new key (input index) per way, -1 = way unchanged
    const int way = threadIdx.x;
    for (long long g : hctr_block_stride(num_groups)) {
        const long long base = group_sets[g] * HCTR_CACHE_WAYS;
        const long long mine = cache_stamps[base + way];
        stamps[way] = mine;
        __syncthreads();
        int rank = 0;
        for (int j = 0; j < HCTR_CACHE_WAYS; ++j) {
            const long long other = stamps[j];
            rank += (other < mine) || (other == mine && j < way);
        }
        const long long begin = group_offsets[g];
        const long long count = group_offsets[g + 1] - begin;
        long long i = -1;
        if (rank < count) {
            i = order[begin + rank];
            out_slots[i] = base + way;
            out_evicted[i] = cache_keys[base + way];
            cache_keys[base + way] = keys[i];
            cache_stamps[base + way] = now;
        }
        source[way] = i;
        __syncthreads();
        for (long long idx = way; idx < (long long)HCTR_CACHE_WAYS * vec; idx += HCTR_CACHE_WAYS) {
            const long long w = idx / vec, src = source[w];
            if (src >= 0) cache_values[(base + w) * vec + idx % vec] = values[src * vec + idx % vec];
        }
        __syncthreads();   // stamps/source are rewritten for the next set
    }
}

#define HCTR_SKETCH_DEPTH 4

template <typename Key>
__device__ __forceinline__ long long hctr_sketch_column(Key key, int d, long long width) {
    return (long long)(hctr_murmur3(key, (unsigned int)(d + 1)) & (unsigned int)(width - 1));
}

template <typename Key>
__device__ __forceinline__ unsigned int hctr_sketch_estimate(const unsigned int* __restrict__ sketch, long long width,
                                                             Key key) {
    unsigned int f = 0xffffffffu;
    for (int d = 0; d < HCTR_SKETCH_DEPTH; ++d) f = min(f, sketch[d * width + hctr_sketch_column(key, d, width)]);
    return f;
}

__global__ void hctr_embedding_cache_sketch_halve(unsigned int* __restrict__ sketch, long long size) {
    for (long long i : hctr_grid_stride(size))
        sketch[i] >>= 1;
}

template <typename Key>
__global__ void hctr_embedding_cache_sketch_update(unsigned int* __restrict__ sketch, long long width,
                                                   const Key* __restrict__ keys, long long num_keys) {
    for (long long k : hctr_grid_stride(num_keys)) {
        const Key key = keys[k];
        for (int d = 0; d < HCTR_SKETCH_DEPTH; ++d) atomicAdd(sketch + d * width + hctr_sketch_column(key, d, width), 1u);
    }
}

template <typename Key>
__global__ void hctr_embedding_cache_frequency(const unsigned int* __restrict__ sketch, long long width,
                                               const Key* __restrict__ keys, long long num_keys,
                                               unsigned int* __restrict__ out) {
    for (long long k : hctr_grid_stride(num_keys))
        out[k] = hctr_sketch_estimate(sketch, width, keys[k]);
}

template <typename Key>
__global__ void hctr_embedding_cache_insert_tinylfu(
        Key* __restrict__ cache_keys, long long* __restrict__ cache_stamps, float* __restrict__ cache_values, int vec,
        const unsigned int* __restrict__ sketch, long long width, const Key* __restrict__ keys,
        const unsigned int* __restrict__ freqs, const float* __restrict__ values, const long long* __restrict__ order,
        const long long* __restrict__ group_offsets, const long long* __restrict__ group_sets, long long num_groups,
        long long now, long long* __restrict__ out_slots, Key* __restrict__ out_evicted) {
    __shared__ long long stamps[HCTR_CACHE_WAYS];
    __shared__ long long wfreq[HCTR_CACHE_WAYS];      // estimate of each way's key, -1 = free
    __shared__ long long by_rank[HCTR_CACHE_WAYS];    // group position of the new key of each rank, -1 = none
    __shared__ long long source[HCTR_CACHE_WAYS];     // new key (input index) per way, -1 = way unchanged
    const int way = threadIdx.x;
    for (long long g : hctr_block_stride(num_groups)) {
        const long long base = group_sets[g] * HCTR_CACHE_WAYS;
        const Key held = cache_keys[base + way];
        const long long mine = cache_stamps[base + way];
        const long long myfreq = held == hctr_empty_key<Key>() ? -1 : (long long)hctr_sketch_estimate(sketch, width, held);
        stamps[way] = mine;
        wfreq[way] = myfreq;
        by_rank[way] = -1;
        __syncthreads();
        int rank = 0;
        for (int j = 0; j < HCTR_CACHE_WAYS; ++j) {
            const long long f = wfreq[j], s = stamps[j];
            rank += (f < myfreq) || (f == myfreq && (s < mine || (s == mine && j < way)));
        }
        const long long begin = group_offsets[g];
        const long long count = group_offsets[g + 1] - begin;
        for (long long p = way; p < count; p += HCTR_CACHE_WAYS) {
            const unsigned int fp = freqs[order[begin + p]];
            long long r = 0;
            for (long long q = 0; q < count && r < HCTR_CACHE_WAYS; ++q) {
                const unsigned int fq = freqs[order[begin + q]];
                r += (fq > fp) || (fq == fp && q < p);
            }
            if (r < HCTR_CACHE_WAYS) by_rank[r] = p;
        }
        __syncthreads();
        long long i = -1;
        const long long p = by_rank[rank];
        if (p >= 0 && myfreq < (long long)freqs[order[begin + p]]) {
            i = order[begin + p];
            out_slots[i] = base + way;
            out_evicted[i] = held;
            cache_keys[base + way] = keys[i];
            cache_stamps[base + way] = now;
        }
        source[way] = i;
        __syncthreads();
        for (long long idx = way; idx < (long long)HCTR_CACHE_WAYS * vec; idx += HCTR_CACHE_WAYS) {
            const long long w = idx / vec, src = source[w];
            if (src >= 0) cache_values[(base + w) * vec + idx % vec] = values[src * vec + idx % vec];
        }
        __syncthreads();
    }
}

// ---- The predict graph's lookup (hugectr_lab/inference/graph_path.py) ---------------------------------
//
// One captured CUDA graph per padded batch runs the cache lookup of every table without the host:
// the keys (K,) of a table, padded with the empty key, are de-duplicated into an open-addressing set
// (P,) (P a power of two >= 2K; which slot a key takes depends on thread order, nothing else does), a
// warp per distinct key queries the cache (a hit takes the call's stamp) or reads the parameter
// server's row (sorted keys on the device, binary search; vectors in pinned host memory read over
// the bus; unknown keys get the default value), and counts distinct keys, hits and unknown keys. If
// the first table's hit rate is below the threshold, the misses of each cache set are chained
// (link) and the set's first-chained miss inserts the set's best 64 by (estimate descending, key
// ascending) -- the order in which the eager path, which sees the misses sorted by key, inserts them --
// into the ways in victim order. Predictions, cache contents and counters equal the eager path's
// (EmbeddingCache.lookup on the same requests; tested in tests/inference/test_gpu.py).
// counters (5,) long long per table: distinct keys, hits, unknown keys, insertions, replaced entries.

template <typename Key>
__device__ __forceinline__ Key hctr_atomic_cas(Key* address, Key expected, Key desired);
template <>
__device__ __forceinline__ unsigned int hctr_atomic_cas<unsigned int>(unsigned int* address, unsigned int expected,
                                                                      unsigned int desired) {
    return atomicCAS(address, expected, desired);
}
template <>
__device__ __forceinline__ long long hctr_atomic_cas<long long>(long long* address, long long expected,
                                                                long long desired) {
    return (long long)atomicCAS((unsigned long long*)address, (unsigned long long)expected,
                                (unsigned long long)desired);
}

__device__ __forceinline__ bool hctr_infer_refresh(const long long* __restrict__ first_counters, double threshold) {
    const long long distinct = first_counters[0], hits = first_counters[1];
    const double rate = distinct ? 1.0 - (double)(distinct - hits) / (double)distinct : 1.0;
    return rate < threshold;
}

template <typename Key>
__global__ void hctr_infer_dedupe(const Key* __restrict__ keys, long long num_keys, Key* __restrict__ set_keys,
                                  long long set_size, long long* __restrict__ inverse) {
    for (long long k : hctr_grid_stride(num_keys)) {
        const Key key = keys[k];
        long long slot = 0;
        if (key != hctr_empty_key<Key>()) {
            slot = (long long)(hctr_murmur3(key, 0x9e3779b9u) & (unsigned int)(set_size - 1));
            for (;;) {
                const Key old = hctr_atomic_cas<Key>(set_keys + slot, hctr_empty_key<Key>(), key);
                if (old == hctr_empty_key<Key>() || old == key) break;
                slot = (slot + 1) & (set_size - 1);
            }
        }
        inverse[k] = slot;
    }
}

__global__ void hctr_infer_sketch_halve(unsigned int* __restrict__ sketch, long long size,
                                        const long long* __restrict__ flag) {
    if (*flag == 0) return;
    for (long long i : hctr_grid_stride(size))
        sketch[i] >>= 1;
}

template <typename Key>
__global__ void hctr_infer_lookup(const Key* __restrict__ set_keys, long long set_size, const Key* __restrict__ cache_keys,
                                  long long* __restrict__ cache_stamps, const float* __restrict__ cache_values,
                                  long long num_sets, const long long* __restrict__ now, const Key* __restrict__ ps_keys,
                                  long long ps_rows, const float* ps_vectors, float default_value,
                                  unsigned int* __restrict__ sketch, long long width, int vec,
                                  float* __restrict__ set_values, unsigned char* __restrict__ set_miss,
                                  long long* __restrict__ counters) {
    const int lane = threadIdx.x & 31;
    for (long long h : hctr_warp_stride(set_size)) {
        const Key key = set_keys[h];
        if (key == hctr_empty_key<Key>()) continue;   // the same for the whole warp
        long long slot = -1;
        if (num_sets > 0) {
            const long long base = hctr_cache_set(key, num_sets) * HCTR_CACHE_WAYS;
            const unsigned int low = __ballot_sync(0xffffffffu, cache_keys[base + lane] == key);
            const unsigned int high = __ballot_sync(0xffffffffu, cache_keys[base + 32 + lane] == key);
            if (low) slot = base + __ffs(low) - 1;
            else if (high) slot = base + 32 + __ffs(high) - 1;
        }
        float* out = set_values + h * vec;
        long long row = -1;
        if (slot >= 0) {
            const float* src = cache_values + slot * vec;
            for (int e = lane; e < vec; e += 32) out[e] = src[e];
        } else {
            if (lane == 0) {
                long long lo = 0, hi = ps_rows;   // first row with ps_keys[row] >= key
                while (lo < hi) {
                    const long long mid = (lo + hi) >> 1;
                    if (ps_keys[mid] < key) lo = mid + 1;
                    else hi = mid;
                }
                row = (lo < ps_rows && ps_keys[lo] == key) ? lo : -1;
            }
            row = __shfl_sync(0xffffffffu, row, 0);
            if (row >= 0) {
                const float* src = ps_vectors + row * vec;
                for (int e = lane; e < vec; e += 32) out[e] = src[e];
            } else {
                for (int e = lane; e < vec; e += 32) out[e] = default_value;
            }
        }
        if (lane == 0) {
            set_miss[h] = slot < 0;
            atomicAdd((unsigned long long*)counters, 1ull);
            if (slot >= 0) {
                cache_stamps[slot] = *now;
                atomicAdd((unsigned long long*)counters + 1, 1ull);
            } else if (row < 0) {
                atomicAdd((unsigned long long*)counters + 2, 1ull);
            }
            if (sketch != nullptr)
                for (int d = 0; d < HCTR_SKETCH_DEPTH; ++d) atomicAdd(sketch + d * width + hctr_sketch_column(key, d, width), 1u);
        }
    }
}

template <typename Key>
__global__ void hctr_infer_link(const Key* __restrict__ set_keys, const unsigned char* __restrict__ set_miss,
                                long long set_size, long long num_sets, const long long* __restrict__ first_counters,
                                double threshold, long long* __restrict__ heads, long long* __restrict__ next) {
    if (!hctr_infer_refresh(first_counters, threshold)) return;
    for (long long h : hctr_grid_stride(set_size)) {
        const Key key = set_keys[h];
        if (key == hctr_empty_key<Key>() || !set_miss[h]) continue;
        const long long s = hctr_cache_set(key, num_sets);
        next[h] = (long long)atomicExch((unsigned long long*)heads + s, (unsigned long long)h);
    }
}

template <typename Key>
__device__ __forceinline__ bool hctr_infer_before(long long fa, Key ka, long long fb, Key kb) {
    return fa > fb || (fa == fb && ka < kb);
}

template <typename Key>
__global__ void hctr_infer_insert(const Key* __restrict__ set_keys, const unsigned char* __restrict__ set_miss,
                                  const float* __restrict__ set_values, long long set_size,
                                  const long long* __restrict__ heads, const long long* __restrict__ next,
                                  const long long* __restrict__ first_counters, double threshold,
                                  Key* __restrict__ cache_keys, long long* __restrict__ cache_stamps,
                                  float* __restrict__ cache_values, long long num_sets, int vec,
                                  const unsigned int* __restrict__ sketch, long long width,
                                  const long long* __restrict__ now, long long* __restrict__ counters) {
    __shared__ long long stamps[HCTR_CACHE_WAYS], wfreq[HCTR_CACHE_WAYS];
    __shared__ long long cand[HCTR_CACHE_WAYS], cfreq[HCTR_CACHE_WAYS], source[HCTR_CACHE_WAYS];
    __shared__ int num_cand;
    if (!hctr_infer_refresh(first_counters, threshold)) return;
    const int way = threadIdx.x;
    for (long long h : hctr_block_stride(set_size)) {
        const Key key = set_keys[h];
        if (key == hctr_empty_key<Key>() || !set_miss[h]) continue;   // the same for the whole block
        const long long s = hctr_cache_set(key, num_sets);
        if (heads[s] != h) continue;
        if (way == 0) {   // the set's best 64 new keys, in insertion order
            int n = 0;
            for (long long c = h; c >= 0; c = next[c]) {
                const Key ck = set_keys[c];
                const long long f = sketch ? (long long)hctr_sketch_estimate(sketch, width, ck) : 0;
                if (n == HCTR_CACHE_WAYS && !hctr_infer_before(f, ck, cfreq[n - 1], set_keys[cand[n - 1]])) continue;
                int j = n < HCTR_CACHE_WAYS ? n : HCTR_CACHE_WAYS - 1;
                while (j > 0 && hctr_infer_before(f, ck, cfreq[j - 1], set_keys[cand[j - 1]])) {
                    cand[j] = cand[j - 1];
                    cfreq[j] = cfreq[j - 1];
                    --j;
                }
                cand[j] = c;
                cfreq[j] = f;
                if (n < HCTR_CACHE_WAYS) ++n;
            }
            num_cand = n;
        }
        const long long base = s * HCTR_CACHE_WAYS;
        const Key held = cache_keys[base + way];
        const long long mine = cache_stamps[base + way];
        const bool free_way = held == hctr_empty_key<Key>();
        const long long myfreq = free_way ? -1 : (sketch ? (long long)hctr_sketch_estimate(sketch, width, held) : 0);
        stamps[way] = mine;
        wfreq[way] = myfreq;
        __syncthreads();
        int rank = 0;
        for (int j = 0; j < HCTR_CACHE_WAYS; ++j) {
            const long long f = wfreq[j], st = stamps[j];
            rank += (f < myfreq) || (f == myfreq && (st < mine || (st == mine && j < way)));
        }
        long long src = -1;
        if (rank < num_cand && (sketch == nullptr || myfreq < cfreq[rank])) {
            src = cand[rank];
            cache_keys[base + way] = set_keys[src];
            cache_stamps[base + way] = *now;
            atomicAdd((unsigned long long*)counters + 3, 1ull);
            if (!free_way) atomicAdd((unsigned long long*)counters + 4, 1ull);
        }
        source[way] = src;
        __syncthreads();
        for (long long idx = way; idx < (long long)HCTR_CACHE_WAYS * vec; idx += HCTR_CACHE_WAYS) {
            const long long w = idx / vec, from = source[w];
            if (from >= 0) cache_values[(base + w) * vec + idx % vec] = set_values[from * vec + idx % vec];
        }
        __syncthreads();
    }
}
