"""Dense optimizers: one update over a flat float32 master-weight buffer of N parameters.

Every optimizer first divides the gradient by the loss scaler S (``g = grad / S``), then
(lr = current learning rate, all arithmetic in float32):

=============  ==================================================================================
SGD            w -= lr*g
MomentumSGD    m = mu*m - lr*g;  w += m
Nesterov       a_new = mu*a - lr*g;  w += -mu*a + (1+mu)*a_new
Adam           t += 1;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;
               alpha_t = lr*sqrt(1-b2**t)/(1-b1**t);  w -= alpha_t*m/(sqrt(v)+eps)
AdaGrad        acc += g*g;  w -= lr*g/(sqrt(acc)+eps)
=============  ==================================================================================

States are float32 even with ``mixed_precision=True`` (HugeCTR keeps them in fp16, where Adam's
v underflows and training diverges); weights are always float32; gradients may be float32 or
float16.

The dense optimizer state file is the states' raw bytes concatenated in ``state_names`` order
(Adam: m then v), float32, or float16 in mixed precision as HugeCTR writes it; SGD writes an
empty file.

Arrays live in the array module of ``xp`` given at construction or to ``init``: a Backend, whose ops
run the step (``dense_update``: one CUDA kernel on CuPy), or an array module (numpy, cupy), on which
the NumPy reference runs.

``update`` = ``prepare`` (host: count the step, write this step's rate -- lr, or Adam's alpha_t -- into
a device scalar) then ``run`` (device only: the op ``dense_update``, whose kernel reads the rate from
device memory). A CUDA graph of the training step holds ``run``, and the host calls ``prepare`` before
each replay, so a learning-rate schedule and Adam's bias correction stay exact under graphs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import inspect

import numpy as np

from ..backend import Backend, array_module, reference_op, to_host
from ..backend.scratch import cache_blocks, scratch
from ..rules.optimizers import adam_step_size, momentum_step, nesterov_step


class DenseOptimizer(ABC):
    """Shared state management; subclasses set ``type_name``, ``state_names``, ``constant_names`` and
    ``step`` (the arithmetic of the reference op ``dense_update``).

    Constructors only store and check arguments. The states are allocated by ``init(N)`` or by
    the first ``update``.
    """

    type_name = ""
    state_names: tuple[str, ...] = ()
    constant_names: tuple[str, ...] = ()   # attributes that ``step`` takes as keyword arguments

    def __init__(self, learning_rate, *, scaler=1.0, mixed_precision=False, xp=None):
        self.set_learning_rate(learning_rate)
        if not scaler > 0:
            raise ValueError(f"scaler must be > 0, got {scaler!r}")
        self.scaler = np.float32(scaler)
        self.mixed_precision = bool(mixed_precision)
        self._use(xp)
        self._num_params = None
        self._states = None  # name -> (N,) state array, once allocated
        self._rate = None  # 0-d float32: the step's rate in xp (written by ``prepare``, read by ``run``)

    def _use(self, xp):
        """Run on ``xp``: a Backend (its ops: the CUDA kernel on CuPy) or an array module (the reference)."""
        self._backend = xp if isinstance(xp, Backend) else Backend(array_module(xp), use_kernels=False)
        self.xp, self.ops = self._backend.xp, self._backend.ops   # ``_backend.write`` sets the rate

    # States are kept in float32 even in mixed precision. HugeCTR 3.0 stores them in fp16, where
    # Adam's v = (1-b2)*g^2 underflows to 0 for small gradients and m/(sqrt(v)+eps) then explodes
    # (training diverges); the state *file* stays fp16 in mixed precision, byte-compatible.
    state_dtype = np.float32

    @property
    def file_dtype(self):
        """Element type of the dense optimizer state file: float16 in mixed precision (HugeCTR)."""
        return np.float16 if self.mixed_precision else np.float32

    @property
    def num_params(self):
        """N, or None before ``init``/the first ``update``."""
        return self._num_params

    def set_learning_rate(self, lr):
        """Set the lr used from the next ``update`` on.

        Raises ValueError if ``lr <= 0``, as HugeCTR's dense optimizers do; a schedule that
        decays to ``end_lr = 0`` therefore fails at its last step, in HugeCTR too.
        """
        if not lr > 0:
            raise ValueError(f"learning rate must be > 0, got {lr!r}")
        self.learning_rate = np.float32(lr)

    def init(self, num_params, xp=None):
        """Allocate fresh states for ``num_params`` weights (in ``xp``, default: the constructor's)."""
        if xp is not None:
            self._use(xp)
        self._num_params = int(num_params)
        self._states = {name: self._initial_state(name) for name in self.state_names}
        self._rate = self.xp.zeros((), dtype=np.float32)
        return self

    def _initial_state(self, name):
        return self.xp.zeros(self._num_params, dtype=self.state_dtype)

    def update(self, weights, grads, lr=None):
        """One step in place. ``weights`` (N,) float32; ``grads`` (N,) float32 or float16.

        ``lr``, if given, is set as by ``set_learning_rate`` first.
        """
        if lr is not None:
            self.set_learning_rate(lr)
        if self._states is None:
            self.init(weights.size)
        self.prepare()
        self.run(weights, grads)

    def prepare(self):
        """The host half of ``update`` (after ``init``): count the step, write its rate to the device."""
        self._require_states()
        rate = self._next_rate()
        self._backend.write(self._rate, rate)   # on a GPU: one launch, no copy from the host, nothing waits

    def _next_rate(self):
        """The float32 rate of the next ``run`` (the learning rate; Adam counts t and bias-corrects it)."""
        return self.learning_rate

    def run(self, weights, grads):
        """The device half of ``update``: one step (the op ``dense_update``) with the rate ``prepare`` wrote."""
        self._check_buffers(weights, grads)
        self.ops.dense_update(self.type_name, weights, grads, self.scaler, self._rate, *self.state_arrays(),
                              **self.constants())

    def constants(self):
        """The step's constant hyper-parameters (float32) by name: ``dense_update``'s keyword arguments."""
        return {name: getattr(self, name) for name in self.constant_names}

    def _check_buffers(self, weights, grads):
        if weights.dtype != np.float32:
            raise ValueError(f"weights must be float32, got {weights.dtype}")
        if grads.dtype not in (np.float32, np.float16):
            raise ValueError(f"grads must be float32 or float16, got {grads.dtype}")
        if weights.shape != grads.shape or weights.size != self._num_params:
            raise ValueError(f"{self.type_name}: weights {weights.shape} and grads {grads.shape} "
                             f"must both hold the optimizer's {self._num_params} parameters")

    @staticmethod
    @abstractmethod
    def step(xp, weights, g, rate, *states, **constants):
        """Update ``weights`` (N,) float32 and ``states`` ((N,) float32, ``state_names`` order) in place
        from the float32 gradient ``g`` (N,), already divided by S (the step may overwrite it); ``rate``:
        0-d float32, lr or Adam's alpha_t; ``constants``: the ``constant_names`` values (float32)."""

    # -- state file ------------------------------------------------------------------------

    def _require_states(self):
        if self._states is None:
            raise RuntimeError(f"{self.type_name} optimizer has no state yet: call init(num_params) "
                               "or update() first")

    def persistent_arrays(self):
        """The device arrays ``run`` reads and writes across steps (states, rate), for a CUDA graph's check."""
        self._require_states()
        return [self._rate] + [self._states[name] for name in self.state_names]

    def state_arrays(self):
        """The live state arrays, in state-file order (``state_names``); [] for SGD."""
        self._require_states()
        return [self._states[name] for name in self.state_names]

    def load_state_arrays(self, arrays):
        """Copy ``arrays`` (state-file order, each (N,)) into the states, allocating if needed."""
        arrays = list(arrays)
        if len(arrays) != len(self.state_names):
            raise ValueError(f"{self.type_name} has {len(self.state_names)} state arrays "
                             f"{self.state_names}, got {len(arrays)}")
        if self._states is None and arrays:
            self.init(arrays[0].size)
        for name, a in zip(self.state_names, arrays):
            if a.size != self._num_params:
                raise ValueError(f"{self.type_name} state {name!r} must have {self._num_params} "
                                 f"elements, got {a.size}")
            self._states[name][...] = self.xp.asarray(a).reshape(-1)

    def state_bytes(self, dtype=None) -> bytes:
        """The dense optimizer state file's content (``dtype``: the file's, ``file_dtype``, by default;
        float32 gives the exact states of a mixed-precision run, which the fp16 file rounds)."""
        return b"".join(to_host(a).astype(dtype or self.file_dtype).tobytes() for a in self.state_arrays())

    def load_state_bytes(self, data, dtype=None):
        """Load a dense optimizer state file's content (bytes-like) after ``init``.

        Its size must be exactly ``len(state_names) * N * itemsize`` of ``dtype`` (default
        ``file_dtype``: float32, or float16 in mixed precision).
        """
        data = memoryview(data).cast("B")
        if not self.state_names:
            if len(data):
                raise ValueError(f"{self.type_name} has no state, so its state file is empty; "
                                 f"got {len(data)} bytes")
            return
        self._require_states()
        n, dtype = self._num_params, np.dtype(dtype or self.file_dtype)
        expected = len(self.state_names) * n * dtype.itemsize
        if len(data) != expected:
            raise ValueError(f"{self.type_name} dense optimizer state for {n} parameters must be "
                             f"{expected} bytes ({' then '.join(self.state_names)}, {n} {dtype.name} "
                             f"values each), got {len(data)}")
        flat = np.frombuffer(data, dtype=dtype)
        self.load_state_arrays([flat[i * n:(i + 1) * n] for i in range(len(self.state_names))])

    def __repr__(self):
        return (f"<{type(self).__name__} lr={float(self.learning_rate)} scaler={float(self.scaler)} "
                f"mixed_precision={self.mixed_precision} num_params={self.num_params}>")


class SGDOptimizer(DenseOptimizer):
    """Plain SGD: ``w -= lr * g``. No state."""

    type_name = "SGD"

    @staticmethod
    def step(xp, weights, g, lr):
        g *= lr
        weights -= g


class MomentumSGDOptimizer(DenseOptimizer):
    """Momentum SGD: ``m = mu*m - lr*g; w += m``. State: momentum."""

    type_name = "MomentumSGD"
    state_names = ("momentum",)
    constant_names = ("momentum_factor",)

    def __init__(self, learning_rate, momentum_factor, **common):
        super().__init__(learning_rate, **common)
        self.momentum_factor = np.float32(momentum_factor)

    @staticmethod
    def step(xp, weights, g, lr, momentum, *, momentum_factor):
        weights += momentum_step(momentum, g, lr, momentum_factor)   # m changes in place


class NesterovOptimizer(DenseOptimizer):
    """Nesterov momentum: ``a_new = mu*a - lr*g; w += -mu*a + (1+mu)*a_new``. State: accumulator."""

    type_name = "Nesterov"
    state_names = ("accumulator",)
    constant_names = ("momentum_factor",)

    def __init__(self, learning_rate, momentum_factor, **common):
        super().__init__(learning_rate, **common)
        self.momentum_factor = np.float32(momentum_factor)

    @staticmethod
    def step(xp, weights, g, lr, accumulator, *, momentum_factor):
        a_new, change = nesterov_step(accumulator, g, lr, momentum_factor)
        accumulator[...] = a_new
        weights += change


class AdamOptimizer(DenseOptimizer):
    """Adam, epsilon-hat form. States: m then v.

    ``t`` counts update calls (the first update uses t = 1). The state file does not hold ``t``,
    so an optimizer that loads one restarts bias correction at t = 1, as HugeCTR does; set
    ``t`` to the number of steps already taken to continue the original run exactly.
    """

    type_name = "Adam"
    state_names = ("m", "v")
    constant_names = ("beta1", "beta2", "epsilon")

    def __init__(self, learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-7, **common):
        super().__init__(learning_rate, **common)
        for name, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0 <= beta < 1:
                raise ValueError(f"{name} must be in [0, 1), got {beta!r}")
        self.beta1 = np.float32(beta1)
        self.beta2 = np.float32(beta2)
        self.epsilon = np.float32(epsilon)
        self.t = 0

    def _next_rate(self):
        self.t += 1
        # HugeCTR computes the bias-corrected step size in double, then rounds it to float.
        return np.float32(adam_step_size(self.learning_rate, self.beta1, self.beta2, self.t))

    @staticmethod
    def step(xp, weights, g, alpha_t, m, v, *, beta1, beta2, epsilon):
        b1, b2, one = beta1, beta2, np.float32(1)
        t = scratch(xp, "dense_update.t", g.shape, np.float32)
        # The states (float32) change in place, block by block (cache_blocks); every product is rounded
        # in the order of m = b1*m + (1-b1)*g, v = b2*v + ((1-b2)*g)*g, w -= (alpha_t*m)/(sqrt(v)+eps).
        for i in cache_blocks(xp, weights.size):
            m_i, v_i, g_i, t_i = m[i], v[i], g[i], t[i]
            m_i *= b1
            m_i += xp.multiply(g_i, one - b1, out=t_i)
            v_i *= b2
            xp.multiply(g_i, one - b2, out=t_i)
            t_i *= g_i
            v_i += t_i
            denom = xp.sqrt(v_i, out=t_i)
            denom += epsilon
            step = xp.multiply(m_i, alpha_t, out=g_i)     # g is not needed any more
            step /= denom
            weights[i] -= step


class AdaGradOptimizer(DenseOptimizer):
    """AdaGrad (HugeCTR 3.1): ``acc += g*g; w -= lr*g/(sqrt(acc)+eps)``. State: accumulator.

    The accumulator starts at ``initial_accu_value`` (HugeCTR 3.1 memsets its bytes instead,
    which gives 0 for values below 1 and tiny denormals otherwise).
    """

    type_name = "AdaGrad"
    state_names = ("accumulator",)
    constant_names = ("epsilon",)

    def __init__(self, learning_rate, initial_accu_value=0.0, epsilon=1e-7, **common):
        super().__init__(learning_rate, **common)
        self.initial_accu_value = np.float32(initial_accu_value)
        self.epsilon = np.float32(epsilon)

    def _initial_state(self, name):
        return self.xp.full(self._num_params, self.initial_accu_value, dtype=self.state_dtype)

    @staticmethod
    def step(xp, weights, g, lr, accumulator, *, epsilon):
        t = scratch(xp, "dense_update.t", g.shape, np.float32)
        accumulator += xp.multiply(g, g, out=t)
        denom = xp.sqrt(accumulator, out=t)
        denom += epsilon
        g *= lr
        g /= denom
        weights -= g


DENSE_OPTIMIZERS = {cls.type_name: cls for cls in (
    AdamOptimizer, AdaGradOptimizer, MomentumSGDOptimizer, NesterovOptimizer, SGDOptimizer)}


@reference_op
def dense_update(xp, rule, weights, grads, scaler, rate, *states, **constants):
    """One step of the dense optimizer ``rule`` (a key of ``DENSE_OPTIMIZERS``), in place.

    weights (N,) float32; grads (N,) float32 or float16, times the loss scaler ``scaler`` (left intact);
    rate: 0-d float32, lr or Adam's alpha_t (``DenseOptimizer.prepare``); states: the rule's (N,) float32
    states in ``state_names`` order; constants: its ``constant_names`` values (float32). All arithmetic
    is float32: g = float32(grads) / float32(scaler), then the rule's ``step``.
    """
    if rule not in DENSE_OPTIMIZERS:
        raise ValueError(f"dense_update: unknown rule {rule!r}; expected one of {', '.join(DENSE_OPTIMIZERS)}")
    constants = {name: np.float32(value) for name, value in constants.items()}
    # into scratch: the caller's gradient stays intact, and NumPy reuses the buffer from step to step
    g = xp.divide(grads, np.float32(scaler), out=scratch(xp, "dense_update.g", grads.shape, np.float32),
                  dtype=np.float32)
    DENSE_OPTIMIZERS[rule].step(xp, weights, g, rate, *states, **constants)


def _arguments(cls):
    """Keyword names ``cls`` accepts, its own and DenseOptimizer's."""
    names = set()
    for fn in (cls.__init__, DenseOptimizer.__init__):
        names.update(inspect.signature(fn).parameters)
    return names - {"self", "common"}


# atomic_update only affects sparse SGD; every type ignores the names it does not use, as
# HugeCTR's CreateOptimizer does.
HPARAM_NAMES = frozenset({"atomic_update"}.union(*map(_arguments, DENSE_OPTIMIZERS.values())))


def create_dense_optimizer(type, **hparams) -> DenseOptimizer:
    """Build a dense optimizer from its HugeCTR type name and hyper-parameters.

    ``type``: "Adam", "AdaGrad", "MomentumSGD", "Nesterov" or "SGD". ``hparams``: learning_rate
    (required), beta1, beta2, epsilon, momentum_factor, initial_accu_value, atomic_update,
    scaler, mixed_precision, xp; names the type does not use are ignored.
    """
    if type not in DENSE_OPTIMIZERS:
        raise ValueError(f"unknown dense optimizer type {type!r}; expected one of "
                         f"{', '.join(DENSE_OPTIMIZERS)}")
    unknown = sorted(set(hparams) - HPARAM_NAMES)
    if unknown:
        raise TypeError(f"unknown optimizer hyper-parameter(s) {unknown}; expected some of "
                        f"{sorted(HPARAM_NAMES)}")
    cls = DENSE_OPTIMIZERS[type]
    accepted = _arguments(cls)
    return cls(**{k: v for k, v in hparams.items() if k in accepted})
