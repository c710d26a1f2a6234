// MultiCross (the DCN cross network, L layers over x0 (m, D)): forward and backward.
//
// References (hugectr_lab/layers/multi_cross.py): `multicross_fwd`, `multicross_bwd`.
//
// Layouts (row-major, T = float | hctr_half; weights in T, saved activations in float32):
//   x0, y, d_y, d_x0 (m, D) T;  w, b, d_w, d_b (L, D) T;  hs (L, m) float32;
//   v (m, L) float32: v[r, l] = dL/dh_l;  partial (chunks, L+1, D+L) float32: per chunk of rows, plane
//   l < L holds sum_r v[r, l] * x_l[r, :] (D columns), plane L the column sums of [d_y | v] (D+L).
// Forward per row:  h_l = <x_l, w_l>;  x_{l+1} = x0 * h_l + x_l + b_l (hctr_cross_step);  y = x_L.
// The layer inputs x_l are not saved: the column pass rebuilds x_l[r, d] from x0[r, d], hs[:, r] and b[:, d]
// with the forward's own roundings (bit-exact), reading x0 (m D T) per plane instead of x_l (m D float32)
// and saving the forward's write of all L planes.
// Backward per row, l = L-1..0:  acc += g * h_l;  v_l = <g, x0>;  g = g + v_l * w_l;  d_x0 = acc + g.
//   Weight gradients: d_w_l = sum_r v_l x_l;  d_b_l = sum_r g_l = colsum(d_y) + sum_{k>l} (sum_r v_k) w_k.
// Launch mapping:
//   hctr_multicross_fwd, hctr_multicross_bwd: one warp per sample row (rows strided over the grid's
//     warps); the row's running vectors live in shared memory (forward: x; backward: g and acc, D
//     floats each per warp) and dot products are warp shuffles. The backward row pass writes d_x0 and v.
//   hctr_multicross_bwd_sums: grid (ceil((D+L)/32), chunks, L+1); a block of (32, 8) threads owns 32
//     columns of one plane for one chunk of rows; each of its 8 row-lanes walks the chunk with stride
//     8 (4 rows' loads in flight), then the lanes' sums are added in lane order.
//   hctr_multicross_bwd_finish: one thread per (l, d); adds the chunks in order and forms d_b in the
//     reference's order (k = L-1 down to l+1). No atomics anywhere: two runs give bit-identical results.
#include "hctr_common.cuh"

// x_{l+1} = x0 * h_l + x_l + b_l, rounded after each operation (no fused multiply-add, as the NumPy
// reference's forward): the same bits in the forward and in the backward's rebuild.
__device__ __forceinline__ float hctr_cross_step(float x0, float h, float x, float b) {
    return __fadd_rn(__fadd_rn(__fmul_rn(x0, h), x), b);
}

template <typename T>
__global__ void hctr_multicross_fwd(const T* __restrict__ x0, const T* __restrict__ w, const T* __restrict__ b,
                                    T* __restrict__ y, float* __restrict__ hs, long long m,
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
            for (int d = lane; d < dim; d += 32) x[d] = hctr_cross_step(to_f32(x0r[d]), h, x[d], to_f32(b[l * dim + d]));
            if (lane == 0) hs[(long long)l * m + r] = h;
            __syncwarp();
        }
        for (int d = lane; d < dim; d += 32) y[r * dim + d] = from_f32<T>(x[d]);
        __syncwarp();
    }
}

template <typename T>
__global__ void hctr_multicross_bwd(const T* __restrict__ d_y, const T* __restrict__ x0, const float* __restrict__ hs,
                                    const T* __restrict__ w, T* __restrict__ d_x0, float* __restrict__ v_out,
                                    long long m, int dim, int layers) {
    extern __shared__ float shared[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float* g = shared + warp * 2 * dim;
    float* acc = g + dim;
    for (long long r : hctr_warp_stride(m)) {
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
            if (lane == 0) v_out[r * layers + l] = v;
            for (int d = lane; d < dim; d += 32) g[d] = g[d] + v * to_f32(w[l * dim + d]);
            __syncwarp();
        }
        for (int d = lane; d < dim; d += 32) d_x0[r * dim + d] = from_f32<T>(acc[d] + g[d]);
        __syncwarp();
    }
}

#define HCTR_MC_ROWS 4

template <typename T>
__global__ void hctr_multicross_bwd_sums(const T* __restrict__ d_y, const T* __restrict__ x0,
                                         const float* __restrict__ hs, const T* __restrict__ b,
                                         const float* __restrict__ v, float* __restrict__ partial, long long m,
                                         int dim, int layers, long long rows_per_block) {
    __shared__ float lanes[8][33];
    const int plane = blockIdx.z, width = dim + layers;
    const int col = blockIdx.x * 32 + threadIdx.x, cols = plane < layers ? dim : width;
    const long long first = blockIdx.y * rows_per_block;
    const long long last = first + rows_per_block < m ? first + rows_per_block : m;
    float acc = 0.0f;
    if (col < cols) {
        // HCTR_MC_ROWS rows of the lane's walk at a time: their loads are issued before their arithmetic (a row
        // at a time the pass waited a load latency per row), and they are added in the walk's order.
        for (long long r0 = first + threadIdx.y; r0 < last; r0 += HCTR_MC_ROWS * 8) {
            float term[HCTR_MC_ROWS];
            if (plane < layers) {
                float x0_rd[HCTR_MC_ROWS], x[HCTR_MC_ROWS], vr[HCTR_MC_ROWS];
#pragma unroll
                for (int j = 0; j < HCTR_MC_ROWS; ++j) {
                    const long long r = r0 + 8 * j;
                    x0_rd[j] = r < last ? to_f32(x0[r * dim + col]) : 0.0f;
                    vr[j] = r < last ? v[r * layers + plane] : 0.0f;
                    x[j] = x0_rd[j];   // x_0, then the forward's steps up to x_plane
                }
                for (int k = 0; k < plane; ++k) {
                    const float bk = to_f32(b[k * dim + col]);
#pragma unroll
                    for (int j = 0; j < HCTR_MC_ROWS; ++j) {
                        const long long r = r0 + 8 * j;
                        x[j] = hctr_cross_step(x0_rd[j], r < last ? hs[(long long)k * m + r] : 0.0f, x[j], bk);
                    }
                }
#pragma unroll
                for (int j = 0; j < HCTR_MC_ROWS; ++j) term[j] = vr[j] * x[j];
            } else {
#pragma unroll
                for (int j = 0; j < HCTR_MC_ROWS; ++j) {
                    const long long r = r0 + 8 * j;
                    term[j] = r >= last ? 0.0f
                                        : col < dim ? to_f32(d_y[r * dim + col]) : v[r * layers + (col - dim)];
                }
            }
#pragma unroll
            for (int j = 0; j < HCTR_MC_ROWS; ++j)
                if (r0 + 8 * j < last) acc += term[j];
        }
    }
    lanes[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < cols) {
        float total = 0.0f;
        for (int j = 0; j < 8; ++j) total += lanes[j][threadIdx.x];
        partial[((long long)blockIdx.y * (layers + 1) + plane) * width + col] = total;
    }
}

template <typename T>
__global__ void hctr_multicross_bwd_finish(const float* __restrict__ partial, const T* __restrict__ w,
                                           T* __restrict__ d_w, T* __restrict__ d_b, int dim, int layers,
                                           int chunks) {
    const int width = dim + layers;
    const long long chunk_stride = (long long)(layers + 1) * width;
    const float* sums = partial + (long long)layers * width;   // plane L: column sums of [d_y | v]
    for (long long i : hctr_grid_stride((long long)layers * dim)) {
        const int l = (int)(i / dim), d = (int)(i - (long long)l * dim);
        float dw = 0.0f, col = 0.0f;
        for (int c = 0; c < chunks; ++c) {
            dw += partial[c * chunk_stride + (long long)l * width + d];
            col += sums[c * chunk_stride + d];
        }
        for (int k = layers - 1; k > l; --k) {
            float vk = 0.0f;
            for (int c = 0; c < chunks; ++c) vk += sums[c * chunk_stride + dim + k];
            col = col + vk * to_f32(w[k * dim + d]);
        }
        d_w[i] = from_f32<T>(dw);
        d_b[i] = from_f32<T>(col);
    }
}
