// Set-associative embedding cache of the inference path: set index, query, insert, the frequency
// sketch, and the cache lookup of the captured predict graph.
//
// References: hugectr_lab/inference/cache_ops.py -- `embedding_cache_set_index`, `embedding_cache_query`,
// `embedding_cache_insert`, `embedding_cache_insert_tinylfu`, `embedding_cache_sketch_update`,
// `embedding_cache_frequency`; hugectr_lab/inference/graph_ops.py -- `infer_begin`, `infer_dedupe`,
// `infer_lookup`, `infer_insert` (the predict graph's operations, the last section of this file). The wrappers
// (hugectr_lab/inference/cuda_cache.py) take the references' names and arguments, and the results are
// bit-identical, except where infer_dedupe puts a key in its set (graph_ops.py says what is fixed).
//
// Layouts: a table's cache holds C = num_sets * 64 entries, entry set*64 + way:
//          cache_keys (C,) Key, the empty key max(Key) marks a free entry; cache_stamps (C,) long long,
//          the lookup call that last touched the entry (0 = free); cache_values (C, E) float32.
//          Key = unsigned int (I32) | long long (I64). keys (N,) Key; values (N, E) float32.
//          Set of a key: MurmurHash3_x86_32 of its little-endian bytes (4 or 8), seed 0, mod num_sets.
//          sketch (4, W) unsigned int, W a power of two: row d counts key k at column
//          murmur3(k, seed d+1) & (W-1); a key's estimate is the minimum of its 4 counters.
// Launch mapping:
//   hctr_embedding_cache_set_index: one thread per key, grid-stride.
//   hctr_embedding_cache_query: one warp per key (grid-stride over warps, blocks of 256 threads);
//     lane l compares ways l and l+32, a ballot finds the hit (lowest way), lane 0 stamps it, and
//     the warp copies the E floats (zeros for a miss).
//   hctr_embedding_cache_insert<Key, Policy>: one block of 64 threads per touched set (grid-stride over
//     sets); the new keys arrive grouped by set (order: sorted by set, input order within a set;
//     group_offsets (G+1,), group_sets (G,)), with each key's estimate in freqs (N,) (null for Lru).
//     Thread w ranks way w in victim order, (policy estimate, stamp, way) ascending; the group's keys
//     are ranked (Lru: input order; TinyLfu: estimate descending, then input order) and the key of
//     rank r takes the way of rank r if the policy admits it there. A set takes at most 64 keys per
//     call; out_slots / out_evicted must be pre-filled with -1 / the empty key.
//     Policies (namespace hctr): Lru (HugeCTR's; `embedding_cache_insert`) -- every way's estimate is
//     0, so victims go by (stamp, way): free entries (stamp 0) first, then least recently used, and
//     every new key is admitted; TinyLfu (`embedding_cache_insert_tinylfu`) -- a free way's estimate is
//     -1, a held key's its sketch estimate, and a new key enters only over a strictly lower estimate.
//   hctr_embedding_cache_sketch_halve: one thread per counter, grid-stride (aging: every counter >>= 1;
//     with a flag pointer only when *flag != 0, a decision the predict graph reads from device memory).
//   hctr_embedding_cache_sketch_update: one thread per (distinct) key, 4 atomicAdds.
//   hctr_embedding_cache_frequency: one thread per key, the minimum of its 4 counters.
//   The predict graph's kernels (hctr_infer_*): see the last section.
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

__global__ void hctr_embedding_cache_sketch_halve(unsigned int* __restrict__ sketch, long long size,
                                                  const long long* __restrict__ flag) {
    if (flag != nullptr && *flag == 0) return;
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

// ---- Insertion: one kernel per policy, shared with the predict graph's insert ------------------------

namespace hctr {

// `held`: a way's estimate in the victim order (lowest goes first); `admits`: whether a new key of
// estimate `incoming` may replace a way whose estimate is `held`; `counts`: new keys carry estimates.
struct Lru {
    static constexpr bool counts = false;
    template <typename Key>
    __device__ static long long held(const unsigned int*, long long, Key) { return 0; }
    __device__ static bool admits(long long, long long) { return true; }
};

struct TinyLfu {
    static constexpr bool counts = true;
    template <typename Key>
    __device__ static long long held(const unsigned int* sketch, long long width, Key key) {
        return key == hctr_empty_key<Key>() ? -1 : (long long)hctr_sketch_estimate(sketch, width, key);
    }
    __device__ static bool admits(long long held, long long incoming) { return held < incoming; }
};

}  // namespace hctr

// Rank of `way` in victim order, (estimate, stamp, way) ascending, over one set's ways in shared memory.
__device__ __forceinline__ int hctr_cache_victim_rank(const long long* wfreq, const long long* stamps, int way) {
    const long long f = wfreq[way], s = stamps[way];
    int rank = 0;
    for (int j = 0; j < HCTR_CACHE_WAYS; ++j)
        rank += (wfreq[j] < f) || (wfreq[j] == f && (stamps[j] < s || (stamps[j] == s && j < way)));
    return rank;
}

// The 64 threads of a block copy the new vectors of one set: source[w] is the row of `values` that way
// w took, -1 = way unchanged.
__device__ __forceinline__ void hctr_cache_copy_rows(float* __restrict__ cache_values, long long base, int vec,
                                                     const float* __restrict__ values, const long long* source,
                                                     int way) {
    for (long long idx = way; idx < (long long)HCTR_CACHE_WAYS * vec; idx += HCTR_CACHE_WAYS) {
        const long long w = idx / vec, src = source[w];
        if (src >= 0) cache_values[(base + w) * vec + idx % vec] = values[src * vec + idx % vec];
    }
}

template <typename Key, typename Policy>
__global__ void hctr_embedding_cache_insert(Key* __restrict__ cache_keys, long long* __restrict__ cache_stamps,
                                            float* __restrict__ cache_values, int vec,
                                            const unsigned int* __restrict__ sketch, long long width,
                                            const Key* __restrict__ keys, const unsigned int* __restrict__ freqs,
                                            const float* __restrict__ values, const long long* __restrict__ order,
                                            const long long* __restrict__ group_offsets,
                                            const long long* __restrict__ group_sets, long long num_groups,
                                            long long now, long long* __restrict__ out_slots,
                                            Key* __restrict__ out_evicted) {
    __shared__ long long stamps[HCTR_CACHE_WAYS];
    __shared__ long long wfreq[HCTR_CACHE_WAYS];      // the policy's estimate of each way
    __shared__ long long by_rank[HCTR_CACHE_WAYS];    // group position of the new key of each rank, -1 = none
    __shared__ long long source[HCTR_CACHE_WAYS];     // new key (input index) per way, -1 = way unchanged
    const int way = threadIdx.x;
    for (long long g : hctr_block_stride(num_groups)) {
        const long long base = group_sets[g] * HCTR_CACHE_WAYS;
        const long long begin = group_offsets[g];
        const long long count = group_offsets[g + 1] - begin;
        const Key held = cache_keys[base + way];
        const long long myfreq = Policy::held(sketch, width, held);
        stamps[way] = cache_stamps[base + way];
        wfreq[way] = myfreq;
        by_rank[way] = (Policy::counts || way >= count) ? -1 : way;
        __syncthreads();
        if constexpr (Policy::counts) {   // the first 64 by (estimate descending, input order)
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
        }
        const long long p = by_rank[hctr_cache_victim_rank(wfreq, stamps, way)];
        long long i = -1;
        if (p >= 0 && Policy::admits(myfreq, Policy::counts ? (long long)freqs[order[begin + p]] : 0)) {
            i = order[begin + p];
            out_slots[i] = base + way;
            out_evicted[i] = held;
            cache_keys[base + way] = keys[i];
            cache_stamps[base + way] = now;
        }
        source[way] = i;
        __syncthreads();
        hctr_cache_copy_rows(cache_values, base, vec, values, source, way);
        __syncthreads();   // the shared tables are rewritten for the next set
    }
}

// ---- The predict graph's lookup (references: hugectr_lab/inference/graph_ops.py) ------------------------
//
// One captured CUDA graph per padded batch runs the cache lookup of every table without the host;
// every per-call value (the stamp `now`, the sketch's halving flag, the counters) is in device memory.
//   infer_begin -- hctr_infer_begin<Key>: one thread per row offset, set entry, key and dense value,
//     grid-stride; empties the set for infer_dedupe, rejects a call whose offsets leave [0, k] or descend,
//     whose first header[table][2] keys hold the empty key, or (given dense) whose dense features hold a
//     NaN or an infinity (flag rejected, every table's halving flag cleared), and clamps the offsets into
//     [0, k].
//   infer_dedupe -- hctr_infer_dedupe<Key>: one thread per key, grid-stride (none taken once rejected
//     is set). The keys (K,) of a table, padded with the empty key, go into an open-addressing set (P,)
//     (P a power of two >= 2K, all empty before: infer_begin; linear probing from
//     murmur3(key, 0x9e3779b9) & (P-1), atomicCAS); inverse (K,) is each key's entry (-1 for padding).
//     Which entry a key takes depends on thread order.
//   infer_lookup -- hctr_embedding_cache_sketch_halve (flag = header[1]), then hctr_infer_lookup<Key>:
//     one warp per set entry (grid-stride over warps, blocks of 256); a distinct key queries the cache
//     as hctr_embedding_cache_query does (a hit takes the stamp header[0]), else lane 0 probes the
//     parameter server's index (index_keys / index_rows (Q,), Q a power of two: the open-addressing
//     table infer_dedupe builds, from murmur3(key, 0x9e3779b9) & (Q-1) to the key or a free entry) and
//     the warp copies the row of ps_vectors (R, E) -- in device memory or page-locked host memory read
//     over the bus -- or the default value for an unknown key; lane 0 counts the key in the sketch and
//     in counters (5,): [0] distinct keys, [1] hits, [2] unknown keys. set_values (P, E) and set_miss (P,)
//     are written for real keys only.
//   infer_insert -- when the first table's hit rate (first_counters) is below the threshold:
//     hctr_infer_link<Key> (one thread per set entry) chains each set's misses (heads (num_sets,),
//     next (P,); chain order depends on thread order), then hctr_infer_insert<Key, Policy> (a block of
//     64 threads per set entry; the block of the set's chain head works, and sets the head back to -1:
//     heads is all -1 between calls, filled once by its owner, not by every call): thread 0 keeps the set's
//     best 64 misses by (estimate descending, key ascending) -- the order in which the eager path,
//     which sees the misses sorted by key, inserts them -- and they meet the ways in victim order as
//     in hctr_embedding_cache_insert<Key, Policy>; counters [3] insertions, [4] replaced entries.

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

// A thread per offset but the last, per set entry, per key and per dense value. An offset outside [0, k]
// (k = offsets[size - 2]) or above the next one, a real key that is the empty key, a dense value that is not
// finite reject the call. An offset outside is clamped by its own thread, so a neighbour that reads it
// mid-clamp may miss the descent -- and the call is rejected by that thread anyway; every writer writes the
// same values. The key count (header column 2) is never written here.
template <typename Key>
__global__ void hctr_infer_begin(long long* __restrict__ offsets, long long size, const Key* __restrict__ keys,
                                 const float* __restrict__ dense, long long dense_size, long long* __restrict__ header,
                                 long long tables, long long header_width, long long table,
                                 long long* __restrict__ rejected, Key* __restrict__ set_keys, long long set_size) {
    const long long k = offsets[size - 2], num_keys = header[table * header_width + 2];
    long long n = size - 1 > set_size ? size - 1 : set_size;
    n = n > num_keys ? n : num_keys;
    n = n > dense_size ? n : dense_size;
    for (long long i : hctr_grid_stride(n)) {
        if (i < set_size) set_keys[i] = hctr_empty_key<Key>();
        bool bad = (i < num_keys && keys[i] == hctr_empty_key<Key>()) || (i < dense_size && hctr_bad(dense[i]));
        if (i < size - 1) {
            const long long v = offsets[i];
            const bool outside = v < 0 || v > k;
            bad |= outside || (i + 2 < size && offsets[i + 1] < v);
            if (outside) offsets[i] = v < 0 ? 0 : k;
        }
        if (bad) {
            *rejected = 1;
            for (long long t = 0; t < tables; ++t) header[t * header_width + 1] = 0;
        }
    }
}

template <typename Key>
__global__ void hctr_infer_dedupe(const Key* __restrict__ keys, long long num_keys, Key* __restrict__ set_keys,
                                  long long set_size, long long* __restrict__ inverse,
                                  const long long* __restrict__ rejected) {
    const bool take = rejected == nullptr || *rejected == 0;
    for (long long k : hctr_grid_stride(num_keys)) {
        const Key key = keys[k];
        long long slot = -1;
        if (take && key != hctr_empty_key<Key>()) {
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

template <typename Key>
__global__ void hctr_infer_lookup(const Key* __restrict__ set_keys, long long set_size, const Key* __restrict__ cache_keys,
                                  long long* __restrict__ cache_stamps, const float* __restrict__ cache_values,
                                  long long num_sets, const long long* __restrict__ now,
                                  const Key* __restrict__ index_keys, const int* __restrict__ index_rows,
                                  long long index_size, const float* ps_vectors, float default_value,
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
            if (lane == 0) {   // the index is at most half full: a free entry ends every probe
                for (long long e = hctr_murmur3(key, 0x9e3779b9u) & (unsigned int)(index_size - 1);;
                     e = (e + 1) & (index_size - 1)) {
                    const Key held = index_keys[e];
                    if (held == key) row = index_rows[e];
                    if (held == key || held == hctr_empty_key<Key>()) break;
                }
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

template <typename Key, typename Policy>
__global__ void hctr_infer_insert(const Key* __restrict__ set_keys, const unsigned char* __restrict__ set_miss,
                                  const float* __restrict__ set_values, long long set_size,
                                  long long* __restrict__ heads, const long long* __restrict__ next,
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
                const long long f = Policy::counts ? (long long)hctr_sketch_estimate(sketch, width, ck) : 0;
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
        const long long myfreq = Policy::held(sketch, width, held);
        stamps[way] = cache_stamps[base + way];
        wfreq[way] = myfreq;
        __syncthreads();
        const int rank = hctr_cache_victim_rank(wfreq, stamps, way);
        long long src = -1;
        if (rank < num_cand && Policy::admits(myfreq, cfreq[rank])) {
            src = cand[rank];
            cache_keys[base + way] = set_keys[src];
            cache_stamps[base + way] = *now;
            atomicAdd((unsigned long long*)counters + 3, 1ull);
            if (held != hctr_empty_key<Key>()) atomicAdd((unsigned long long*)counters + 4, 1ull);
        }
        source[way] = src;
        __syncthreads();
        hctr_cache_copy_rows(cache_values, base, vec, set_values, source, way);
        // every thread read heads[s] above; a block of a later entry of this chain reads -1 or h: not its own
        if (way == 0) heads[s] = -1;
        __syncthreads();
    }
}
