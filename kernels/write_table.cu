// Many small writes and copies in one launch: the per-step numbers (Dropout seeds, the optimizers' rates and
// step counts, the iteration) and the batch copies that a replayed training step needs before its graph
// launch. Each used to be a launch of its own, ~5-10 µs of host time apiece, all before the GPU could start
// the step. The numbers travel in the launch's argument itself (kernel arguments are copied at launch):
// nothing is staged in host memory, nothing waits, and each value is the one of the moment of the call.
//
// Reference: `write_table` (hugectr_lab/backend/backends.py); wrapper: hugectr_lab/backend/cuda/writes.py,
// which packs the table (``Backend.writes_together`` holds a step's writes and copies for one launch).
//
// Layouts: one hctr_write_table_args by value (400 bytes of kernel arguments). Write e (e < writes) puts
// its bytes (at most 32; the lengths are byte e of `lengths`) at dst[e]; the writes' bytes lie back to back
// in `bytes`, little-endian. Copy c (c < copies) moves size_of[c] bytes from src_of[c] to dst_of[c]; any
// alignment, distinct memory.
// Launch mapping: block 0's first warps a warp per write, a lane per byte; every thread of the grid strides
// over each copy in turn, 16 bytes a load where both ends are 16-byte aligned (the tail and unaligned
// copies byte by byte). Plain copies: bit-exact.
#include "hctr_common.cuh"

#define HCTR_MAX_WRITES 8
#define HCTR_WRITE_WORDS 16   // 128 bytes of written values
#define HCTR_MAX_COPIES 8

struct hctr_write_table_args {
    unsigned long long counts;                      // writes | copies << 8
    unsigned long long lengths;                     // byte count of write e in bits 8e .. 8e + 7
    unsigned long long dst[HCTR_MAX_WRITES];
    unsigned long long bytes[HCTR_WRITE_WORDS];
    unsigned long long src_of[HCTR_MAX_COPIES];
    unsigned long long dst_of[HCTR_MAX_COPIES];
    unsigned long long size_of[HCTR_MAX_COPIES];
};
static_assert(sizeof(hctr_write_table_args) == 400, "the wrapper packs 50 words");

__global__ void hctr_write_table(const hctr_write_table_args t) {
    const int writes = (int)(t.counts & 0xff), copies = (int)((t.counts >> 8) & 0xff);
    if (blockIdx.x == 0 && threadIdx.x < 32 * writes) {
        const int e = threadIdx.x / 32, i = threadIdx.x % 32;
        int start = 0;
        for (int f = 0; f < e; ++f) start += (int)((t.lengths >> (8 * f)) & 0xff);
        if (i < (int)((t.lengths >> (8 * e)) & 0xff))
            reinterpret_cast<unsigned char*>(t.dst[e])[i] = reinterpret_cast<const unsigned char*>(t.bytes)[start + i];
    }
    for (int c = 0; c < copies; ++c) {
        const unsigned char* src = reinterpret_cast<const unsigned char*>(t.src_of[c]);
        unsigned char* dst = reinterpret_cast<unsigned char*>(t.dst_of[c]);
        const long long n = (long long)t.size_of[c];
        long long done = 0;
        if (((t.src_of[c] | t.dst_of[c]) & 15) == 0) {
            done = n / 16 * 16;
            for (long long k : hctr_grid_stride(n / 16))
                reinterpret_cast<uint4*>(dst)[k] = reinterpret_cast<const uint4*>(src)[k];
        }
        for (long long k : hctr_grid_stride(n - done)) dst[done + k] = src[done + k];
    }
}
