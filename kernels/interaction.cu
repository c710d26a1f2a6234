// Interaction: DLRM's dot interaction of the bottom-MLP output with the F embedding vectors.
//
// References (hugectr_lab/layers/interaction.py): `interaction_fwd`, `interaction_bwd`.
//
// Layouts (row-major, T = float | hctr_half): mlp, d_mlp (m, w) T; emb, d_emb (m, F, w) T;
//   out, d_y (m, w + n(n-1)/2 + 1) T with n = F + 1 and Z = [mlp; emb] (n, w) per sample.
//   out = [mlp, <z_i, z_j> for i = 1..n-1, j = 0..i-1 (row-major lower triangle), 0 (padding)].
//   Backward: G (n, n) holds the pair gradients at (i, j) and (j, i) (S = G + G^T);
//   dZ = S Z; d_mlp = d_y[:, :w] + dZ[0]; d_emb = dZ[1:].
// Launch mapping: one block per sample (grid-stride over samples); the block size is a multiple of 32.
//   Z (n*w floats) and, backward, S (n*n floats) are staged in shared memory. Forward: one warp per
//   pair, lanes strided over e, a warp-shuffle sum. Backward: one thread per element (i, e) of dZ,
//   a sum over j (consecutive lanes read consecutive e). float32 accumulation.
#include "hctr_common.cuh"

template <typename T>
__device__ __forceinline__ void hctr_stage_z(const T* mlp, const T* emb, float* z, long long s, int fields, int w) {
    const int n = fields + 1;
    for (int i = threadIdx.x; i < n * w; i += blockDim.x)
        z[i] = i < w ? to_f32(mlp[s * w + i]) : to_f32(emb[s * fields * w + (i - w)]);
}

template <typename T>
__global__ void hctr_interaction_fwd(const T* __restrict__ mlp, const T* __restrict__ emb, T* __restrict__ out,
                                     long long m, int fields, int w) {
    extern __shared__ float z[];
    const int n = fields + 1, pairs = n * (n - 1) / 2, width = w + pairs + 1;
    for (long long s : hctr_block_stride(m)) {
        hctr_stage_z(mlp, emb, z, s, fields, w);
        __syncthreads();
        T* row = out + s * width;
        for (int i = threadIdx.x; i < w; i += blockDim.x) row[i] = mlp[s * w + i];
        // One warp per pair, lanes across e: conflict-free shared reads, then a warp sum.
        for (int p = threadIdx.x >> 5; p < pairs; p += blockDim.x >> 5) {
            // p -> (i, j) with p = i(i-1)/2 + j, 0 <= j < i
            int i = (int)((1.0f + sqrtf(1.0f + 8.0f * p)) * 0.5f);
            while (i * (i - 1) / 2 > p) --i;
            while ((i + 1) * i / 2 <= p) ++i;
            const int j = p - i * (i - 1) / 2;
            float dot = 0.0f;
            for (int e = threadIdx.x & 31; e < w; e += 32) dot += z[i * w + e] * z[j * w + e];
            dot = warp_sum(dot);
            if ((threadIdx.x & 31) == 0) row[w + p] = from_f32<T>(dot);
        }
        if (threadIdx.x == 0) row[width - 1] = from_f32<T>(0.0f);
        __syncthreads();
    }
}

template <typename T>
__global__ void hctr_interaction_bwd(const T* __restrict__ d_y, const T* __restrict__ mlp, const T* __restrict__ emb,
                                     T* __restrict__ d_mlp, T* __restrict__ d_emb, long long m, int fields, int w) {
    extern __shared__ float shared[];
    const int n = fields + 1, width = w + n * (n - 1) / 2 + 1;
    float* z = shared;
    float* sym = shared + n * w;  // (n, n)
    for (long long s : hctr_block_stride(m)) {
        hctr_stage_z(mlp, emb, z, s, fields, w);
        const T* dy = d_y + s * width;
        for (int q = threadIdx.x; q < n * n; q += blockDim.x) {
            const int i = q / n, j = q - i * n;
            const int hi = i > j ? i : j, lo = i > j ? j : i;
            sym[q] = i == j ? 0.0f : to_f32(dy[w + hi * (hi - 1) / 2 + lo]);
        }
        __syncthreads();
        for (int q = threadIdx.x; q < n * w; q += blockDim.x) {
            const int i = q / w, e = q - i * w;
            float dz = 0.0f;
            for (int j = 0; j < n; ++j) dz += sym[i * n + j] * z[j * w + e];
            if (i == 0) d_mlp[s * w + e] = from_f32<T>(to_f32(dy[e]) + dz);
            else d_emb[s * fields * w + (i - 1) * w + e] = from_f32<T>(dz);
        }
        __syncthreads();
    }
}
