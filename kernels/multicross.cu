// MultiCross (the DCN cross network, L layers over x0 (m, D)): forward and backward.
//
// References (hugectr_lab/layers/multi_cross.py): `multicross_fwd`, `multicross_bwd`.
//
// Layouts (row-major, T = float | hctr_half; weights in T, saved activations in float32):
//   x0, y, d_x0 (m, D) T;  d_y (m, D) T with row stride ld_dy >= D (a Concat gradient's columns, read in
//   place);  w, b (L, D) T with row strides ld_w, ld_b >= D (the layer's weights are rows of the network's
//   flat buffer, w_l and b_l interleaved: read in place);  d_w, d_b (L, D) T;  hs (L, m) float32;
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
//     warps); the row's running vectors live in shared memory (forward: x and the row of x0; backward: g
//     and acc, D floats each per warp) and dot products are warp shuffles. The forward's block first
//     copies w and b into shared memory when they fit (wb_shared): then a layer's two passes wait on no
//     global load (at batch 1 the kernel had taken 20 µs, a global load's latency per element per layer);
//     that staging and each row's x0 issue eight loads per thread before storing them (hctr_stage_rows).
//     The backward row pass writes d_x0 and v.
//   hctr_multicross_bwd_sums: grid (ceil((D+L)/32), chunks, ceil(L/8)); a block of (32, 8) threads owns
//     32 columns of one chunk of rows and up to 8 planes; each of its 8 row-lanes walks the chunk with
//     stride 8 (4 rows' loads in flight), reading x0 and d_y once and rebuilding x_1, x_2, ... as it goes
//     (an earlier version ran a block per plane: x0 read L+1 times and x_l rebuilt from x_0 for each l);
//     then per plane the lanes' sums are added in lane order. The z = 0 blocks also sum plane L.
//   hctr_multicross_bwd_finish: one warp per (l, d); its lanes add the chunks (lane-strided, then a warp
//     sum: a fixed order) and lane 0 forms d_b in the reference's order (k = L-1 down to l+1). No atomics
//     anywhere: two runs give bit-identical results.
#include "hctr_common.cuh"

// x_{l+1} = x0 * h_l + x_l + b_l, rounded after each operation (no fused multiply-add, as the NumPy
// reference's forward): the same bits in the forward and in the backward's rebuild.
__device__ __forceinline__ float hctr_cross_step(float x0, float h, float x, float b) {
    return __fadd_rn(__fadd_rn(__fmul_rn(x0, h), x), b);
}

// Loads count elements src[first], src[first + step], ... into float32 at dst[...] (same indices), eight
// loads issued before their stores: a loop that stores each value before the next load waits a global
// load's latency per element (the forward's staging of w, b and x0 had taken most of its 12 µs at batch 1).
// `src` indexes by (element i) -> src[(i / dim) * ld + i % dim]: rows of dim elements, ld apart.
template <typename T>
__device__ __forceinline__ void hctr_stage_rows(const T* __restrict__ src, long long ld, int dim, int count,
                                                int first, int step, float* __restrict__ dst) {
    constexpr int kBatch = 8;
    for (int i0 = first; i0 < count; i0 += kBatch * step) {
        float v[kBatch];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            const int i = i0 + u * step, row = i / dim;
            v[u] = i < count ? to_f32(src[row * ld + (i - row * dim)]) : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < kBatch; ++u)
            if (i0 + u * step < count) dst[i0 + u * step] = v[u];
    }
}

template <typename T>
__global__ void hctr_multicross_fwd(const T* __restrict__ x0, const T* __restrict__ w, long long ld_w,
                                    const T* __restrict__ b, long long ld_b, T* __restrict__ y,
                                    float* __restrict__ hs, long long m, int dim, int layers, int wb_shared) {
    extern __shared__ float shared[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wb = wb_shared ? layers * dim : 0;
    float* sw = shared;               // (L, D) w, then (L, D) b, when wb_shared
    float* sb = shared + wb;
    float* x = shared + 2 * wb + warp * 2 * dim;   // the warp's running x_l, then its row of x0
    float* x0s = x + dim;
    if (wb_shared) {
        hctr_stage_rows(w, ld_w, dim, wb, threadIdx.x, blockDim.x, sw);
        hctr_stage_rows(b, ld_b, dim, wb, threadIdx.x, blockDim.x, sb);
        __syncthreads();
    }
    for (long long r : hctr_warp_stride(m)) {
        hctr_stage_rows(x0 + r * dim, dim, dim, dim, lane, 32, x0s);
        for (int d = lane; d < dim; d += 32) x[d] = x0s[d];   // the lane's own elements: no sync between
        __syncwarp();
        for (int l = 0; l < layers; ++l) {
            const int at = l * dim;
            float h = 0.0f;
            for (int d = lane; d < dim; d += 32) h += x[d] * (wb_shared ? sw[at + d] : to_f32(w[l * ld_w + d]));
            h = warp_sum(h);
            for (int d = lane; d < dim; d += 32)
                x[d] = hctr_cross_step(x0s[d], h, x[d], wb_shared ? sb[at + d] : to_f32(b[l * ld_b + d]));
            if (lane == 0) hs[(long long)l * m + r] = h;
            __syncwarp();
        }
        for (int d = lane; d < dim; d += 32) y[r * dim + d] = from_f32<T>(x[d]);
        __syncwarp();
    }
}

template <typename T>
__global__ void hctr_multicross_bwd(const T* __restrict__ d_y, long long ld_dy, const T* __restrict__ x0,
                                    const float* __restrict__ hs, const T* __restrict__ w, long long ld_w,
                                    T* __restrict__ d_x0, float* __restrict__ v_out, long long m, int dim,
                                    int layers) {
    extern __shared__ float shared[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float* g = shared + warp * 2 * dim;
    float* acc = g + dim;
    for (long long r : hctr_warp_stride(m)) {
        const T* x0r = x0 + r * dim;
        for (int d = lane; d < dim; d += 32) {
            g[d] = to_f32(d_y[r * ld_dy + d]);
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
            for (int d = lane; d < dim; d += 32) g[d] = g[d] + v * to_f32(w[l * ld_w + d]);
            __syncwarp();
        }
        for (int d = lane; d < dim; d += 32) d_x0[r * dim + d] = from_f32<T>(acc[d] + g[d]);
        __syncwarp();
    }
}

#define HCTR_MC_ROWS 4
#define HCTR_MC_PLANES 8   // planes a thread sums in one walk (its registers); grid z covers more layers

template <typename T>
__global__ void hctr_multicross_bwd_sums(const T* __restrict__ d_y, long long ld_dy, const T* __restrict__ x0,
                                         const float* __restrict__ hs, const T* __restrict__ b, long long ld_b,
                                         const float* __restrict__ v, float* __restrict__ partial, long long m,
                                         int dim, int layers, long long rows_per_block) {
    __shared__ float lanes[8][33];
    const int width = dim + layers, first_plane = blockIdx.z * HCTR_MC_PLANES;
    const int col = blockIdx.x * 32 + threadIdx.x;
    const long long first = blockIdx.y * rows_per_block;
    const long long last = first + rows_per_block < m ? first + rows_per_block : m;
    // acc[p]: plane first_plane + p; colsum: plane L's column (d_y's for col < D, v's beyond), summed by
    // the z = 0 blocks only. Each sum adds the lane's rows in its walk's order.
    float acc[HCTR_MC_PLANES], colsum = 0.0f;
#pragma unroll
    for (int p = 0; p < HCTR_MC_PLANES; ++p) acc[p] = 0.0f;
    if (col < dim) {
        // HCTR_MC_ROWS rows of the lane's walk at a time: their loads are issued before their arithmetic.
        for (long long r0 = first + threadIdx.y; r0 < last; r0 += HCTR_MC_ROWS * 8) {
            float x0_rd[HCTR_MC_ROWS], x[HCTR_MC_ROWS], h[HCTR_MC_ROWS];
#pragma unroll
            for (int j = 0; j < HCTR_MC_ROWS; ++j) {
                const long long r = r0 + 8 * j;
                x0_rd[j] = r < last ? to_f32(x0[r * dim + col]) : 0.0f;
                x[j] = x0_rd[j];
                if (blockIdx.z == 0 && r < last) colsum += to_f32(d_y[r * ld_dy + col]);
            }
            // x_0, then the forward's steps (its roundings: bit-exact) up to this block's first plane
            for (int k = 0; k < first_plane; ++k) {
                const float bk = to_f32(b[k * ld_b + col]);
#pragma unroll
                for (int j = 0; j < HCTR_MC_ROWS; ++j) {
                    const long long r = r0 + 8 * j;
                    x[j] = hctr_cross_step(x0_rd[j], r < last ? hs[(long long)k * m + r] : 0.0f, x[j], bk);
                }
            }
#pragma unroll
            for (int p = 0; p < HCTR_MC_PLANES; ++p) {
                const int l = first_plane + p;
                if (l < layers) {
#pragma unroll
                    for (int j = 0; j < HCTR_MC_ROWS; ++j) {
                        const long long r = r0 + 8 * j;
                        h[j] = r < last ? hs[(long long)l * m + r] : 0.0f;
                        if (r < last) acc[p] += v[r * layers + l] * x[j];
                    }
                    if (l + 1 < layers) {
                        const float bl = to_f32(b[l * ld_b + col]);
#pragma unroll
                        for (int j = 0; j < HCTR_MC_ROWS; ++j) x[j] = hctr_cross_step(x0_rd[j], h[j], x[j], bl);
                    }
                }
            }
        }
    } else if (col < width && blockIdx.z == 0) {
        for (long long r = first + threadIdx.y; r < last; r += 8) colsum += v[r * layers + (col - dim)];
    }
    // The lanes' sums in lane order, plane by plane: planes first_plane.. (columns < D), then plane L.
    const int planes = layers - first_plane < HCTR_MC_PLANES ? layers - first_plane : HCTR_MC_PLANES;
    for (int p = 0; p <= planes; ++p) {
        const bool sums = p == planes;
        if (sums && blockIdx.z != 0) break;
        // plane L is colsum even where p < HCTR_MC_PLANES indexes a (zero) register of acc
        float mine = colsum;
#pragma unroll
        for (int q = 0; q < HCTR_MC_PLANES; ++q)
            if (!sums && q == p) mine = acc[q];
        lanes[threadIdx.y][threadIdx.x] = mine;
        __syncthreads();
        if (threadIdx.y == 0 && col < (sums ? width : dim)) {
            float total = 0.0f;
            for (int j = 0; j < 8; ++j) total += lanes[j][threadIdx.x];
            partial[((long long)blockIdx.y * (layers + 1) + (sums ? layers : first_plane + p)) * width + col] = total;
        }
        __syncthreads();
    }
}

template <typename T>
__global__ void hctr_multicross_bwd_finish(const float* __restrict__ partial, const T* __restrict__ w, long long ld_w,
                                           T* __restrict__ d_w, T* __restrict__ d_b, int dim, int layers,
                                           int chunks) {
    const int lane = threadIdx.x & 31, width = dim + layers;
    const long long chunk_stride = (long long)(layers + 1) * width;
    const float* sums = partial + (long long)layers * width;   // plane L: column sums of [d_y | v]
    for (long long i : hctr_warp_stride((long long)layers * dim)) {
        const int l = (int)(i / dim), d = (int)(i - (long long)l * dim);
        float dw = 0.0f, col = 0.0f;
        for (int c = lane; c < chunks; c += 32) {
            dw += partial[c * chunk_stride + (long long)l * width + d];
            col += sums[c * chunk_stride + d];
        }
        dw = warp_sum(dw);
        col = warp_sum(col);
        for (int k = layers - 1; k > l; --k) {
            float vk = 0.0f;
            for (int c = lane; c < chunks; c += 32) vk += sums[c * chunk_stride + dim + k];
            col = col + warp_sum(vk) * to_f32(w[k * ld_w + d]);
        }
        if (lane == 0) {
            d_w[i] = from_f32<T>(dw);
            d_b[i] = from_f32<T>(col);
        }
    }
}
