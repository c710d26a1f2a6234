// Hash table lookup: the row of each key in a device's sorted key index.
//
// Reference (hugectr_lab/embedding/hash_table.py): `hash_table_lookup`.
//
// Layouts: index_keys (N,) Key ascending, distinct; index_rows (N,) int64; keys (K,) Key;
//          out (K,) int64 = index_rows[i] where index_keys[i] == keys[k], else -1.
//          Key = unsigned int (I32) | long long (I64).
// Launch mapping: one thread per key, grid-stride; a lower-bound binary search of ceil(log2 N)
// steps. Adjacent threads look up sorted distinct keys (the table looks up `unique` keys), so
// their searches walk the same index entries and hit in cache.
#include "hctr_common.cuh"

template <typename Key>
__global__ void hctr_hash_table_lookup(const Key* __restrict__ index_keys, const long long* __restrict__ index_rows,
                                       long long num_index, const Key* __restrict__ keys, long long* __restrict__ out,
                                       long long num_keys) {
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < num_keys;
         k += (long long)gridDim.x * blockDim.x) {
        const Key key = keys[k];
        long long lo = 0, hi = num_index;
        while (lo < hi) {
            const long long mid = (lo + hi) >> 1;
            if (index_keys[mid] < key) lo = mid + 1;
            else hi = mid;
        }
        out[k] = (lo < num_index && index_keys[lo] == key) ? index_rows[lo] : -1;
    }
}
