// Interaction: DLRM's dot interaction of the bottom-MLP output with the F embedding vectors. The
// products are cuBLAS batched GEMMs launched by the wrapper (hugectr_lab/backend/cuda/layer_ops.py,
// operands in interaction_gemms.py); the kernels here move the data around them.
//
// References (hugectr_lab/layers/interaction.py): `interaction_fwd`, `interaction_bwd`.
//
// Layouts (row-major, T = float | hctr_half; n = F + 1 rows z_0 = mlp, z_i = emb row i-1; P = n(n-1)/2
//   pairs, pair (i, j), i > j, at p = i(i-1)/2 + j; ld >= n the row stride of the scratch arrays):
//   mlp, d_mlp (m, w) T; emb, d_emb (m, F, w) T; out, d_y (m, w + P + 1) T.
//   out = [mlp, <z_i, z_j> for i = 1..n-1, j = 0..i-1 (row-major lower triangle), 0 (padding)].
//   dots (m, F, ld) T, from the GEMMs: dots[s, i-1, j-1] = <z_i, z_j> (j >= 1), dots[s, i-1, F] = <z_i, z_0>.
//   z (m, n, w) T: the embedding rows, then mlp (the GEMM's operand [emb; mlp]).
//   sym (m, F, ld) T: row i-1 of S = G + G^T (i = 1..n-1) with its columns in z's row order (S[i, j]
//   at column j-1, S[i, 0] at column F); G[i, j] = d_y[w + p(i, j)] for i > j, S's diagonal 0.
//   Columns of dots and sym past F are never written nor read.
// Forward: two batched GEMMs fill dots; hctr_interaction_pack writes out from mlp and dots.
// Backward: hctr_interaction_stack writes z and d_mlp = d_y[:, :w] + sum_i S[0, i] z_i (the MLP row of
//   dZ = S Z); hctr_interaction_unpack writes sym; one batched GEMM d_emb = sym z gives dZ's other rows.
// Launch mapping: a sample per (block, threadIdx.y), strided over the grid; its x threads stride over
//   the sample's elements: pack over its out row (w + P + 1), unpack over its sym rows (F x n), stack
//   over e < w, each thread walking its column down the F embedding rows (a warp reads consecutive
//   elements of one row) and summing d_mlp in float32 in row order.
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
