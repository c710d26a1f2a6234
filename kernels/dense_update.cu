// Dense optimizer update: one step of SGD, MomentumSGD, Nesterov, Adam or AdaGrad over the flat master
// weights in one kernel (the gradient's division by the loss scaler included).
//
// Reference (hugectr_lab/optim/dense.py): `dense_update`.
//
// Layouts:
//   weights (N,) float32 (in place); grads (N,) G = float | hctr_half (read only)
//   s1, s2  (N,) float32 optimizer states in the dense state file's order (nullptr if unused)
//   rate    0-d float32 in device memory: the step's lr, or Adam's alpha_t (bias-corrected on the host);
//           DenseOptimizer.prepare writes it before each step, so a CUDA graph of the step reads the
//           current value at each replay
//   c0..c2  the rule's constant hyper-parameters (optimizer_rules.cuh), float32 values passed as double
//
// Per element: g = float(grads[i]) / scaler (float32 division, as the reference's divide), then the
// rule's touched(w, a, b, g) -- the same struct and float32 operations as the sparse update's.
// Launch mapping: one thread per element, grid-stride over N; every element is read and written once
// by one thread (for Adam in float32: 16 B read, 12 B written per parameter).
#include "hctr_common.cuh"
#include "optimizer_rules.cuh"

template <class Rule, typename G>
__global__ void hctr_dense_update(float* __restrict__ weights, float* __restrict__ s1, float* __restrict__ s2,
                                  const G* __restrict__ grads, long long n, float scaler,
                                  const float* __restrict__ rate, double c0, double c1, double c2) {
    const Rule rule(hctr::Rate{*rate}, c0, c1, c2);
    for (long long i : hctr_grid_stride(n)) {
        const float g = to_f32(grads[i]) / scaler;
        hctr_apply<Rule>(weights, s1, s2, i, [&](float& w, float& a, float& b) { rule.touched(w, a, b, g); });
    }
}
