// Sparse (embedding) optimizer updates: HugeCTR's per-key rules for every update type.
//
// References (hugectr_lab/embedding/sparse_optimizers.py): `sparse_sgd_update`,
// `sparse_sgd_atomic_update`, `sparse_momentum_sgd_update`, `sparse_momentum_sgd_global_update`,
// `sparse_nesterov_update`, `sparse_nesterov_global_update`, `sparse_adam_update`,
// `sparse_adam_global_update`, `sparse_adam_lazy_global_update`, `sparse_adagrad_update`, and
// `sparse_reduce_update` (the reduction of embedding.cu fused with one of the updates above).
//
// Layouts (row-major, E = embedding_vec_size):
//   values (V, E) float32; s1, s2 (V, E) T = float | hctr_half optimizer state (nullptr if unused)
//   rows   (U,) int64 touched rows, distinct except -1 (padding of the fixed-size view: skipped);
//          g (U, E) float32 reduced gradient (already / S)
//   fused: partial (C_max, E) float32 chunk sums and chunk_offsets (U+1,) int64 of embedding.cu's
//          reduction instead of g; g[u, e] = hctr_chunk_sum(...) (the sums in order, / scaler)
//   prev_time (V,) int64 (LazyGlobal Adam)
//
// A rule (optimizer_rules.cuh, shared with the dense update) is a struct built from the step's learning
// rate and step number t -- read from device memory (`lr`, `step`: float64 scalars the embedding writes
// before each step, so a CUDA graph of the step replays with the current values) -- and up to three
// constant hyper-parameters c0..c2, each float field computed in double and rounded as the reference
// rounds its float32 expressions, with
//   touched(w, a, b, g): the update of one element of a touched row (a, b: states as float32)
//   all(w, a, b):        the pass over every row of the table (Global update types only)
// Launch mapping: one thread per element, grid-stride; `hctr_sparse_update_rows` and
// `hctr_sparse_reduce_update_rows` over U*E elements of the touched rows (threads of a -1 row exit),
// `hctr_sparse_update_all` over V*E. Valid rows are distinct, so no two threads write one element.
// Global rules run `rows` then `all` (or `all` then `rows`: Nesterov), as the reference.
#include "hctr_common.cuh"
#include "optimizer_rules.cuh"

// The touched-rows pass over U*E elements; `grad(u, e)` is element e of row u's reduced gradient.
template <class Rule, typename T, class Grad>
__device__ __forceinline__ void hctr_update_touched(float* values, T* s1, T* s2, const long long* rows,
                                                    long long num_rows, int vec, const Rule& rule, Grad grad) {
    for (long long i : hctr_grid_stride(num_rows * vec)) {
        const long long u = i / vec;
        const long long row = rows[u];
        if (row < 0) continue;
        const int e = (int)(i - u * vec);
        const float gi = grad(u, e);
        hctr_apply<Rule>(values, s1, s2, row * vec + e,
                         [&](float& w, float& a, float& b) { rule.touched(w, a, b, gi); });
    }
}

// Touched rows with the reduced gradient g (U, E) float32.
template <class Rule, typename T>
__global__ void hctr_sparse_update_rows(float* __restrict__ values, T* __restrict__ s1, T* __restrict__ s2,
                                        const long long* __restrict__ rows, const float* __restrict__ g,
                                        long long num_rows, int vec, const double* __restrict__ lr,
                                        const double* __restrict__ step, double c0, double c1, double c2) {
    const Rule rule(*lr, *step, c0, c1, c2);
    hctr_update_touched<Rule>(values, s1, s2, rows, num_rows, vec, rule,
                              [&](long long u, int e) { return g[u * vec + e]; });
}

// Touched rows with the gradient formed from the reduction's chunk sums (`sparse_reduce_update`: the
// second pass of embedding.cu's reduction, fused; padding rows form nothing), so g never reaches memory.
template <class Rule, typename T>
__global__ void hctr_sparse_reduce_update_rows(float* __restrict__ values, T* __restrict__ s1, T* __restrict__ s2,
                                               const long long* __restrict__ rows, const float* __restrict__ partial,
                                               const long long* __restrict__ chunk_offsets, float scaler,
                                               long long num_rows, int vec, const double* __restrict__ lr,
                                               const double* __restrict__ step, double c0, double c1, double c2) {
    const Rule rule(*lr, *step, c0, c1, c2);
    hctr_update_touched<Rule>(values, s1, s2, rows, num_rows, vec, rule, [&](long long u, int e) {
        return hctr_chunk_sum(partial, chunk_offsets, u, e, vec, scaler);
    });
}

template <class Rule, typename T>
__global__ void hctr_sparse_update_all(float* __restrict__ values, T* __restrict__ s1, T* __restrict__ s2,
                                       long long num_elements, const double* __restrict__ lr,
                                       const double* __restrict__ step, double c0, double c1, double c2) {
    const Rule rule(*lr, *step, c0, c1, c2);
    for (long long i : hctr_grid_stride(num_elements))
        hctr_apply<Rule>(values, s1, s2, i, [&](float& w, float& a, float& b) { rule.all(w, a, b); });
}

// SGD with atomic_update: every occurrence k with rows[k] >= 0 adds -lr_over_scaler * wgrad[row_ids[k]]
// (lr_over_scaler: a float64 scalar in device memory, rounded to float32 once).
// One thread per (occurrence, piece of W elements); atomics, so the order of equal-row additions is
// unspecified. W = 4 (E % 4 == 0, 16-byte aligned rows): on sm_90+ one 128-bit atomicAdd per piece, a
// quarter of the atomic operations the L2 serialises on a hot row (each element gets the same addition).
template <typename T, int W>
__global__ void hctr_sparse_sgd_atomic_update(float* __restrict__ values, const long long* __restrict__ rows,
                                              const long long* __restrict__ row_ids, const T* __restrict__ wgrad,
                                              long long num_keys, int vec,
                                              const double* __restrict__ lr_over_scaler) {
    const float neg_lr_over_scaler = (float)(-*lr_over_scaler);
    const int pieces = vec / W;
    const long long total = num_keys * pieces;
    for (long long i : hctr_grid_stride(total)) {
        const long long k = i / pieces;
        const int e = (int)(i - k * pieces) * W;
        const long long row = rows[k];
        if (row < 0) continue;
        const T* src = wgrad + row_ids[k] * vec + e;
        float* dst = values + row * vec + e;
        float add[W];
        for (int j = 0; j < W; ++j) add[j] = neg_lr_over_scaler * to_f32(src[j]);
#if __CUDA_ARCH__ >= 900
        constexpr bool vector = W == 4;
#else
        constexpr bool vector = false;
#endif
        if constexpr (vector)
            atomicAdd(reinterpret_cast<float4*>(dst), make_float4(add[0], add[1], add[2], add[3]));
        else
            for (int j = 0; j < W; ++j) atomicAdd(dst + j, add[j]);
    }
}

// LazyGlobal Adam: one thread per touched row (it reads and then sets prev_time for all E elements).
// alpha and the decay powers are computed in float64 as the reference does, then rounded to float32.
template <typename T>
__global__ void hctr_sparse_adam_lazy_update(float* __restrict__ values, T* __restrict__ m, T* __restrict__ v,
                                             long long* __restrict__ prev_time, const long long* __restrict__ rows,
                                             const float* __restrict__ g, long long num_rows, int vec,
                                             const double* __restrict__ lr_p, const double* __restrict__ step_p,
                                             double beta1, double beta2, float c1, float c2, float eps) {
    const double lr = *lr_p;
    const long long step = (long long)*step_p;
    for (long long u : hctr_grid_stride(num_rows)) {
        const long long row = rows[u];
        if (row < 0) continue;
        const double p = (double)prev_time[row], k = (double)step - p;
        prev_time[row] = step;
        const float alpha = (float)((lr / (1.0 - beta1)) * sqrt(1.0 - pow(beta2, p)) / (1.0 - pow(beta1, p)) *
                                    (1.0 - pow(beta1, k)));
        const float d1 = (float)pow(beta1, k), d2 = (float)pow(beta2, k);
        for (int e = 0; e < vec; ++e) {
            const long long at = row * vec + e;
            const float gi = g[u * vec + e], m_old = to_f32(m[at]), v_old = to_f32(v[at]);
            values[at] = values[at] - alpha * m_old / (sqrtf(v_old) + eps);
            m[at] = from_f32<T>(d1 * m_old + c1 * gi);
            v[at] = from_f32<T>(d2 * v_old + c2 * gi * gi);
        }
    }
}
