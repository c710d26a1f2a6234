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

__device__ __forceinline__ unsigned int hctr_murmur3(unsigned int key) {
    return hctr_murmur3_final(hctr_murmur3_block(0u, key), 4u);
}

__device__ __forceinline__ unsigned int hctr_murmur3(long long key) {
    const unsigned long long u = (unsigned long long)key;
    const unsigned int h = hctr_murmur3_block(hctr_murmur3_block(0u, (unsigned int)(u & 0xffffffffull)),
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
