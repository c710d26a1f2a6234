// FmOrder2: the second-order factorisation-machine term, forward and backward.
//
// References (hugectr_lab/layers/fm_order2.py): `fm_order2_fwd`, `fm_order2_bwd`.
//
// Layouts: x, d_x (m, F*k) T viewed as v (m, F, k); y, d_y (m, k) T; T = float | hctr_half.
//   y_j = 0.5 * ((sum_f v_fj)^2 - sum_f v_fj^2);   d_v_fj = d_y_j * (sum_f' v_f'j - v_fj).
// Launch mapping: one thread per (sample, j), grid-stride over m*k; the thread walks the F fields
// (stride k, so a warp reads k consecutive values per field: coalesced). float32 accumulation.
#include "hctr_common.cuh"

template <typename T>
__global__ void hctr_fm_order2_fwd(const T* __restrict__ x, T* __restrict__ y, long long m, int fields, int k) {
    const long long total = m * k;
    for (long long i : hctr_grid_stride(total)) {
        const long long s = i / k;
        const T* v = x + s * fields * k + (i - s * k);
        float sum = 0.0f, squares = 0.0f;
        for (int f = 0; f < fields; ++f) {
            const float a = to_f32(v[f * k]);
            sum += a;
            squares += a * a;
        }
        y[i] = from_f32<T>(0.5f * (sum * sum - squares));
    }
}

template <typename T>
__global__ void hctr_fm_order2_bwd(const T* __restrict__ d_y, const T* __restrict__ x, T* __restrict__ d_x,
                                   long long m, int fields, int k) {
    const long long total = m * k;
    for (long long i : hctr_grid_stride(total)) {
        const long long s = i / k;
        const long long base = s * fields * k + (i - s * k);
        float sum = 0.0f;
        for (int f = 0; f < fields; ++f) sum += to_f32(x[base + f * k]);
        const float g = to_f32(d_y[i]);
        for (int f = 0; f < fields; ++f) d_x[base + f * k] = from_f32<T>(g * (sum - to_f32(x[base + f * k])));
    }
}
