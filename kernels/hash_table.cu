// Open-addressing GPU hash table: key -> row of a device's embedding table, with insertion.
//
// References (hugectr_lab/embedding/hash_table.py): `hash_table_lookup`, `hash_table_lookup_insert`.
//
// Layouts: Key = unsigned int (I32) | long long (I64); EMPTY = the key type's maximum (`sentinel_key`),
//          which also marks a padding key (row -1, never inserted, never counted).
//   slot_keys (C,) Key, slot_rows (C,) int64: the table; EMPTY = free slot; row -1 = a remembered
//                refused key. Linear probing from hctr_home(key) (splitmix64 of the key's 64 bits,
//                uint32 zero-extended, scaled to [0, C) as ((h >> 32) * C) >> 32; C < 2^32).
//   counters (3,) int64: keys held, keys refused, refused keys remembered (<= room).
//   keys (K,) Key; every per-key output (K,) int64.
//   scratch_keys (M,) Key = EMPTY, scratch_first (M,) int64 = INT64_MAX (M = 2K + 64): a per-batch
//                set of the batch's distinct keys with the first occurrence of each (atomicMin).
//   rows0 (K,): table row, -1 (padding / remembered refused) or MISSING (-2: not in the table).
//   first (K,): first occurrence of the occurrence's key (-1 for padding); new_incl, first_incl (K,):
//                inclusive prefix sums (CuPy cumsum) of the 0/1 flags is_new (first occurrence of a
//                key not in the table) and is_first (first occurrence of a key with a row).
//
// Launch mapping: one thread per key occurrence (grid-stride) in every kernel:
//   lookup  -- probe only (evaluation);
//   probe   -- rows0 from the table, and claim the key in the scratch set (atomicCAS) + atomicMin of k;
//   first   -- first[k], is_new[k];                                  -- cumsum(is_new) --
//   insert  -- per new key: row = count + rank (< capacity) or refused; atomicCAS into a free slot;
//   resolve -- rows[k] (a new key's later occurrences take its first occurrence's row), is_first[k];
//              thread 0 advances the counters;                       -- cumsum(is_first) --
//   unique  -- inverse[k] and unique_rows (rows of distinct keys, by first occurrence, then -1).
// Nothing is read back on the host: counts and ranks stay in device memory. Probes are bounded by C.
#include "hctr_common.cuh"

#define HCTR_MISSING (-2LL)

__device__ __forceinline__ unsigned int hctr_cas(unsigned int* address, unsigned int compare, unsigned int value) {
    return atomicCAS(address, compare, value);
}

__device__ __forceinline__ long long hctr_cas(long long* address, long long compare, long long value) {
    return (long long)atomicCAS((unsigned long long*)address, (unsigned long long)compare, (unsigned long long)value);
}

// Home slot of `key` in a table of `n` slots (hash_slot in the reference).
template <typename Key>
__device__ __forceinline__ long long hctr_home(Key key, long long n) {
    unsigned long long x = (unsigned long long)(long long)key;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    x = x ^ (x >> 31);
    return (long long)(((x >> 32) * (unsigned long long)n) >> 32);
}

// Row stored for `key` (>= 0, or -1 for a remembered refused key), or HCTR_MISSING.
template <typename Key>
__device__ __forceinline__ long long hctr_find(const Key* slot_keys, const long long* slot_rows, long long n, Key key) {
    long long p = hctr_home(key, n);
    for (long long probe = 0; probe < n; ++probe) {
        const Key found = slot_keys[p];
        if (found == key) return slot_rows[p];
        if (found == hctr_empty_key<Key>()) return HCTR_MISSING;
        if (++p == n) p = 0;
    }
    return HCTR_MISSING;
}

template <typename Key>
__global__ void hctr_hash_table_lookup(const Key* __restrict__ slot_keys, const long long* __restrict__ slot_rows,
                                       long long num_slots, const Key* __restrict__ keys, long long* __restrict__ out,
                                       long long num_keys) {
    for (long long k : hctr_grid_stride(num_keys)) {
        const Key key = keys[k];
        long long row = -1;
        if (key != hctr_empty_key<Key>()) {
            row = hctr_find(slot_keys, slot_rows, num_slots, key);
            if (row == HCTR_MISSING) row = -1;
        }
        out[k] = row;
    }
}

template <typename Key>
__global__ void hctr_hash_table_probe(const Key* __restrict__ slot_keys, const long long* __restrict__ slot_rows,
                                      long long num_slots, const Key* __restrict__ keys, long long num_keys,
                                      Key* __restrict__ scratch_keys, long long* __restrict__ scratch_first,
                                      long long num_scratch, long long* __restrict__ rows0,
                                      long long* __restrict__ scratch_slot) {
    for (long long k : hctr_grid_stride(num_keys)) {
        const Key key = keys[k];
        if (key == hctr_empty_key<Key>()) {
            rows0[k] = -1;
            scratch_slot[k] = -1;
            continue;
        }
        rows0[k] = hctr_find(slot_keys, slot_rows, num_slots, key);
        long long p = hctr_home(key, num_scratch), slot = -1;
        for (long long probe = 0; probe < num_scratch; ++probe) {   // M > K: a free slot always exists
            const Key old = hctr_cas(scratch_keys + p, hctr_empty_key<Key>(), key);
            if (old == hctr_empty_key<Key>() || old == key) {
                slot = p;
                break;
            }
            if (++p == num_scratch) p = 0;
        }
        if (slot >= 0) atomicMin(scratch_first + slot, k);
        scratch_slot[k] = slot;
    }
}

__global__ void hctr_hash_table_first(const long long* __restrict__ scratch_first,
                                      const long long* __restrict__ scratch_slot, const long long* __restrict__ rows0,
                                      long long num_keys, long long* __restrict__ first, long long* __restrict__ is_new) {
    for (long long k : hctr_grid_stride(num_keys)) {
        const long long slot = scratch_slot[k];
        const long long f = slot < 0 ? -1 : scratch_first[slot];
        first[k] = f;
        is_new[k] = (f == k && rows0[k] == HCTR_MISSING) ? 1 : 0;
    }
}

template <typename Key>
__global__ void hctr_hash_table_insert(Key* __restrict__ slot_keys, long long* __restrict__ slot_rows, long long num_slots,
                                       const Key* __restrict__ keys, long long num_keys,
                                       const long long* __restrict__ is_new, const long long* __restrict__ new_incl,
                                       const long long* __restrict__ counters, long long capacity, long long room,
                                       long long* __restrict__ rows0, long long* __restrict__ new_rows) {
    const long long size = counters[0], remembered = counters[2];
    for (long long k : hctr_grid_stride(num_keys)) {
        if (!is_new[k]) {
            new_rows[k] = -1;
            continue;
        }
        const long long row = size + new_incl[k] - 1;   // count + rank among the batch's new keys
        const bool accepted = row < capacity;
        const long long stored = accepted ? row : -1;
        if (accepted || remembered + (row - capacity) < room) {
            const Key key = keys[k];   // distinct and absent: it takes the first free slot of its probe
            long long p = hctr_home(key, num_slots);
            for (long long probe = 0; probe < num_slots; ++probe) {
                if (hctr_cas(slot_keys + p, hctr_empty_key<Key>(), key) == hctr_empty_key<Key>()) {
                    slot_rows[p] = stored;
                    break;
                }
                if (++p == num_slots) p = 0;
            }
        }
        rows0[k] = stored;
        new_rows[k] = stored;
    }
}

__global__ void hctr_hash_table_resolve(const long long* __restrict__ rows0, const long long* __restrict__ first,
                                        long long num_keys, const long long* __restrict__ new_incl,
                                        long long* __restrict__ counters, long long capacity, long long room,
                                        long long* __restrict__ rows, long long* __restrict__ is_first) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {   // the insert kernel has read the counters; nothing else here does
        const long long fresh = new_incl[num_keys - 1], size = counters[0];
        const long long free_rows = capacity > size ? capacity - size : 0;
        const long long accepted = fresh < free_rows ? fresh : free_rows, refused = fresh - accepted;
        counters[0] = size + accepted;
        counters[1] += refused;
        counters[2] = counters[2] + refused < room ? counters[2] + refused : room;
    }
    for (long long k : hctr_grid_stride(num_keys)) {
        const long long r0 = rows0[k], f = first[k];
        const long long row = r0 == HCTR_MISSING ? rows0[f] : r0;
        rows[k] = row;
        is_first[k] = (row >= 0 && f == k) ? 1 : 0;
    }
}

__global__ void hctr_hash_table_unique(const long long* __restrict__ rows, const long long* __restrict__ first,
                                       const long long* __restrict__ first_incl, long long num_keys,
                                       long long* __restrict__ inverse, long long* __restrict__ unique_rows) {
    for (long long k : hctr_grid_stride(num_keys)) {
        const long long row = rows[k], f = first[k];
        inverse[k] = row >= 0 ? first_incl[f] - 1 : -1;
        if (row >= 0 && f == k) unique_rows[first_incl[k] - 1] = row;
    }
}
