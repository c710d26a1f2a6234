// MultiCross (the DCN cross network, L layers over x0 (m, D)): forward and backward.
//
// References (hugectr_lab/layers/multi_cross.py): `multicross_fwd`, `multicross_bwd`.
//
// Layouts (row-major, T = float | hctr_half; weights in T, saved activations in float32):
//   x0, y, d_y, d_x0 (m, D) T;  w, b (L, D) T;  xs (L, m, D) float32;  hs (L, m) float32
//   partial (blocks, 2, L, D) float32: per-block sums of d_w (index 0) and d_b (index 1)
// Forward per row:  h_l = <x_l, w_l>;  x_{l+1} = x0 * h_l + x_l + b_l;  y = x_L.
// Backward per row, l = L-1..0:  acc += g * h_l;  v = <g, x0>;  d_w_l += x_l * v;  d_b_l += g;
//   g = g + v * w_l;  finally d_x0 = acc + g.
// Launch mapping: one warp per sample row (rows strided over the grid's warps); the row's running
// vectors live in shared memory (forward: x; backward: g and acc, D floats each per warp) and dot
// products are warp shuffles. Backward: each block owns `rows_per_block` consecutive rows and sums
// the d_w / d_b contributions of its warps in shared memory (2*L*D floats, float atomics: the order
// of the warps' additions is unspecified) into its `partial` slot; the wrapper adds the blocks.
#include "hctr_common.cuh"

template <typename T>
__global__ void hctr_multicross_fwd(const T* __restrict__ x0, const T* __restrict__ w, const T* __restrict__ b,
                                    T* __restrict__ y, float* __restrict__ xs, float* __restrict__ hs, long long m,
                                    int dim, int layers) {
    extern __shared__ float shared[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float* x = shared + warp * dim;
    for (long long r : hctr_warp_stride(m)) {
        const T* x0r = x0 + r * dim;
        for (int d = lane; d < dim; d += 32) x[d] = to_f32(x0r[d]);
        __syncwarp();
        for (int l = 0; l < layers; ++l) {
            float h = 0.0f;
            for (int d = lane; d < dim; d += 32) h += x[d] * to_f32(w[l * dim + d]);
            h = warp_sum(h);
            float* xs_row = xs + ((long long)l * m + r) * dim;
            for (int d = lane; d < dim; d += 32) {
                const float xd = x[d];
                xs_row[d] = xd;
                x[d] = to_f32(x0r[d]) * h + xd + to_f32(b[l * dim + d]);
            }
            if (lane == 0) hs[(long long)l * m + r] = h;
            __syncwarp();
        }
        for (int d = lane; d < dim; d += 32) y[r * dim + d] = from_f32<T>(x[d]);
        __syncwarp();
    }
}

template <typename T>
__global__ void hctr_multicross_bwd(const T* __restrict__ d_y, const T* __restrict__ x0,
                                    const float* __restrict__ xs, const float* __restrict__ hs,
                                    const T* __restrict__ w, T* __restrict__ d_x0, float* __restrict__ partial,
                                    long long m, int dim, int layers, long long rows_per_block) {
    extern __shared__ float shared[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const int weights = layers * dim;
    float* sums = shared;                          // (2, L, D): d_w then d_b
    float* g = shared + 2 * weights + warp * 2 * dim;
    float* acc = g + dim;
    for (int i = threadIdx.x; i < 2 * weights; i += blockDim.x) sums[i] = 0.0f;
    __syncthreads();
    const long long first = blockIdx.x * rows_per_block;
    const long long last = first + rows_per_block < m ? first + rows_per_block : m;
    for (long long r = first + warp; r < last; r += warps) {
        const T* x0r = x0 + r * dim;
        for (int d = lane; d < dim; d += 32) {
            g[d] = to_f32(d_y[r * dim + d]);
            acc[d] = 0.0f;
        }
        __syncwarp();
        for (int l = layers - 1; l >= 0; --l) {
            const float h = hs[(long long)l * m + r];
            float v = 0.0f;
            for (int d = lane; d < dim; d += 32) {
                acc[d] += g[d] * h;
                v += g[d] * to_f32(x0r[d]);
            }
            v = warp_sum(v);
            const float* xs_row = xs + ((long long)l * m + r) * dim;
            for (int d = lane; d < dim; d += 32) {
                atomicAdd(sums + l * dim + d, xs_row[d] * v);
                atomicAdd(sums + weights + l * dim + d, g[d]);
                g[d] = g[d] + v * to_f32(w[l * dim + d]);
            }
            __syncwarp();
        }
        for (int d = lane; d < dim; d += 32) d_x0[r * dim + d] = from_f32<T>(acc[d] + g[d]);
        __syncwarp();
    }
    __syncthreads();
    for (int i = threadIdx.x; i < 2 * weights; i += blockDim.x) partial[blockIdx.x * 2LL * weights + i] = sums[i];
}
