// Interaction: DLRM's dot interaction of the bottom-MLP output with the F embedding vectors.
// Two ways, chosen by the wrapper (hugectr_lab/backend/cuda/layer_ops.py):
// * float16 with n = F + 1 <= 32, w % 16 == 0, w <= 256 (DLRM: n = 27, w = 128), mlp and emb 16-byte aligned,
//   unless HUGECTR_LAB_INTERACTION_MMA=0: one fused tensor-core kernel each way, hctr_interaction_fwd_mma
//   and hctr_interaction_bwd_mma; Z and the products stay in shared memory.
// * every other case (float32, n > 32, other w): cuBLAS batched GEMMs for the products (operands in
//   interaction_gemms.py) and the pack / stack / unpack kernels that move the data around them.
//
// References (hugectr_lab/layers/interaction.py): `interaction_fwd`, `interaction_bwd`.
//
// Layouts (row-major, T = float | hctr_half; n = F + 1 rows z_0 = mlp, z_i = emb row i-1; P = n(n-1)/2
//   pairs, pair (i, j), i > j, at p = i(i-1)/2 + j; ld >= n the row stride of the scratch arrays):
//   mlp, d_mlp (m, w) T; emb, d_emb (m, F, w) T; out, d_y (m, w + P + 1) T.
//   out = [mlp, <z_i, z_j> for i = 1..n-1, j = 0..i-1 (row-major lower triangle), 0 (padding)].
//   GEMM path:
//   dots (m, F, ld) T, from the GEMMs: dots[s, i-1, j-1] = <z_i, z_j> (j >= 1), dots[s, i-1, F] = <z_i, z_0>.
//   z (m, n, w) T: the embedding rows, then mlp (the GEMM's operand [emb; mlp]).
//   sym (m, F, ld) T: row i-1 of S = G + G^T (i = 1..n-1) with its columns in z's row order (S[i, j]
//   at column j-1, S[i, 0] at column F); G[i, j] = d_y[w + p(i, j)] for i > j, S's diagonal 0.
//   Columns of dots and sym past F are never written nor read.
//   Tensor-core path, per warp in dynamic shared memory (R = 16 if n <= 16 else 32 rows, zero past n;
//   every tile 32-byte aligned, row strides padded so that 8 consecutive rows hit distinct banks):
//   Z (R, w + 8) half = [mlp_s; emb_s] (rows in the reference's order, z_0 = mlp);
//   forward: gram (R, R + 4) float = Z Z^T, only its tiles on or below the diagonal;
//   backward: S (R, R + 8) half = G + G^T (copies of d_y, exact), dZ (R, 36) float = 32 columns of S Z.
//   The wrapper sizes the shared memory from these same formulas (layer_ops._mma_launch).
// Forward (GEMM path): two batched GEMMs fill dots; hctr_interaction_pack writes out from mlp and dots.
// Backward (GEMM path): hctr_interaction_stack writes z and d_mlp = d_y[:, :w] + sum_i S[0, i] z_i (the
//   MLP row of dZ = S Z); hctr_interaction_unpack writes sym; one batched GEMM d_emb = sym z gives dZ's
//   other rows.
// Launch mapping: GEMM path kernels: a sample per (block, threadIdx.y), strided over the grid; its x
//   threads stride over the sample's elements: pack over its out row (w + P + 1), unpack over its sym
//   rows (F x n), stack over e < w, each thread walking its column down the F embedding rows (a warp
//   reads consecutive elements of one row) and summing d_mlp in float32 in row order.
//   Tensor-core kernels: a sample per warp (1-4 warps a block, as many as fit 48 KB), strided over the
//   grid's warps; the warp stages Z with 16-byte loads (8 in flight per lane), multiplies with the wmma
//   PTX instructions (m16n16k16, f16 operands, f32 accumulation), stores the f32 tiles to shared memory
//   and writes its output row(s) from there, each element rounded to half once.
#include "hctr_common.cuh"

template <typename T>
__global__ void hctr_interaction_pack(const T* __restrict__ mlp, const T* __restrict__ dots, T* __restrict__ out,
                                      long long m, int fields, int w, int ld) {
    const int n = fields + 1, width = w + n * (n - 1) / 2 + 1;
    for (long long s : hctr_row_stride(m)) {
        const T* sample_dots = dots + s * fields * ld;
        T* row = out + s * width;
        for (int c = threadIdx.x; c < width; c += blockDim.x) {
            if (c < w) {
                row[c] = mlp[s * w + c];
            } else if (c == width - 1) {
                row[c] = from_f32<T>(0.0f);
            } else {
                // p -> (i, j) with p = i(i-1)/2 + j, 0 <= j < i
                const int p = c - w;
                int i = (int)((1.0f + sqrtf(1.0f + 8.0f * p)) * 0.5f);
                while (i * (i - 1) / 2 > p) --i;
                while ((i + 1) * i / 2 <= p) ++i;
                const int j = p - i * (i - 1) / 2;
                row[c] = sample_dots[(i - 1) * ld + (j == 0 ? fields : j - 1)];
            }
        }
    }
}

template <typename T>
__global__ void hctr_interaction_stack(const T* __restrict__ d_y, const T* __restrict__ mlp,
                                       const T* __restrict__ emb, T* __restrict__ z, T* __restrict__ d_mlp,
                                       long long m, int fields, int w) {
    const int n = fields + 1, width = w + n * (n - 1) / 2 + 1;
    for (long long s : hctr_row_stride(m)) {
        const T* dy = d_y + s * width;
        const T* rows = emb + s * fields * w;
        T* zs = z + s * n * w;
        for (int e = threadIdx.x; e < w; e += blockDim.x) {
            float dz = 0.0f;
            for (int i = 0; i < fields; ++i) {
                const T x = rows[i * w + e];
                zs[i * w + e] = x;
                dz += to_f32(dy[w + (i + 1) * i / 2]) * to_f32(x);   // S[0, i+1] = G[i+1, 0], pair p(i+1, 0)
            }
            zs[fields * w + e] = mlp[s * w + e];
            d_mlp[s * w + e] = from_f32<T>(to_f32(dy[e]) + dz);
        }
    }
}

template <typename T>
__global__ void hctr_interaction_unpack(const T* __restrict__ d_y, T* __restrict__ sym, long long m, int fields,
                                        int w, int ld) {
    const int n = fields + 1, width = w + n * (n - 1) / 2 + 1;
    for (long long s : hctr_row_stride(m)) {
        const T* pairs = d_y + s * width + w;
        T* rows = sym + s * fields * ld;
        for (int q = threadIdx.x; q < fields * n; q += blockDim.x) {
            const int r = q / n, col = q - r * n, i = r + 1;   // S's row i, column col
            const int j = col < fields ? col + 1 : 0;          // z's row order: the embedding rows, then mlp
            const int hi = i > j ? i : j, lo = i > j ? j : i;
            rows[r * ld + col] = i == j ? from_f32<T>(0.0f) : pairs[hi * (hi - 1) / 2 + lo];
        }
    }
}

// ---- Tensor-core path (float16, n <= 32, w % 16 == 0, w <= 256) ------------------------------------
// The products go through the wmma PTX instructions on operands in shared memory: they load and store
// whole 16 x 16 tiles with an explicit stride and hide the per-lane fragment layout, which the code
// never needs to know (it only moves whole fragments between wmma instructions).
//
// Determinism: every output element is written by one lane from one accumulator fragment that runs
// through the same wmma.mma sequence (k-steps in increasing order; in the backward the S column tiles
// in increasing order), on the same staged values, whatever warp, block or grid size handles the
// sample. There are no atomics and no reductions across warps, so eager calls, reruns and CUDA-graph
// replays give the same bits. (The tensor cores' internal accumulation order differs from cuBLAS's
// and from NumPy's, so the two paths agree within float16 rounding of float32 sums, not bit for bit.)

namespace hctr_mma {

constexpr int kBatch = 8;        // 16-byte loads a lane issues before storing them to shared memory
constexpr int kColTiles = 2;     // backward: 16-column tiles of dZ per round (32 columns, 64 B per row)
constexpr int kDzStride = 16 * kColTiles + 4;

struct Frag {                    // an f16 A or B fragment: 8 x f16x2 registers per lane
    unsigned x[8];
};
struct Acc {                     // an f32 accumulator fragment: 8 x f32 registers per lane
    float x[8];
};

// The shared-window address of a generic pointer into shared memory (what the .shared forms take).
__device__ __forceinline__ unsigned smem_addr(const void* p) {
    unsigned a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}

// A 16 x 16 tile at p (shared), row stride ld halves: load_a_row A[i][k] = p[i*ld + k]; load_b_col
// B[k][j] = p[j*ld + k] (B = Z^T, read from Z's rows); load_b_row B[k][j] = p[k*ld + j].
#define HCTR_WMMA_LOAD(NAME, OPERAND, LAYOUT)                                                             \
    __device__ __forceinline__ void NAME(Frag& f, const hctr_half* p, int ld) {                           \
        asm volatile("wmma.load." OPERAND ".sync.aligned." LAYOUT ".m16n16k16.shared.f16 "               \
                     "{%0, %1, %2, %3, %4, %5, %6, %7}, [%8], %9;"                                        \
                     : "=r"(f.x[0]), "=r"(f.x[1]), "=r"(f.x[2]), "=r"(f.x[3]), "=r"(f.x[4]), "=r"(f.x[5]),   \
                       "=r"(f.x[6]), "=r"(f.x[7])                                                          \
                     : "r"(smem_addr(p)), "r"(ld)                                                          \
                     : "memory");                                                                          \
    }
HCTR_WMMA_LOAD(load_a_row, "a", "row")
HCTR_WMMA_LOAD(load_b_col, "b", "col")
HCTR_WMMA_LOAD(load_b_row, "b", "row")
#undef HCTR_WMMA_LOAD

// acc += A B (f16 x f16 products, f32 accumulation); LAYOUTS names A's then B's layout.
#define HCTR_WMMA_MMA(NAME, LAYOUTS)                                                                      \
    __device__ __forceinline__ void NAME(Acc& c, const Frag& a, const Frag& b) {                          \
        asm volatile("wmma.mma.sync.aligned." LAYOUTS ".m16n16k16.f32.f32 "                               \
                     "{%0, %1, %2, %3, %4, %5, %6, %7}, "                                                  \
                     "{%8, %9, %10, %11, %12, %13, %14, %15}, "                                            \
                     "{%16, %17, %18, %19, %20, %21, %22, %23}, "                                          \
                     "{%0, %1, %2, %3, %4, %5, %6, %7};"                                                   \
                     : "+f"(c.x[0]), "+f"(c.x[1]), "+f"(c.x[2]), "+f"(c.x[3]), "+f"(c.x[4]), "+f"(c.x[5]),   \
                       "+f"(c.x[6]), "+f"(c.x[7])                                                          \
                     : "r"(a.x[0]), "r"(a.x[1]), "r"(a.x[2]), "r"(a.x[3]), "r"(a.x[4]), "r"(a.x[5]),       \
                       "r"(a.x[6]), "r"(a.x[7]), "r"(b.x[0]), "r"(b.x[1]), "r"(b.x[2]), "r"(b.x[3]),       \
                       "r"(b.x[4]), "r"(b.x[5]), "r"(b.x[6]), "r"(b.x[7]));                                \
    }
HCTR_WMMA_MMA(mma_row_col, "row.col")
HCTR_WMMA_MMA(mma_row_row, "row.row")
#undef HCTR_WMMA_MMA

// D[i][j] -> p[i*ld + j] (shared, ld floats).
__device__ __forceinline__ void store_row(float* p, const Acc& c, int ld) {
    asm volatile("wmma.store.d.sync.aligned.row.m16n16k16.shared.f32 [%0], {%1, %2, %3, %4, %5, %6, %7, %8}, %9;"
                 :
                 : "r"(smem_addr(p)), "f"(c.x[0]), "f"(c.x[1]), "f"(c.x[2]), "f"(c.x[3]), "f"(c.x[4]),
                   "f"(c.x[5]), "f"(c.x[6]), "f"(c.x[7]), "r"(ld)
                 : "memory");
}

// The dynamic shared memory of the block; each warp takes its own slice (header: layouts).
extern __shared__ __align__(128) unsigned char block_smem[];

__device__ __forceinline__ int padded_rows(int n) { return n <= 16 ? 16 : 32; }

// Zero `count` 4-byte words at p (the warp's lanes side by side).
__device__ __forceinline__ void zero_words(void* p, int count) {
    for (int q = threadIdx.x & 31; q < count; q += 32) static_cast<unsigned*>(p)[q] = 0u;
}

// z (rows of ld halves) <- [mlp_s; emb_s]: n rows of w, in 16-byte pieces read along the sample's
// contiguous bytes (coalesced), kBatch loads per lane in flight before their stores.
__device__ __forceinline__ void stage_z(hctr_half* z, int ld, const hctr_half* __restrict__ mlp,
                                        const hctr_half* __restrict__ emb, long long s, int fields, int w) {
    const int per_row = w / 8, pieces = (fields + 1) * per_row;
    const uint4* mlp_s = reinterpret_cast<const uint4*>(mlp + s * w);
    const uint4* emb_s = reinterpret_cast<const uint4*>(emb + s * fields * w);   // row r of Z is emb row r-1
    for (int first = threadIdx.x & 31; first < pieces; first += 32 * kBatch) {
        uint4 v[kBatch];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            const int q = first + 32 * u;
            v[u] = q >= pieces ? uint4{0u, 0u, 0u, 0u} : q < per_row ? mlp_s[q] : emb_s[q - per_row];
        }
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            const int q = first + 32 * u, r = q / per_row;
            if (q < pieces) reinterpret_cast<uint4*>(z + r * ld)[q - r * per_row] = v[u];
        }
    }
}

// A pair p = i(i-1)/2 + j (0 <= j < i) of the lower triangle, walked forward `step` pairs at a time.
struct Pair {
    int i = 1, j = 0;   // p = 0
    __device__ __forceinline__ void advance(int step) {
        for (j += step; j >= i; ++i) j -= i;
    }
};

__device__ __forceinline__ unsigned pack2(float lo, float hi) {
    return from_f32<hctr_half>(lo).bits | (unsigned)from_f32<hctr_half>(hi).bits << 16;
}

}  // namespace hctr_mma

// out (m, w + P + 1) from mlp (m, w) and emb (m, F, w): per warp, Z -> gram = Z Z^T (f32) -> the row.
__global__ void __launch_bounds__(128) hctr_interaction_fwd_mma(const hctr_half* __restrict__ mlp,
                                                                const hctr_half* __restrict__ emb,
                                                                hctr_half* __restrict__ out, long long m, int fields,
                                                                int w) {
    using namespace hctr_mma;
    const int n = fields + 1, rows = padded_rows(n), ldz = w + 8, ldg = rows + 4, pairs = n * (n - 1) / 2;
    const int width = w + pairs + 1, lane = threadIdx.x & 31, zbytes = rows * ldz * 2;
    unsigned char* mine = block_smem + (threadIdx.x >> 5) * (zbytes + rows * ldg * 4);
    hctr_half* z = reinterpret_cast<hctr_half*>(mine);
    float* gram = reinterpret_cast<float*>(mine + zbytes);
    zero_words(z + n * ldz, (rows - n) * ldz / 2);   // the padding rows, never staged
    for (long long s : hctr_warp_stride(m)) {
        stage_z(z, ldz, mlp, emb, s, fields, w);
        __syncwarp();   // (also orders the zeroing before the first wmma load)
        // tiles (0, 0), (1, 0), (1, 1) of Z Z^T: all that holds pairs i > j (the last two only for n > 16)
        Acc acc[3] = {};
        for (int k = 0; k < w; k += 16) {
            Frag a0, b0;
            load_a_row(a0, z + k, ldz);
            load_b_col(b0, z + k, ldz);
            mma_row_col(acc[0], a0, b0);
            if (rows == 32) {
                Frag a1, b1;
                load_a_row(a1, z + 16 * ldz + k, ldz);
                mma_row_col(acc[1], a1, b0);
                load_b_col(b1, z + 16 * ldz + k, ldz);
                mma_row_col(acc[2], a1, b1);
            }
        }
        store_row(gram, acc[0], ldg);
        if (rows == 32) {
            store_row(gram + 16 * ldg, acc[1], ldg);
            store_row(gram + 16 * ldg + 16, acc[2], ldg);
        }
        __syncwarp();
        hctr_half* row = out + s * width;
        for (int c = lane; c < w; c += 32) row[c] = z[c];   // mlp, from Z's row 0
        Pair at;
        at.advance(lane);
        for (int p = lane; p < pairs; p += 32, at.advance(32))
            row[w + p] = from_f32<hctr_half>(gram[at.i * ldg + at.j]);
        if (lane == 0) row[width - 1] = from_f32<hctr_half>(0.0f);
        __syncwarp();   // z and gram are rewritten for the next sample
    }
}

// d_mlp (m, w), d_emb (m, F, w) from d_y (m, w + P + 1), mlp, emb: per warp, S and Z -> dZ = S Z (f32,
// kColTiles column tiles at a time) -> d_emb = dZ's rows 1..n-1, d_mlp = d_y[:, :w] + dZ's row 0.
__global__ void __launch_bounds__(128) hctr_interaction_bwd_mma(const hctr_half* __restrict__ d_y,
                                                                const hctr_half* __restrict__ mlp,
                                                                const hctr_half* __restrict__ emb,
                                                                hctr_half* __restrict__ d_mlp,
                                                                hctr_half* __restrict__ d_emb, long long m,
                                                                int fields, int w) {
    using namespace hctr_mma;
    const int n = fields + 1, rows = padded_rows(n), tiles = rows / 16, lds = rows + 8, ldz = w + 8;
    const int pairs = n * (n - 1) / 2, width = w + pairs + 1, lane = threadIdx.x & 31;
    const int sbytes = rows * lds * 2, zbytes = rows * ldz * 2;
    unsigned char* mine = block_smem + (threadIdx.x >> 5) * (sbytes + zbytes + rows * kDzStride * 4);
    hctr_half* sym = reinterpret_cast<hctr_half*>(mine);
    hctr_half* z = reinterpret_cast<hctr_half*>(mine + sbytes);
    float* dz = reinterpret_cast<float*>(mine + sbytes + zbytes);
    zero_words(sym, rows * lds / 2);                 // the diagonal and the padding stay 0
    zero_words(z + n * ldz, (rows - n) * ldz / 2);   // the padding rows, never staged
    __syncwarp();                                    // other lanes write S's pairs next
    for (long long s : hctr_warp_stride(m)) {
        const hctr_half* dy = d_y + s * width;
        stage_z(z, ldz, mlp, emb, s, fields, w);
        Pair at;
        at.advance(lane);
        for (int p = lane; p < pairs; p += 32, at.advance(32)) {   // S[i, j] = S[j, i] = G[i, j]
            const hctr_half g = dy[w + p];
            sym[at.i * lds + at.j] = g;
            sym[at.j * lds + at.i] = g;
        }
        __syncwarp();
        // The loops over tiles run to 2 with a guard (tiles is 1 or 2, warp-uniform), so that the fragment
        // arrays are indexed by constants and stay in registers.
        Frag a[2][2];   // S's tiles (r, kk), r, kk < tiles
#pragma unroll
        for (int r = 0; r < 2; ++r)
#pragma unroll
            for (int kk = 0; kk < 2; ++kk)
                if (r < tiles && kk < tiles) load_a_row(a[r][kk], sym + 16 * r * lds + 16 * kk, lds);
        for (int c0 = 0; c0 < w; c0 += 16 * kColTiles) {
            const int cols = w - c0 < 16 * kColTiles ? w - c0 : 16 * kColTiles, chunks = cols / 8;
#pragma unroll
            for (int t = 0; t < kColTiles; ++t) {
                if (16 * t >= cols) break;
                Frag b[2];   // Z's tiles (kk, column tile)
#pragma unroll
                for (int kk = 0; kk < 2; ++kk)
                    if (kk < tiles) load_b_row(b[kk], z + 16 * kk * ldz + c0 + 16 * t, ldz);
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    if (r >= tiles) break;
                    Acc acc = {};
#pragma unroll
                    for (int kk = 0; kk < 2; ++kk)
                        if (kk < tiles) mma_row_row(acc, a[r][kk], b[kk]);
                    store_row(dz + 16 * r * kDzStride + 16 * t, acc, kDzStride);
                }
            }
            __syncwarp();
            for (int q = lane; q < n * chunks; q += 32) {
                const int r = q / chunks, e = c0 + 8 * (q - r * chunks);
                const float* v = dz + r * kDzStride + (e - c0);
                float x[8];
#pragma unroll
                for (int k = 0; k < 8; ++k) x[k] = r == 0 ? to_f32(dy[e + k]) + v[k] : v[k];   // d_mlp adds d_y
                hctr_half* dst = r == 0 ? d_mlp + s * w + e : d_emb + (s * fields + r - 1) * w + e;
                *reinterpret_cast<uint4*>(dst) = uint4{pack2(x[0], x[1]), pack2(x[2], x[3]), pack2(x[4], x[5]),
                                                       pack2(x[6], x[7])};
            }
            __syncwarp();   // dz is rewritten by the next round
        }
        // S, Z and dz are rewritten for the next sample only after the last round's __syncwarp
    }
}
