"""NumPy fast path of the training loop: the pure path's arithmetic, with no per-step allocation.

:func:`train.train` asks :func:`plan` for a fast epoch once per call; where the arrays are
writeable NumPy arrays and the configuration is one covered here, each epoch runs
:meth:`Plan.epoch` instead of the generic ``forward -> backward -> optimizer.update`` loop.
It computes the same quantities (DESIGN.md, section 1) as :mod:`network` and :mod:`optim`:

- every array of a step lives in a buffer made once per call and is written with ``out=``;
- each hidden layer's output is held as ``[1 | Z[l]]``, so that one GEMM gives
  ``A = [1 | Z] @ W.T`` (the bias ``w_j0 x_0`` inside the sum) and one GEMM gives the whole
  gradient ``grads = delta.T @ [1 | Z]`` (its column 0 is ``sum_n delta_n``): no bias pass, no
  ``concat``; small data sets are gathered once per epoch as ``[1 | X]`` likewise;
- large data sets are gathered a batch at a time. A shuffled batch goes beside the ones,
  into ``[1 | X_b]``, where one pass copies it there (the kernel's gather, torch's
  ``index_select``): layer 0 is then one GEMM like the others. Else ``X_b`` stands alone (in
  order, a step reads ``X``'s own rows; NumPy's take into a strided ``out`` buffers a second
  copy) and layer 0's bias joins apart: the output rows are set to ``[1 | b]``, the GEMM adds
  ``X_b @ W[:, 1:].T`` (``beta = 1``) and the bias gradient is ``delta.T @ 1``. With take's
  two copies, beside the ones made workload A's epoch 8-12 % slower; with the kernel's one,
  six paired runs of its fit (31-101 repeats each) took 0.98-1.01x the time of the bias
  apart, 0.988x on average: no bias pass, no bias GEMM;
- backward takes ``h'`` from the stored ``Z`` (``1 - Z**2`` for tanh) and writes
  ``delta = h' * (delta @ W[:, 1:])`` over ``Z`` in place, once the gradient GEMM of the layer
  above has read ``Z``: no ``h'`` buffer; element-wise steps run over whole
  ``[1 | Z]``-shaped buffers, contiguous, column 0 included and then ignored;
- without the L2 term, plain SGD adds ``-eta delta.T @ [1 | Z]`` to ``W`` inside the GEMM
  (``beta = 1``), and classical momentum to ``V`` (``beta = mu``; then ``W += V``), where
  NumPy's own BLAS is reachable and the layer is large; everywhere else the gradient lands
  in a buffer, the L2 term joins it, and the optimizer's step (SGD, momentum, Nesterov,
  Adam) updates ``W`` and its state in place, right after the layer's gradient: the pure
  path's operations in its order, the same numbers, and no temporary;
- where the install compiled ``_kernels.c``, the optimizer's step and ``h'(a) * P`` are one
  pass each (the same operations, rounded the same way: the same numbers); else NumPy
  ufunc passes do them, the optimizer's a block of rows at a time so that a block's passes
  stay in cache (``XPMLP_KERNELS=0`` chooses these);
- with the kernels, the passes between the products over large arrays (``h`` as NumPy's own
  ufunc loop, ``h'(a) * P``, the batch gather, the optimizer's step) run in parts on the
  threads of NumPy's BLAS (OpenBLAS), which wait there between the products, as many as
  it may use (threadpoolctl's limits hold): each number is computed as on one thread, the
  L2 penalty's sum included. On a 2-core Xeon, workload A's epoch went from 94 % to 97 % of
  the GEMM-only limit's speed, and workload D's fit (Adam) from 314 to 298 ms;
- sample weights are gathered with the batch; the output error is scaled by
  ``w_n = s_n / S`` instead of ``1/N`` and the L2 term by ``alpha / S`` (``S = sum s_n`` of
  the batch), as in :func:`train.loss_and_gradients`.

Torch CPU tensors take the same plan (:class:`ViewsPlan`) on NumPy views of their memory,
trained in place. Where torch's BLAS is MKL on an Intel CPU (:class:`TorchPlan`), the
products run on it
(workload A's eight GEMMs ran 1.2-1.3x as fast on it as on NumPy's OpenBLAS on a 2-core
Xeon) and, on large arrays, ``h`` and the batch gather on torch's threads; elsewhere
(MKL's products on a 2-core AMD EPYC ran 0.5-0.6x as fast) everything runs as for NumPy.

The two paths differ only in the order of floating-point operations (the bias joins the dot
product; the epoch loss sums per-sample losses and the L2 term apart; an update inside the
GEMM rounds once where ``W + (-eta G)`` rounds twice); ``tests/test_fastpath.py`` checks
that they agree to ``rtol=1e-12`` in float64. Set ``XPMLP_FAST=0`` (or ``ENABLED = False``)
to run the pure Array API path everywhere.
"""

from __future__ import annotations

import ctypes
import glob
import importlib
import math
import os
import sys
from functools import cache, partial
from typing import Any

import array_api_compat
import numpy as np

from . import _interrupt, optim
from ._checks import env_off
from .activations import ACTIVATIONS
from .backend import torch_blas
from .objectives import CLIPPED, OUTPUTS

ENABLED = not env_off("XPMLP_FAST")
PREGATHER_BYTES = 8 * 2**20  # gather a whole epoch at once when its copy is this small
GEMM_UPDATE_SIZE = 16384  # fuse the SGD update into the gradient GEMM from this many weights
UPDATE_BLOCK = 32768  # elements per block of rows of an optimizer step (Adam: a dozen passes)
PASS_PART_BYTES = 65536  # a pass's least part worth a thread: 2 parts from 128 KiB. Below,
# 2 parts saved an idle 2-core machine 3 us on tanh and delta of 64 KiB, but with another
# process busy on a core they waited on a descheduled thread: 15 epochs of [20, 64, 1],
# batch 200 (100 KiB passes) took a median 8.9 ms, at most 165, against 5.0 and 13 in one
TORCH_GEMM_SIZE = 65536  # multiply-adds from which a TorchPlan's product runs on torch's BLAS
TORCH_PASS_SIZE = 32768  # elements from which a TorchPlan's pass runs on torch's threads


# delta = h'(a) * P from the stored z = h(a) and P = delta_next @ W[:, 1:], written over Z
# (its last use, the gradient GEMM of the layer above, is done by then), as lists of
# (ufunc, args) with ``out`` last. Every step is in place: no h' buffer, no temporary.
def _delta_tanh(Z, P):
    return [(np.square, (Z, Z)), (np.subtract, (1, Z, Z)), (np.multiply, (Z, P, Z))]


def _delta_logistic(Z, P):  # sigma (1 - sigma) P
    return [(np.multiply, (P, Z, P)), (np.subtract, (1, Z, Z)), (np.multiply, (Z, P, Z))]


def _delta_relu(Z, P):  # a > 0 exactly where z = max(a, 0) > 0
    return [(np.greater, (Z, 0, Z)), (np.multiply, (Z, P, Z))]


def _delta_identity(Z, P):
    return [(np.copyto, (Z, P))]


DELTAS = {
    "identity": _delta_identity,
    "tanh": _delta_tanh,
    "logistic": _delta_logistic,
    "relu": _delta_relu,
}
# _kernels.c's codes
DELTA_KINDS = {"identity": 0, "tanh": 1, "logistic": 2, "relu": 3}
RULES = {"sgd": 0, "momentum": 1, "nesterov": 2, "adam": 3}
KERNEL_TYPES = {"f": 0, "d": 1}
KERNELS_VERSION = 4  # the layout of the words _kernels.run reads


# ---------------------------------------------------------------- NumPy's own BLAS


@cache
def _openblas():
    """The OpenBLAS that NumPy's wheels link (``numpy.libs``), or None elsewhere."""
    libdir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libdir, "libscipy_openblas64_*"))):
        try:
            return ctypes.CDLL(path)  # already loaded by NumPy: the same handle
        except OSError:
            continue
    return None


class _Gemm:
    """The CBLAS ``?gemm`` that NumPy itself links (OpenBLAS wheels), so that calls made
    here share NumPy's BLAS threads; absent elsewhere (then ``find`` gives None)."""

    _cache: dict = {}

    @classmethod
    def find(cls, dtype) -> Any:
        key = np.dtype(dtype).char
        if key not in cls._cache:
            cls._cache[key] = cls._load(key)
        return cls._cache[key]

    @staticmethod
    def _load(char):
        prefix = {"f": "s", "d": "d"}.get(char)
        fn = getattr(_openblas(), f"scipy_cblas_{prefix}gemm64_", None) if prefix else None
        if fn is None:
            return None
        real = ctypes.c_float if char == "f" else ctypes.c_double
        enum, i64, ptr = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p  # ILP64 build
        # (order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
        fn.argtypes = [enum] * 3 + [i64] * 3 + [real, ptr, i64, ptr, i64, real, ptr, i64]
        fn.restype = None
        return fn


_NOTRANS, _TRANS = 111, 112


def _operand(M):
    """``(trans, ld)`` of a 2-D view for row-major CBLAS: a row-major matrix (unit column
    stride) or the transpose of one (unit row stride); None for any other layout."""
    if M.ndim != 2 or not M.flags.aligned or any(s % M.itemsize for s in M.strides):
        return None
    (r, c), (s0, s1) = M.shape, (s // M.itemsize for s in M.strides)
    if (s1 == 1 or c == 1) and s0 >= max(c, 1):
        return _NOTRANS, max(s0, 1)
    if (s0 == 1 or r == 1) and s1 >= max(r, 1):
        return _TRANS, max(s1, 1)
    return None


class _GemmCall:
    """``C <- alpha A @ B + beta C`` on fixed views through NumPy's CBLAS, its arguments
    worked out once; ``call(alpha, a=..., b=...)`` takes this step's array for ``A`` or
    ``B``, laid out like the one it replaces (a batch in its buffer)."""

    def __init__(self, fn, A, B, C, beta):
        # BLAS trusts these numbers with raw pointers: a mismatch must stop here, even under -O
        if not (
            _GemmCall.usable(A, B, C)
            and A.shape[1] == B.shape[0]
            and C.shape == (A.shape[0], B.shape[1])
            and A.dtype == B.dtype == C.dtype
        ):
            raise ValueError(f"no GEMM for shapes {A.shape} @ {B.shape} -> {C.shape}")
        (ta, lda), (tb, ldb), (_, ldc) = _operand(A), _operand(B), _operand(C)
        self.fn, self.head = fn, (101, ta, tb, C.shape[0], C.shape[1], A.shape[1])
        self.a, self.lda, self.b, self.ldb = A.ctypes.data, lda, B.ctypes.data, ldb
        self.tail = (beta, C.ctypes.data, ldc)

    @staticmethod
    def usable(*arrays):
        ops = [_operand(M) for M in arrays]
        return all(op is not None for op in ops) and ops[-1][0] == _NOTRANS

    def __call__(self, alpha, a=None, b=None):
        pa = self.a if a is None else a.ctypes.data
        pb = self.b if b is None else b.ctypes.data
        self.fn(*self.head, float(alpha), pa, self.lda, pb, self.ldb, *self.tail)


# ---------------------------------------------------------------- compiled kernels


def why_no_kernels() -> str | None:
    """Why the compiled kernels are not to be used (``xpmlp info`` says it); None where
    they are."""
    if env_off("XPMLP_KERNELS"):
        return "XPMLP_KERNELS"
    try:
        built = getattr(importlib.import_module("xpmlp._kernels"), "VERSION", None)
    except ImportError:
        return "not compiled at install"
    # a build of an older _kernels.c (an editable install not rebuilt) reads other words
    if built != KERNELS_VERSION:
        return f"built from an older _kernels.c, version {built}: pip install -e . rebuilds it"
    return None


def _load_kernels():
    """``_kernels.run``, the fused kernels of ``_kernels.c``, where the install compiled
    them and ``XPMLP_KERNELS`` is not off; else None, and the plan runs ufunc passes (the
    same numbers, in more passes over memory). Where NumPy links OpenBLAS, large passes run
    in parts on its threads."""
    if why_no_kernels() is not None:
        return None
    _kernels = importlib.import_module("xpmlp._kernels")
    _kernels.set_error_handler(_report_fp_errors)
    names = ("gotoblas_pthread", "scipy_openblas_get_num_threads64_")
    fns = [getattr(_openblas(), name, None) for name in names]
    if all(fns):
        _kernels.set_pool(*(ctypes.cast(f, ctypes.c_void_p).value for f in fns))
    return _kernels.run


def _loop(ufunc, dtype):
    """``(function, data)`` addresses of NumPy's own loop of ``ufunc`` (unary, or binary
    with a scalar) on ``dtype``, for the kernels to call in place of the ufunc: only where it
    gives the ufunc's numbers bit for bit on a sample, specials included; else None."""
    key = (ufunc.__name__, np.dtype(dtype).char)
    if key not in _LOOPS:
        from . import _kernels

        found = _kernels.loop(ufunc, np.dtype(dtype).num)
        if found is not None:
            dt = np.dtype(dtype)
            x = np.concatenate(
                [np.linspace(-20, 20, 997), [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40]]
            ).astype(dt)
            s = np.zeros((), dt)
            want = ufunc(x) if ufunc.nin == 1 else ufunc(x, s)
            got = x.copy()
            scalar = s.ctypes.data if ufunc.nin == 2 else 0
            with np.errstate(all="ignore"):
                _kernels.run(_words(2, dt, got.size, got.ctypes.data, *found, scalar))
            if got.tobytes() != want.tobytes():
                found = None
        _LOOPS[key] = found
    return _LOOPS[key]


_LOOPS: dict = {}


def _words(op, dtype, *words, part=0):
    """``_kernels.run``'s argument: its 16 int64 words for kernel ``op`` (0 the step, 1
    delta, 2 a ufunc's loop, 3 the gather) on ``dtype``; ``part``: :meth:`Plan._part`."""
    words = (op, KERNEL_TYPES[np.dtype(dtype).char], *words)
    return np.array(words + (0,) * (15 - len(words)) + (part,), np.int64).tobytes()


def _squares(W) -> float:
    """``sum_j>0 W[r, j]**2`` summed in double as the step's kernel sums it (8 lanes over
    each row, its tail in lane 0, the lanes in turn, then the rows in order), in NumPy."""
    sq = np.square(W[:, 1:], dtype=np.float64)  # (double) w * w, as the kernel's
    rows, n = sq.shape
    m = n - n % 8
    lanes = np.zeros((rows, 8))
    np.add.reduce(sq[:, :m].reshape(rows, m // 8, 8), axis=1, out=lanes)  # in turn
    for j in range(m, n):
        lanes[:, 0] += sq[:, j]
    rows_sum = lanes[:, 0].copy()
    for k in range(1, 8):
        rows_sum += lanes[:, k]
    return float(np.cumsum(rows_sum)[-1]) if rows else 0.0  # a sum in order


def _report_fp_errors(flags):
    """A kernel's floating-point errors (1 divide by zero, 2 overflow, 4 invalid), reported
    as a ufunc reports them: by the same error in a NumPy operation, under the caller's
    ``np.errstate`` (a warning by default, ``FloatingPointError`` where it says raise)."""
    one = np.ones(())
    if flags & 1:
        np.divide(one, 0.0)
    if flags & 2:
        np.multiply(np.finfo(np.float64).max * one, 2.0)
    if flags & 4:
        np.subtract(np.inf * one, np.inf)


KERNELS = _load_kernels()


# ---------------------------------------------------------------- the plan


def plan(
    weights, X, T, *, sample_weight, activation, output, optimizer, opt_state, config, xp
) -> Plan | None:
    """A :class:`Plan` for this training call (a :class:`ViewsPlan` or :class:`TorchPlan`
    for torch CPU tensors), or ``None`` where the pure path must run."""
    if not ENABLED or config.clip_norm:
        return None
    views = None
    if type(X) is not np.ndarray:  # torch CPU tensors: the plan runs on NumPy views of them
        state = [A for group in _state_groups(opt_state) for A in group]
        views = _TorchViews.of([X, T, *weights, sample_weight, *state])
        if views is None:
            return None
        X, T, sample_weight = views.view(X), views.view(T), views.view(sample_weight)
        weights = [views.view(W) for W in weights]
        xp = array_api_compat.array_namespace(X)
    arrays = [X, T, *weights]
    if not all(type(a) is np.ndarray and a.ndim == 2 for a in arrays):
        return None
    dtype = X.dtype
    if dtype not in (np.float32, np.float64) or any(a.dtype != dtype for a in arrays):
        return None
    sw = sample_weight
    if sw is not None and not (type(sw) is np.ndarray and sw.ndim == 1 and sw.dtype == dtype):
        return None
    if not all(W.flags.writeable for W in weights):
        return None
    if activation.name not in DELTAS or ACTIVATIONS.get(activation.name) is not activation:
        return None
    if not any(output is o for o in (*OUTPUTS.values(), *CLIPPED.values())):
        return None
    kind = _kind(optimizer)
    if kind is None:
        return None  # a user's optimizer may keep the gradient arrays we reuse
    # the state's form decides the pure update's rule (optim.sgd steps with velocities
    # whenever it is given some): the plan takes the form its optimizer makes
    if kind == "adam":
        if not isinstance(opt_state, optim.AdamState):
            return None
    elif not isinstance(opt_state, optim.SGDState) or (
        (opt_state.velocities is None) != (optimizer.update.hyperparams["momentum"] == 0.0)
    ):
        return None
    args = (weights, X, T, sample_weight, activation, output, optimizer, config, xp)
    if views is None:
        return Plan(*args)
    return (TorchPlan if torch_blas() else ViewsPlan)(views, *args)


def _kind(optimizer) -> str | None:
    """``"sgd"`` or ``"adam"`` for the optimizers of :mod:`optim` (their ``update`` carries
    its rule and hyper-parameters), whose steps :meth:`Plan._rule` repeats; else None."""
    rule = optim.rule_of(optimizer)
    return rule[0] if rule is not None and rule[0] in ("sgd", "adam") else None


def _state_groups(opt_state) -> list:
    """The lists of arrays of an :mod:`optim` state: Adam's ``[m, v]``, momentum's
    ``[velocities]``; none for plain SGD or another kind of state."""
    if isinstance(opt_state, optim.AdamState):
        return [opt_state.m, opt_state.v]
    if isinstance(opt_state, optim.SGDState) and opt_state.velocities is not None:
        return [opt_state.velocities]
    return []


def _state_of(opt_state, groups, t=None):
    """A state of ``opt_state``'s kind holding ``groups`` (and Adam's step count ``t``)."""
    if isinstance(opt_state, optim.AdamState):
        return optim.AdamState(opt_state.t if t is None else t, *groups)
    return optim.SGDState(groups[0] if groups else None)


def _map_state(opt_state, f):
    """The :mod:`optim` state with ``f`` applied to each of its arrays."""
    return _state_of(opt_state, [[f(A) for A in g] for g in _state_groups(opt_state)])


class Plan:
    """Buffers and views for one :func:`train.train` call."""

    pooled = True  # large kernel passes in parts on the BLAS's threads (:meth:`_part`)

    def __init__(self, weights, X, T, sample_weight, activation, output, optimizer, config, xp):
        batch_size = config.batch_size
        N, D = X.shape
        K = T.shape[1]
        B = N if batch_size is None else min(batch_size, N)
        dt = X.dtype
        self.X, self.T, self.N, self.B, self.xp = X, T, N, B, xp
        self.bounds = [(s, min(s + B, N)) for s in range(0, N, B)]
        self.activation = activation
        self.kernels = KERNELS  # compiled, or None: ufunc passes
        self.zero = np.zeros((), dtype=X.dtype)  # relu's max(a, 0), for the kernel's loop
        self.gather_rows = 0  # the epoch's rows per part of the kernel's gather; 0: none
        self.output = output
        # the step's rule (a key of RULES) and its constants for the kernel, rounded to dt
        # as NumPy rounds a Python float operand
        self.hp = hp = optimizer.update.hyperparams
        if _kind(optimizer) == "adam":
            self.rule, b1, b2 = "adam", hp["beta_1"], hp["beta_2"]
            self.consts = np.array([b1, 1 - b1, b2, 1 - b2, hp["epsilon"]], dtype=dt)
        else:
            mu = hp["momentum"]
            self.rule = "sgd" if mu == 0.0 else "nesterov" if hp["nesterov"] else "momentum"
            self.consts = np.array([mu], dtype=dt)
        self.plain = self.rule == "sgd"  # W <- W - eta G
        self.alpha = config.alpha
        sizes = [D] + [W.shape[0] for W in weights]
        L = len(weights)
        self.blas = _Gemm.find(dt)
        # Small data: the whole epoch gathered at once into [1 | X], a step slices views.
        # Else one batch at a time: shuffled, into [1 | X_b] where one pass copies rows
        # into a strided buffer (the kernel, torch; NumPy's take would copy twice), so that
        # layer 0 is one GEMM like the others; else X_b alone (in order, X's own rows), and
        # layer 0's bias is added apart.
        self.pregather = N * (D + 1 + K) * dt.itemsize <= PREGATHER_BYTES
        self.ones_x = self.pregather or (config.shuffle and self._copies_rows(X))
        rows = N if self.pregather else B
        self.Xg = np.empty((rows, D + 1 if self.ones_x else D), dtype=dt)
        if self.ones_x:
            self.Xg[:, 0] = 1
        self.Tg = np.empty((rows, K), dtype=dt)
        # sample weights s_n: gathered like T; w_n = s_n / S of each batch (S = sum s_n), and
        # each sample's factor n_b w_n in the epoch's loss sum (train._epoch's total)
        self.sw, self.by_size = sample_weight, config.loss_by_batch_size
        weighted = sample_weight is not None
        self.Sg = np.empty(rows if weighted else 0, dtype=dt)
        self.wb = np.empty(B if weighted else 0, dtype=dt)
        self.lw = np.empty(N if weighted else 0, dtype=dt)
        self.gathered = False
        # [1 | Z[l]] of every hidden layer, which backward overwrites with delta[l], and one
        # buffer P = delta @ W[:, 1:] per width, shared by the layers of that width. The
        # element-wise steps run over whole buffers, contiguous (several times faster than
        # over the strided Z); the ones are written again after h. Column 0 of P stays 0.
        hidden = sizes[1:-1]
        self.Z1 = [np.ones((B, n + 1), dtype=dt) for n in hidden]
        self.P = {n: np.zeros((B, n + 1), dtype=dt) for n in hidden}
        self.hidden = hidden
        self.bias_row = np.ones(sizes[1] + 1 if L > 1 else K, dtype=dt)  # [1 | b] or b
        self.ones = np.ones((B, 1), dtype=dt)
        self.Aout = np.empty((B, K), dtype=dt)
        self.identity = output.name == "identity"
        self.Ybuf = None if self.identity else np.empty((B, K), dtype=dt)
        self.K1 = K == 1
        self.losses = np.empty((N, 1) if K == 1 else N, dtype=dt)
        # reported loss: Config.loss_scale times the data term; 1/2 of squared error here
        self.loss_scale = config.loss_scale * (0.5 if output.name == "identity" else 1.0)
        # SGD: -eta delta.T @ [1 | Z] added inside the GEMM, no gradient buffer (_fused_target)
        self.fused = [
            self.rule in ("sgd", "momentum") and not self.alpha
            and W.size >= GEMM_UPDATE_SIZE and self._gemm_ok(W)
            for W in weights
        ]  # fmt: skip
        self.G = [None if f else np.empty(W.shape, dtype=dt) for W, f in zip(weights, self.fused)]
        # two scratch blocks for the optimizer's ufunc step, as large as its largest block of
        # rows (_update_ops); layers updated in the GEMM or by the kernel, and plain SGD's
        # ufunc step, need none
        blocks = [
            min(W.shape[0], max(1, UPDATE_BLOCK // W.shape[1])) * W.shape[1]
            for W, f in zip(weights, self.fused)
            if not f and not self.kernels and (self.alpha or not self.plain)
        ]
        self.scratch = [np.empty(max(blocks, default=0), dtype=dt) for _ in range(2)]
        self.L = L
        self.neg_lr = np.zeros((), dtype=dt)  # the step's -eta (schedules and Adam change it)
        self.lr = config.learning_rate
        self.t = 0  # Adam's step count
        self.l2c = np.zeros((), dtype=dt)  # the step's alpha / S
        # the epoch's sum of n_b c_b penalty_b (train._epoch's L2 part), and this step's
        # n_b c_b / 2 by which the kernel adds the squared weights it passes over
        self.penalty = np.zeros(2)
        self.sq = np.zeros(max(W.shape[0] for W in weights))  # the kernel's rows of it
        self.per_step = bool(self.alpha) or self.rule == "adam" or weighted  # _begin_step
        self._bind(weights, [])

    def _bind(self, weights, state):
        """Work on ``weights`` and the optimizer's ``state`` (lists of arrays shaped like
        them); an array this plan cannot update in place (a callback's replacement:
        read-only, of another dtype or layout) is trained as a copy, as the pure path makes
        new arrays where it cannot write."""
        dt = self.X.dtype

        def own(W):
            ok = type(W) is np.ndarray and W.dtype == dt and W.flags.writeable
            ok = ok and W.flags.c_contiguous and W.flags.aligned  # flat blocks, raw pointers
            return W if ok else np.array(W, dt, order="C")

        weights = [own(W) for W in weights]
        self.W, self.bound = weights, tuple(weights)  # the list is the caller's to change
        self.S = [[own(A) for A in group] for group in state]
        self.bound_state = tuple(A for group in self.S for A in group)  # what epoch returns
        self.Wt = [W.T for W in weights]
        self.Wh = [W[:, 1:] for W in weights]
        self._programs = {}

    def _program(self, n):
        """The step for batch size ``n`` as lists of ``(ufunc, args)`` on fixed buffers, and
        layer 0's two functions of this step's batch ``x`` (``[1 | X_b]`` or ``X_b``)."""
        L, Wt, Wh, G = self.L, self.Wt, self.Wh, self.G
        Z1 = [Z[:n] for Z in self.Z1]
        Z = [Z[:, 1:] for Z in Z1]
        flat = lambda bufs: [b[:n].reshape(-1) for b in bufs]  # noqa: E731 (row slices: views)
        Zf = flat(self.Z1)
        P1 = [self.P[m][:n] for m in self.hidden]
        Pf = flat(P1)
        A = self.Aout[:n]
        Y = A if self.identity else self.Ybuf[:n]
        x = self.Xg[:n]  # the layout of every batch

        def grad_ops(l, d, inp):
            if self.fused[l]:
                call = self._gemm(d.T, inp, *self._fused_target(l))
                return [(call, (self.neg_lr,)), *self._update_ops(l, n)]
            return [self._mm(d.T, inp, G[l]), *self._update_ops(l, n)]

        fwd = []
        for l in range(L):
            out = Z[l] if l < L - 1 else A
            if l > 0:
                fwd.append(self._mm(Z1[l - 1], Wt[l], out))
            if l < L - 1:
                fwd += self._h_ops(out, Zf[l])
                fwd.append((np.copyto, (Z1[l][:, 0], 1)))
        if self.sw is not None:  # delta = w_n (y_n - t_n)
            bwd = [(np.multiply, (Y, self.wb[:n, None], Y))]
        else:  # delta = (y - t) / N
            bwd = [] if n == 1 else [(np.multiply, (Y, 1.0 / n, Y))]
        d = Y
        for l in range(L - 1, 0, -1):
            # P = delta @ W[:, 1:] with W before its update, the gradient from [1 | Z], then
            # delta = h'(A) * P over Z, which no later step reads
            bwd.append(self._mm(d, Wh[l], P1[l - 1][:, 1:]))
            bwd += grad_ops(l, d, Z1[l - 1])
            bwd += self._delta_ops(Zf[l - 1], Pf[l - 1])
            d = Z[l - 1]
        out = Z[0] if L > 1 else A
        if self.ones_x:
            first_fwd, first_grad = self._layer0_ones(x, out, d)
        else:
            first_fwd, first_grad = self._layer0_apart(x, out, Z1[0] if L > 1 else A, d)
        prog = (first_fwd, fwd, A, Y, bwd, first_grad, self._update_ops(0, n))
        self._programs[n] = prog
        return prog

    def _layer0_ones(self, x, out, d):
        """``A = [1 | X_b] @ W.T`` and the gradient ``delta.T @ [1 | X_b]``: into ``W`` with
        ``-eta`` (fused) or into ``G``."""
        if self.fused[0]:
            call, neg_lr = self._gemm(d.T, x, *self._fused_target(0)), self.neg_lr
            grad = lambda x: call(neg_lr, b=x)  # noqa: E731
        else:
            grad = self._product(d.T, x, self.G[0], batch="b")
        return self._product(x, self.Wt[0], out, batch="a"), grad

    def _layer0_apart(self, x, out, fill, d):
        """The same with ``X_b`` and the bias ``b = W[:, 0]`` apart: ``fill`` (the rows of
        ``[1 | Z]``, or ``A``) is set to ``[1 | b]`` and the GEMM adds ``X_b @ W[:, 1:].T``
        (``beta = 1``); the gradient's column 0 is ``delta.T @ 1``, a GEMM with ones."""
        W, G = self.W[0], self.G[0]
        b, Wx, row = W[:, 0], W[:, 1:], self.bias_row
        rb = row[1:] if row.shape[0] > b.shape[0] else row
        if self._gemm_ok(x, Wx.T, out):
            call = self._gemm(x, Wx.T, out, 1.0)

            def fwd(x):
                np.copyto(rb, b)
                np.copyto(fill, row)
                call(1.0, a=x)
        else:

            def fwd(x):
                np.matmul(x, Wx.T, out)
                np.add(out, b, out)

        if self.fused[0]:
            target, beta = self._fused_target(0)
            update = self._gemm(d.T, x, target[:, 1:], beta)
            bias = self._gemm(d.T, self.ones[: x.shape[0]], target[:, :1], beta)
            neg_lr = self.neg_lr

            def grad(x):
                update(neg_lr, b=x)
                bias(neg_lr)
        else:
            product = self._product(d.T, x, G[:, 1:], batch="b")

            def grad(x):
                product(x)
                np.sum(d, axis=0, out=G[:, 0])

        return fwd, grad

    # The products: NumPy's matmul, and NumPy's CBLAS where alpha or beta are needed
    # (TorchPlan puts the large ones on torch's BLAS).
    def _mm(self, A, B, C):
        """The op ``C <- A @ B`` on these arrays."""
        return np.matmul, (A, B, C)

    def _product(self, A, B, C, batch):
        """``C <- A @ B`` as a function of this step's batch, which replaces operand
        ``batch`` ("a" or "b"; laid out like the one given)."""
        if batch == "a":
            return lambda x: np.matmul(x, B, C)
        return lambda x: np.matmul(A, x, C)

    def _gemm_ok(self, *arrays):
        """Whether :meth:`_gemm` takes these views."""
        return self.blas is not None and _GemmCall.usable(*arrays)

    def _gemm(self, A, B, C, beta):
        """``C <- alpha A @ B + beta C`` as ``call(alpha, a=..., b=...)``."""
        return _GemmCall(self.blas, A, B, C, beta)

    def _fused_target(self, l):
        """``(C, beta)`` for layer ``l``'s gradient GEMM ``C <- -eta G + beta C``: ``W``
        itself for plain SGD, else momentum's ``V <- mu V - eta G`` (one rounding fewer
        than :mod:`optim`'s three operations)."""
        return (self.W[l], 1.0) if self.plain else (self.S[0][l], self.hp["momentum"])

    def _update_ops(self, l, n):
        """The optimizer's step on layer ``l`` once its gradient is in ``G[l]`` (none where
        the GEMM made it): the L2 term ``G[:, 1:] += alpha/S W[:, 1:]`` (:mod:`train`), then
        :meth:`_rule`; one kernel call, or ufunc passes on one block of rows of ``W``,
        ``G`` and the state after another, each block small enough that its passes stay
        in cache."""
        if self.fused[l]:  # the GEMM updated W, or V (then W <- W + V)
            return [] if self.plain else [(np.add, (self.W[l], self.S[0][l], self.W[l]))]
        if self.kernels:
            return [self._kernel_step(l)]
        W, G, c = self.W[l], self.G[l], self.l2c
        rows = max(1, UPDATE_BLOCK // W.shape[1])
        ops = []
        for r in range(0, W.shape[0], rows):
            w, g = W[r : r + rows], G[r : r + rows]
            s1, s2 = (b[: w.size].reshape(w.shape) if b.size else None for b in self.scratch)
            if self.alpha:  # over whole rows, 3-5x faster than over [:, 1:]; the bias
                # column gets + (-0.0), which leaves every number as it is, signed zeros too
                ops += [
                    (np.multiply, (w, c, s1)),
                    (np.copyto, (s1[:, 0], -0.0)),
                    (np.add, (g, s1, g)),
                ]
            ops += self._rule(w, g, s1, s2, *(S[l][r : r + rows] for S in self.S))
        return ops

    def _kernel_step(self, l):
        """:meth:`_update_ops`' step as one call of the compiled kernel: one pass over the
        layer, the same operations in the same order."""
        W, G = self.W[l], self.G[l]
        # the kernel trusts these addresses and the shape: a mismatch must stop here
        for M in (W, G, *(S[l] for S in self.S)):
            if M.shape != W.shape or M.dtype != self.X.dtype or not M.flags.c_contiguous:
                raise ValueError(f"no kernel step on a {M.dtype} {M.shape} array")
        if self.sq.size < W.shape[0]:
            raise ValueError(f"no kernel step on {W.shape[0]} rows: {self.sq.size} row sums")
        A, B = ([S[l].ctypes.data for S in self.S] + [0, 0])[:2]
        c = self.l2c.ctypes.data if self.alpha else 0
        pointers = (W.ctypes.data, G.ctypes.data, A, B, c, self.neg_lr.ctypes.data)
        consts, penalty = self.consts.ctypes.data, self.penalty.ctypes.data
        words = (*pointers, consts, penalty, penalty + self.penalty.itemsize, self.sq.ctypes.data)
        (rows, cols), part = W.shape, self._part(W.shape[1] * W.itemsize)
        return self._kernel(0, rows, RULES[self.rule], cols, *words, part=part)

    def _h_ops(self, Z, flat):
        """``Z <- h(Z)`` in place on the matmul's output ``Z``, a view of ``[1 | Z]``
        (``flat``: the whole buffer, column 0 included; the caller writes the ones again):
        a ufunc where the pure form is one."""
        name, xp = self.activation.name, self.xp
        if name == "identity":
            return []
        if name in ("tanh", "relu"):
            ufunc = np.tanh if name == "tanh" else np.maximum
            loop = self.kernels and _loop(ufunc, flat.dtype)
            if loop and flat.flags.c_contiguous:  # NumPy's loop, in parts on the BLAS's threads
                s = self.zero.ctypes.data if name == "relu" else 0
                words = (flat.size, flat.ctypes.data, *loop, s)
                return [self._kernel(2, *words, part=self._part(flat.itemsize))]
            if name == "tanh":
                return [(np.tanh, (flat, flat))]
            return [(partial(np.maximum, out=flat), (flat, 0))]
        return [(lambda: np.copyto(Z, self.activation.h(Z, xp=xp)), ())]  # pure, copied

    def _delta_ops(self, Z, P):
        """``delta = h'(a) * P`` over the flat ``Z`` (:data:`DELTAS`), in one pass where the
        kernel is compiled."""
        if self.kernels:
            if Z.shape != P.shape or not (Z.flags.c_contiguous and P.flags.c_contiguous):
                raise ValueError(f"no kernel delta on {Z.shape} and {P.shape} arrays")
            kind = DELTA_KINDS[self.activation.name]
            part = self._part(Z.itemsize)
            return [self._kernel(1, Z.size, kind, Z.ctypes.data, P.ctypes.data, part=part)]
        return DELTAS[self.activation.name](Z, P)

    def _part(self, size):
        """The fewest elements (rows) of ``size`` bytes worth a thread of the BLAS: a kernel
        runs an op over more in parts, on the threads the BLAS may use then; 0: none."""
        return -(-PASS_PART_BYTES // size) if self.pooled and PASS_PART_BYTES else 0

    def _kernel(self, op, *words, part=0):
        """The op ``(run, (args,))`` for kernel ``op`` on this plan's type (:func:`_words`,
        packed once)."""
        return self.kernels, (_words(op, self.X.dtype, *words, part=part),)

    def _rule(self, w, g, s1, s2, *state):
        """:mod:`optim`'s update of ``w`` from ``g`` and the ``state`` blocks (momentum's
        ``V``; Adam's ``m``, ``v``), with its operations in its order (the same numbers),
        written with ``out=``; ``s1``, ``s2`` are scratch; ``neg_lr`` holds the step's -eta."""
        neg_lr, hp = self.neg_lr, self.hp
        if self.rule == "adam":
            m, v = state
            b1, b2, eps = hp["beta_1"], hp["beta_2"], hp["epsilon"]
            return [
                (np.multiply, (m, b1, m)),  # m <- beta_1 m + (1 - beta_1) G
                (np.multiply, (g, 1 - b1, s1)),
                (np.add, (m, s1, m)),
                (np.multiply, (g, g, s1)),  # v <- beta_2 v + (1 - beta_2) G**2
                (np.multiply, (s1, 1 - b2, s1)),
                (np.multiply, (v, b2, v)),
                (np.add, (v, s1, v)),
                (np.sqrt, (v, s1)),  # W <- W + (-eta_t m) / (sqrt(v) + epsilon)
                (np.add, (s1, eps, s1)),
                (np.multiply, (m, neg_lr, s2)),
                (np.divide, (s2, s1, s2)),
                (np.add, (w, s2, w)),
            ]
        if self.rule == "sgd":  # W <- W + (-eta G)
            return [(np.multiply, (g, neg_lr, g)), (np.add, (w, g, w))]
        (V,), mu = state, hp["momentum"]
        ops = [(np.multiply, (V, mu, V)), (np.multiply, (g, neg_lr, s1)), (np.add, (V, s1, V))]
        if self.rule == "momentum":  # V <- mu V - eta G; W <- W + V
            return ops + [(np.add, (w, V, w))]
        # W <- W + (mu V - eta G), the subtraction as the addition of -eta G (the same in IEEE)
        return ops + [(np.multiply, (V, mu, s2)), (np.add, (s2, s1, s2)), (np.add, (w, s2, w))]

    def _begin_step(self, s, e, sw):
        """What the step over rows ``s:e`` needs before its update, in
        :func:`train.loss_and_gradients`' expressions: the weights ``w_n = s_n / S`` of the
        batch's sample weights ``sw`` (``S`` their sum, inf if 0) and each sample's factor in
        the epoch's loss; the L2 term's ``c = alpha / S`` (``S = n`` without weights) and
        the penalty of the weights the step starts from; Adam's step count ``t`` and its
        step size ``-eta_t``."""
        S = n_b = e - s
        if sw is not None:
            total = np.add.reduce(sw)
            S = total if total > 0 else total.dtype.type(math.inf)
            w = self.wb[: e - s]
            np.divide(sw, S, out=w)
            n_b = n_b if self.by_size else total  # train._epoch's n_b
            np.multiply(w, n_b, out=self.lw[s:e])
        if self.alpha:
            c = self.alpha / S
            self.l2c[...] = c
            # the step's kernel adds n_b c / 2 times the squares it passes over in W; the
            # ufunc passes add them here, summed as the kernel sums them (the same numbers),
            # in the order of the steps (the last layer's first)
            self.penalty[1] = 0.5 * float(n_b) * float(c)
            if not self.kernels:
                for W in reversed(self.W):
                    self.penalty[0] += self.penalty[1] * _squares(W)
        if self.rule == "adam":
            self.t += 1
            eta = optim.adam_step_size(self.lr, self.t, self.hp["beta_1"], self.hp["beta_2"])
            self.neg_lr[...] = -eta

    # ------------------------------------------------------------ one epoch

    def epoch(self, weights, idx, opt_state, learning_rate, progress=None):
        """Train one epoch over ``idx`` (host order, or None for 0..N-1); returns
        ``(weights, opt_state, total)`` with ``total = sum_n L_n`` as a 0-d array. An
        interrupt leaves the weights and optimizer state trained so far in ``progress``."""
        state = _state_groups(opt_state)
        if self.rule == "adam":
            self.t = opt_state.t
        # the same list may come back with arrays replaced (a callback's ``m.weights = [...]``)
        arrays = (*weights, *(A for group in state for A in group))
        bound = (*self.bound, *self.bound_state)
        if len(arrays) != len(bound) or any(a is not b for a, b in zip(arrays, bound)):
            self._bind(weights, state)
        self.neg_lr[...] = -learning_rate
        self.lr = learning_rate
        self.penalty[0] = 0.0
        Xg, Tg, Sg, sw, pregather = self.Xg, self.Tg, self.Sg, self.sw, self.pregather
        if idx is not None:
            idx = np.asarray(idx)
            # in range: gather without take's buffered bounds check
            ok = idx.size == 0 or (idx.min() >= 0 and idx.max() < self.N)
            self.take_mode = "clip" if ok else "raise"
            # batches of two parts' rows or more: the kernel, in parts (it trusts idx)
            self.gather_rows = 0
            if ok and self.kernels and self._rows_ok(self.X):
                idx = np.ascontiguousarray(idx, dtype=np.intp)
                self.gather_rows = self._part(self.X.shape[1] * self.X.itemsize)
        if pregather and (idx is not None or not self.gathered):
            self._gather(0, self.N, idx)
            self.gathered = idx is None
        # in order, rows of a C-contiguous X are laid out like the batch buffer: no copy
        flags = self.X.flags
        direct = idx is None and not self.ones_x and flags.c_contiguous and flags.aligned
        step, check = self._step, _interrupt.check
        try:
            for s, e in self.bounds:
                if pregather:
                    step(Xg[s:e], Tg[s:e], s, e, None if sw is None else Sg[s:e])
                elif direct:
                    step(self.X[s:e], self.T[s:e], s, e, None if sw is None else sw[s:e])
                else:
                    self._gather(s, e, idx)
                    step(Xg[: e - s], Tg[: e - s], s, e, None if sw is None else Sg[: e - s])
                check()  # a Ctrl-C held during the step
        except KeyboardInterrupt:
            if progress is not None:  # trained in place; Adam's step count is the plan's
                progress.update(weights=self.W, opt_state=_state_of(opt_state, self.S, self.t))
            raise
        # train._epoch's sum over batches of n_b (loss_scale sum_n w_n L_n + c_b penalty_b)
        losses = self.losses.reshape(-1)
        if sw is None:  # n_b w_n = 1
            total = self.loss_scale * np.add.reduce(losses)
        else:
            total = self.loss_scale * np.dot(losses, self.lw)
        if self.alpha:
            total = total + self.penalty[0]
        opt_state = _state_of(opt_state, self.S, self.t)
        return self.W, opt_state, total

    def _gather(self, s, e, idx):
        """Rows ``s:e`` of the epoch's order into the batch buffers (``X_b`` beside the
        ones with ``ones_x``: NumPy's take into the strided buffer copies twice, but only
        once per epoch when pregathered, or for batches too small for the kernel)."""
        for src, out in self._gather_pairs(e - s):
            if idx is None:
                np.copyto(out, src[s:e])
            elif src is self.X and self.gather_rows and e - s >= 2 * self.gather_rows:
                f, args = self._gather_kernel(out, idx[s:e])
                f(*args)
            else:
                np.take(src, idx[s:e], axis=0, out=out, mode=self.take_mode)

    def _copies_rows(self, X):
        """Whether a shuffled batch of ``X`` is gathered in one pass into any row-major
        buffer: by the kernel."""
        return self.kernels is not None and self._rows_ok(X)

    @staticmethod
    def _rows_ok(M):
        """Whether the kernel can copy ``M``'s rows (each contiguous) by raw address."""
        return M.ndim == 2 and M.strides[1] == M.itemsize and M.flags.aligned

    def _gather_kernel(self, out, idx):
        """The kernel's gather of ``X[idx]`` into the batch buffer ``out``, in parts on the
        BLAS's threads when large."""
        X = self.X
        if not (
            self._rows_ok(out)
            and out.shape == (idx.size, X.shape[1])
            and idx.dtype == np.intp
            and idx.flags.c_contiguous
            and out.dtype == X.dtype
        ):
            raise ValueError(f"no kernel gather of {X.shape} rows into {out.shape}")
        row = X.shape[1] * X.itemsize
        words = (idx.size, out.ctypes.data, out.strides[0], X.ctypes.data, X.strides[0], row)
        return self._kernel(3, *words, idx.ctypes.data, part=self._part(row))

    def _gather_pairs(self, n):
        """``(source, batch buffer)`` of X, T and the sample weights for a batch of ``n``."""
        x = self.Xg[:n, 1:] if self.ones_x else self.Xg[:n]
        pairs = [(self.X, x), (self.T, self.Tg[:n])]
        if self.sw is not None:
            pairs.append((self.sw, self.Sg[:n]))
        return pairs

    def _step(self, x, t, s, e, sw):
        n, losses = e - s, self.losses[s:e]
        prog = self._programs.get(n) or self._program(n)
        first_fwd, fwd, A, Y, bwd, first_grad, last = prog
        if self.per_step:
            self._begin_step(s, e, sw)
        # forward: A = [1 | Z] @ W.T, Z = h(A) stored in place beside its ones
        first_fwd(x)
        for f, args in fwd:
            f(*args)
        # output error y - t (scaled by 1/N in bwd) and the per-sample losses L_n
        if self.identity:
            np.subtract(A, t, A)  # Y = A
            if self.K1:
                np.multiply(A, A, losses)
            else:
                np.einsum("ij,ij->i", A, A, out=losses)
        else:
            xp = self.xp
            np.copyto(Y, self.output.f(A, xp=xp))
            losses[...] = xp.reshape(self.output.loss(A, Y, t, xp=xp), losses.shape)
            np.subtract(Y, t, Y)
        # backward: grads = delta.T @ [1 | Z]; delta <- h'(Z) * (delta @ W[:, 1:])
        for f, args in bwd:
            f(*args)
        first_grad(x)
        for f, args in last:
            f(*args)


# ---------------------------------------------------------------- torch CPU tensors


class _TorchViews:
    """NumPy views of torch CPU tensors (the same memory) and back, each made once, so that
    the arrays a plan binds come back as the same objects epoch after epoch."""

    def __init__(self, torch):
        self.torch = torch
        self._views = {}  # id(tensor) -> (tensor, view)
        self._tensors = {}  # id(view) -> (view, tensor)

    @classmethod
    def of(cls, arrays):
        """A converter where every array (None aside) is a plain torch tensor in CPU memory
        that NumPy can view (no autograd, no lazy conjugate); else None."""
        torch = sys.modules.get("torch")
        arrays = [a for a in arrays if a is not None]
        if torch is None or not all(type(a) is torch.Tensor for a in arrays):
            return None
        views = cls(torch)
        try:
            for a in arrays:
                views.view(a)
        except (RuntimeError, TypeError):  # a CUDA tensor, one that requires grad, bfloat16
            return None
        return views

    def view(self, tensor):
        if tensor is None:
            return None
        hit = self._views.get(id(tensor))
        if hit is None or hit[0] is not tensor:
            hit = self._views[id(tensor)] = (tensor, tensor.numpy())
            self._tensors[id(hit[1])] = (hit[1], tensor)
        return hit[1]

    def tensor(self, view):
        """The tensor of ``view`` (an array the plan made: a tensor on its memory)."""
        hit = self._tensors.get(id(view))
        if hit is None or hit[0] is not view:
            hit = self._tensors[id(view)] = (view, self.torch.from_numpy(view))
        return hit[1]


class _TorchGemm:
    """``C <- alpha A @ B + beta C`` on torch's BLAS, over NumPy arrays' memory; called as
    :class:`_GemmCall` (``a`` or ``b``: this step's array for that operand)."""

    def __init__(self, torch, A, B, C, beta):
        self.view = torch.from_numpy
        self.A, self.B, self.C = (torch.from_numpy(M) for M in (A, B, C))
        self.beta = beta

    def __call__(self, alpha, a=None, b=None):
        A = self.A if a is None else self.view(a)
        B = self.B if b is None else self.view(b)
        self.C.addmm_(A, B, beta=self.beta, alpha=float(alpha))


class ViewsPlan(Plan):
    """The plan for torch CPU tensors: it trains NumPy views of their memory in place, as
    :class:`Plan` (the same buffers, BLAS, ufunc passes and kernels), and hands back the
    tensors. Where torch's BLAS is the faster (:func:`backend.torch_blas`), the plan is a
    :class:`TorchPlan`."""

    def __init__(self, views, *args):
        self.views = views
        super().__init__(*args)

    def epoch(self, weights, idx, opt_state, learning_rate, progress=None):
        v, t = self.views.view, self.views.tensor
        back = lambda W, S: ([t(A) for A in W], _map_state(S, t))  # noqa: E731 (the tensors)
        views = {}  # an interrupted epoch's progress, in NumPy views
        try:
            weights, opt_state, total = super().epoch(
                [v(W) for W in weights], idx, _map_state(opt_state, v), learning_rate, views
            )
        except KeyboardInterrupt:
            if progress is not None and views:
                progress["weights"], progress["opt_state"] = back(
                    views["weights"], views["opt_state"]
                )
            raise
        return (*back(weights, opt_state), total)  # total: NumPy's


class TorchPlan(ViewsPlan):
    """:class:`ViewsPlan` with the large products on torch's BLAS (MKL) and the large
    passes of h and the gather on torch's threads."""

    # torch's threads spin between its products: the BLAS's threads beside them made
    # workload A's epoch 9x slower; the kernels keep to this thread
    pooled = False

    @staticmethod
    def _large(A, B):
        """Whether ``A @ B`` goes to torch's BLAS: small products cost less through NumPy."""
        return A.shape[0] * A.shape[1] * B.shape[1] >= TORCH_GEMM_SIZE

    def _mm(self, A, B, C):
        if not self._large(A, B):
            return super()._mm(A, B, C)
        return self._gemm(A, B, C, 0.0), (1.0,)

    def _product(self, A, B, C, batch):
        if not self._large(A, B):
            return super()._product(A, B, C, batch)
        call = self._gemm(A, B, C, 0.0)
        if batch == "a":
            return lambda x: call(1.0, a=x)
        return lambda x: call(1.0, b=x)

    def _gemm_ok(self, *arrays):
        return True

    def _gemm(self, A, B, C, beta):
        if not self._large(A, B) and super()._gemm_ok(A, B, C):
            return super()._gemm(A, B, C, beta)
        return _TorchGemm(self.views.torch, A, B, C, beta)

    # h and the gather over large arrays on torch's threads: twice the hands, and the worker
    # threads of the products stay awake (tanh is torch's, as on the pure path). The delta
    # pass stays one kernel pass: four torch passes took twice its time on workload A.
    def _h_ops(self, Z, flat):
        torch, name = self.views.torch, self.activation.name
        if flat.size < TORCH_PASS_SIZE or name not in ("tanh", "relu"):
            return super()._h_ops(Z, flat)
        z = torch.from_numpy(flat)
        if name == "tanh":
            return [(partial(torch.tanh, out=z), (z,))]
        return [(partial(torch.maximum, out=z), (z, torch.zeros((), dtype=z.dtype)))]

    def _copies_rows(self, X):
        return True  # torch's index_select into the strided buffer: one pass

    def _gather(self, s, e, idx):
        if self.pregather or idx is None or (e - s) * self.X.shape[1] < TORCH_PASS_SIZE:
            return super()._gather(s, e, idx)
        torch, t, i = self.views.torch, self.views.tensor, self.idx[s:e]
        for src, out in self._gather_pairs(e - s):  # src: the caller's tensor
            torch.index_select(t(src), 0, i, out=torch.from_numpy(out))

    def epoch(self, weights, idx, opt_state, learning_rate, progress=None):
        self.idx = None if idx is None else self.views.torch.from_numpy(idx)  # the gather's
        return super().epoch(weights, idx, opt_state, learning_rate, progress)
