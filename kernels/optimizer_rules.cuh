// Optimizer update rules, one element at a time, shared by the sparse updates (sparse_update.cu) and the
// dense update (dense_update.cu), so each formula is written once in CUDA (rules/optimizers.py holds the
// NumPy side). Include after hctr_common.cuh (to_f32, from_f32).
//
// A rule is a struct of float32 factors with
//   touched(w, a, b, g): the update of one element (a, b: its states as float32; g: its gradient / S)
//   all(w, a, b):        the pass over every row of a table (the sparse Global update types only)
// It is built either
//   * by a sparse kernel from the step's learning rate and step number t, read from device memory, and
//     up to three constant hyper-parameters c0..c2: Rule(lr, t, c0, c1, c2), each float field computed
//     in double and rounded as the sparse reference rounds its float32 expressions; or
//   * by the dense kernel from the step's float32 rate, final on the host (`Rate`: the learning rate, or
//     Adam's alpha_t already bias-corrected), and the same constants: Rule(Rate{r}, c0, c1, c2).
// For the dense optimizers each constant arrives as the float64 value of a float32 hyper-parameter, so
// (float)c is that float32 again, and (float)(1.0 - c) (or 1.0 + c) equals the float32 expression
// 1 - c (1 + c) as NumPy rounds it (tests/optim/test_dense_update.py). Kernels are compiled with
// --fmad=false: a*b + c rounds twice.
#pragma once

namespace hctr {

// The float32 rate of a dense step: lr, or Adam's alpha_t (the dense optimizer writes it each step).
struct Rate {
    float value;
};

struct Sgd {  // c: unused
    static constexpr int states = 0;
    float lr;
    __device__ Sgd(Rate r, double, double, double) : lr(r.value) {}
    __device__ Sgd(double lr_, double, double c0, double c1, double c2) : Sgd(Rate{(float)lr_}, c0, c1, c2) {}
    __device__ void touched(float& w, float&, float&, float g) const { w = w - lr * g; }
};

struct Momentum {  // c0 = mu
    static constexpr int states = 1;
    float lr, mu;
    __device__ Momentum(Rate r, double c0, double, double) : lr(r.value), mu((float)c0) {}
    __device__ Momentum(double lr_, double, double c0, double c1, double c2) : Momentum(Rate{(float)lr_}, c0, c1, c2) {}
    __device__ void touched(float& w, float& m, float&, float g) const {
        m = mu * m - lr * g;
        w = w + m;
    }
};

struct MomentumGlobal {  // c0 = mu
    static constexpr int states = 1;
    float lr, mu;
    __device__ MomentumGlobal(double lr_, double, double c0, double, double) : lr((float)lr_), mu((float)c0) {}
    __device__ void touched(float&, float& m, float&, float g) const { m = m - lr * g / mu; }
    __device__ void all(float& w, float& m, float&) const {
        m = mu * m;
        w = w + m;
    }
};

// w += -mu*a + (1+mu)*a_new: the same bits as rules.optimizers.nesterov_step's (1+mu)*a_new - mu*a
// (negation is exact and the sum commutes).
struct Nesterov {  // c0 = mu
    static constexpr int states = 1;
    float lr, mu, neg_mu, one_plus_mu;
    __device__ Nesterov(Rate r, double c0, double, double)
        : lr(r.value), mu((float)c0), neg_mu((float)-c0), one_plus_mu((float)(1.0 + c0)) {}
    __device__ Nesterov(double lr_, double, double c0, double c1, double c2) : Nesterov(Rate{(float)lr_}, c0, c1, c2) {}
    __device__ void touched(float& w, float& a, float&, float g) const {
        const float old = a;
        a = mu * old - lr * g;
        w = w + (neg_mu * old + one_plus_mu * a);
    }
};

struct NesterovGlobal {  // c0 = mu; step = (1 + mu) * lr
    static constexpr int states = 1;
    float lr, mu, step;
    __device__ NesterovGlobal(double lr_, double, double c0, double, double)
        : lr((float)lr_), mu((float)c0), step((float)((1.0 + c0) * lr_)) {}
    __device__ void all(float& w, float& a, float&) const {
        a = mu * a;
        w = w + mu * a;
    }
    __device__ void touched(float& w, float& a, float&, float g) const {
        a = a - lr * g;
        w = w - step * g;
    }
};

// The sparse constructor computes alpha = lr*sqrt(1-b2^t)/(1-b1^t) (rules.optimizers.adam_step_size) on
// the device; the dense one takes alpha_t as the host computed it.
struct Adam {  // c0 = b1, c1 = b2, c2 = eps
    static constexpr int states = 2;
    float alpha, b1, b2, c1, c2, eps;
    __device__ Adam(Rate alpha_t, double beta1, double beta2, double epsilon)
        : alpha(alpha_t.value), b1((float)beta1), b2((float)beta2), c1((float)(1.0 - beta1)),
          c2((float)(1.0 - beta2)), eps((float)epsilon) {}
    __device__ Adam(double lr_, double t, double beta1, double beta2, double epsilon)
        : Adam(Rate{(float)(lr_ * sqrt(1.0 - pow(beta2, t)) / (1.0 - pow(beta1, t)))}, beta1, beta2, epsilon) {}
    __device__ void touched(float& w, float& m, float& v, float g) const {
        m = b1 * m + c1 * g;
        v = b2 * v + c2 * g * g;
        w = w - alpha * m / (sqrtf(v) + eps);
    }
};

struct AdamGlobal : Adam {
    __device__ AdamGlobal(double lr_, double t, double beta1, double beta2, double epsilon)
        : Adam(lr_, t, beta1, beta2, epsilon) {}
    __device__ void touched(float&, float& m, float& v, float g) const {
        m = m + c1 * g / b1;
        v = v + c2 * g * g / b2;
    }
    __device__ void all(float& w, float& m, float& v) const {
        m = b1 * m;
        v = b2 * v;
        w = w - alpha * m / (sqrtf(v) + eps);
    }
};

struct AdaGrad {  // c0 = eps
    static constexpr int states = 1;
    float lr, eps;
    __device__ AdaGrad(Rate r, double c0, double, double) : lr(r.value), eps((float)c0) {}
    __device__ AdaGrad(double lr_, double, double c0, double c1, double c2) : AdaGrad(Rate{(float)lr_}, c0, c1, c2) {}
    __device__ void touched(float& w, float& acc, float&, float g) const {
        acc = acc + g * g;
        w = w - lr * g / (sqrtf(acc) + eps);
    }
};

}  // namespace hctr

// Loads the states of element i, runs `op`, stores the states back (rounded to T) and the weight.
template <class Rule, typename T, class Op>
__device__ __forceinline__ void hctr_apply(float* values, T* s1, T* s2, long long i, Op op) {
    float w = values[i], a = 0.0f, b = 0.0f;
    if (Rule::states >= 1) a = to_f32(s1[i]);
    if (Rule::states >= 2) b = to_f32(s2[i]);
    op(w, a, b);
    if (Rule::states >= 1) s1[i] = from_f32<T>(a);
    if (Rule::states >= 2) s2[i] = from_f32<T>(b);
    values[i] = w;
}
