"""NumPy fast path of the training loop: the pure path's arithmetic, with no per-step allocation.

:func:`train.train` asks :func:`plan` for a fast epoch once per call; where the arrays are
writeable NumPy arrays and the configuration is one covered here, each epoch runs
:meth:`Plan.epoch` instead of the generic ``forward -> backward -> optimizer.update`` loop.
It computes the same quantities (DESIGN.md, section 1) as :mod:`network` and :mod:`optim`:

- every array of a step lives in a buffer made once per call and is written with ``out=``;
- each layer's input is held as ``[1 | Z[l]]``, the ones written once, so that one GEMM gives
  ``A = [1 | Z] @ W.T`` (the bias ``w_j0 x_0`` inside the sum) and one GEMM gives the whole
  gradient ``grads = delta.T @ [1 | Z]`` (its column 0 is ``sum_n delta_n``): no bias pass, no
  ``concat``; the batch is gathered beside the ones (contiguous, then copied: NumPy's take
  into a strided ``out`` is slower), so ``[1 | X_b]`` costs what the gather costs anyway;
- backward takes ``h'`` from the stored ``Z`` (``1 - Z**2`` for tanh) and writes
  ``delta = h' * (delta @ W[:, 1:])`` over ``Z`` in place, once the gradient GEMM of the layer
  above has read ``Z``: no ``h'`` buffer; element-wise steps run over whole
  ``[1 | Z]``-shaped buffers, contiguous, column 0 included and then ignored;
- plain SGD adds ``-eta delta.T @ [1 | Z]`` to ``W`` inside the GEMM (``beta = 1``) where
  NumPy's own BLAS is reachable and the layer is large, else it scales the gradient buffer
  and adds it in place; other built-in optimizers get the gradient buffers;
- small data sets are gathered once per epoch, so a step only slices views.

The two paths differ only in the order of floating-point operations (the bias joins the dot
product; the epoch loss sums per-sample losses; the update inside the GEMM rounds once where
``W + (-eta G)`` rounds twice); ``tests/test_fastpath.py`` checks that they
agree to ``rtol=1e-12`` in float64. Set ``XPMLP_FAST=0`` (or ``ENABLED = False``) to run
the pure Array API path everywhere.
"""

from __future__ import annotations

import ctypes
import glob
import os
from functools import partial
from typing import Any

import numpy as np

from . import optim
from .activations import ACTIVATIONS
from .objectives import OUTPUTS

ENABLED = os.environ.get("XPMLP_FAST", "1").strip() not in ("0", "false", "no", "off")
PREGATHER_BYTES = 8 * 2**20  # gather a whole epoch at once when its copy is this small
GEMM_UPDATE_SIZE = 16384  # fuse the SGD update into the gradient GEMM from this many weights


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


def _h_ops(activation, Z, flat, xp):
    """``Z <- h(Z)`` in place on the matmul's output ``Z``, a view of ``[1 | Z]`` (``flat``:
    the whole buffer, column 0 included; the caller writes the ones again): a ufunc where
    the pure form is one."""
    if activation.name == "identity":
        return []
    if activation.name == "tanh":
        return [(np.tanh, (flat, flat))]
    if activation.name == "relu":
        return [(partial(np.maximum, out=flat), (flat, 0))]
    return [(lambda: np.copyto(Z, activation.h(Z, xp=xp)), ())]  # the pure form, copied


# ---------------------------------------------------------------- NumPy's own BLAS


class _Gemm:
    """``C <- alpha A.T @ B + C`` through the CBLAS that NumPy itself links (OpenBLAS wheels),
    so the update shares NumPy's BLAS threads; absent elsewhere (then ``find`` gives None)."""

    _cache: dict = {}

    @classmethod
    def find(cls, dtype) -> Any:
        key = np.dtype(dtype).char
        if key not in cls._cache:
            cls._cache[key] = cls._load(key)
        return cls._cache[key]

    @staticmethod
    def _load(char):
        libdir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
        prefix = {"f": "s", "d": "d"}.get(char)
        if prefix is None:
            return None
        for path in sorted(glob.glob(os.path.join(libdir, "libscipy_openblas64_*"))):
            try:
                lib = ctypes.CDLL(path)  # already loaded by NumPy: the same handle
                fn = getattr(lib, f"scipy_cblas_{prefix}gemm64_")
            except (OSError, AttributeError):
                continue
            real = ctypes.c_float if char == "f" else ctypes.c_double
            enum, i64, ptr = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p  # ILP64 build
            fn.argtypes = [
                enum,
                enum,
                enum,
                i64,
                i64,
                i64,
                real,
                ptr,
                i64,
                ptr,
                i64,
                real,
                ptr,
                i64,
            ]
            fn.restype = None
            return fn
        return None


def _ld(M):
    """Leading dimension of a row-major matrix with unit column stride, else None."""
    if M.ndim != 2 or (M.shape[1] > 1 and M.strides[1] != M.itemsize):
        return None
    return max(M.strides[0] // M.itemsize, M.shape[1], 1)


# ---------------------------------------------------------------- the plan


def plan(
    weights, X, T, *, sample_weight, activation, output, optimizer, config, xp
) -> Plan | None:
    """A :class:`Plan` for this training call, or ``None`` where the pure path must run."""
    if not ENABLED or sample_weight is not None or config.alpha or config.clip_norm:
        return None
    arrays = [X, T, *weights]
    if not all(type(a) is np.ndarray and a.ndim == 2 for a in arrays):
        return None
    dtype = X.dtype
    if dtype not in (np.float32, np.float64) or any(a.dtype != dtype for a in arrays):
        return None
    if not all(W.flags.writeable for W in weights):
        return None
    if activation.name not in DELTAS or ACTIVATIONS.get(activation.name) is not activation:
        return None
    if OUTPUTS.get(output.name) is not output:
        return None
    if getattr(optimizer.update, "__module__", None) != optim.__name__:
        return None  # a user's optimizer may keep the gradient arrays we reuse
    return Plan(weights, X, T, activation, output, optimizer, config, xp)


class Plan:
    """Buffers and views for one :func:`train.train` call."""

    def __init__(self, weights, X, T, activation, output, optimizer, config, xp):
        batch_size = config.batch_size
        N, D = X.shape
        K = T.shape[1]
        B = N if batch_size is None else min(batch_size, N)
        dt = X.dtype
        self.X, self.T, self.N, self.B, self.xp = X, T, N, B, xp
        self.bounds = [(s, min(s + B, N)) for s in range(0, N, B)]
        self.activation = activation
        self.delta_ops = DELTAS[activation.name]
        self.output = output
        self.optimizer = optimizer
        self.sgd = optimizer.name == "sgd" and optimizer.hyperparams.get("momentum") == 0.0
        sizes = [D] + [W.shape[0] for W in weights]
        L = len(weights)
        # Whole epoch gathered at once (small data), or one batch at a time into [1 | X_b].
        self.pregather = N * (D + 1 + K) * dt.itemsize <= PREGATHER_BYTES
        rows = N if self.pregather else B
        self.X1 = np.empty((rows, D + 1), dtype=dt)
        self.X1[:, 0] = 1
        self.Tb = np.empty((rows, K), dtype=dt)
        self.Xb = None if self.pregather else np.empty((B, D), dtype=dt)
        self.gathered = False
        # [1 | Z[l]] of every hidden layer, which backward overwrites with delta[l], and one
        # buffer P = delta @ W[:, 1:] per width, shared by the layers of that width. The
        # element-wise steps run over whole buffers, contiguous (several times faster than
        # over the strided Z); the ones are written again after h. Column 0 of P stays 0.
        hidden = sizes[1:-1]
        self.Z1 = [np.ones((B, n + 1), dtype=dt) for n in hidden]
        self.P = {n: np.zeros((B, n + 1), dtype=dt) for n in hidden}
        self.hidden = hidden
        self.Aout = np.empty((B, K), dtype=dt)
        self.identity = output.name == "identity"
        self.Ybuf = None if self.identity else np.empty((B, K), dtype=dt)
        self.K1 = K == 1
        self.losses = np.empty((N, 1) if K == 1 else N, dtype=dt)
        # reported loss: Config.loss_scale times the data term; 1/2 of squared error here
        self.loss_scale = getattr(config, "loss_scale", 1.0) * (
            0.5 if output.name == "identity" else 1.0
        )
        self.gemm = _Gemm.find(dt) if self.sgd else None
        self.fused = [
            self.gemm is not None and W.size >= GEMM_UPDATE_SIZE and _ld(W) is not None
            for W in weights
        ]
        self.G = [None if f else np.empty(W.shape, dtype=dt) for W, f in zip(weights, self.fused)]
        self.L = L
        self.neg_lr = np.zeros((), dtype=dt)  # -eta, set each epoch (schedules change eta)
        self.lr = config.learning_rate
        self._bind(weights)

    def _bind(self, weights):
        self.W = list(weights)
        self.Wt = [W.T for W in weights]
        self.Wh = [W[:, 1:] for W in weights]
        self._programs = {}

    def _program(self, n):
        """The step for batch size ``n`` as lists of ``(ufunc, args)`` on fixed buffers;
        only the batch (``[1 | X_b]``, ``T_b``) and its loss slots change from step to step."""
        L, W, Wt, Wh, G, neg_lr = self.L, self.W, self.Wt, self.Wh, self.G, self.neg_lr
        Z1 = [Z[:n] for Z in self.Z1]
        Z = [Z[:, 1:] for Z in Z1]
        flat = lambda bufs: [b[:n].reshape(-1) for b in bufs]  # noqa: E731 (row slices: views)
        Zf = flat(self.Z1)
        P1 = [self.P[m][:n] for m in self.hidden]
        Pf = flat(P1)
        A = self.Aout[:n]
        Y = A if self.identity else self.Ybuf[:n]

        def grad_ops(l, d, inp):
            if self.fused[l]:
                return [(self._gemm, (l, d, inp))]
            ops = [(np.matmul, (d.T, inp, G[l]))]
            if self.sgd:  # W <- W + (-eta) G, the pure path's order
                ops += [(np.multiply, (G[l], neg_lr, G[l])), (np.add, (W[l], G[l], W[l]))]
            return ops

        fwd = []
        for l in range(L):
            out = Z[l] if l < L - 1 else A
            if l > 0:
                fwd.append((np.matmul, (Z1[l - 1], Wt[l], out)))
            if l < L - 1:
                fwd += _h_ops(self.activation, out, Zf[l], self.xp)
                fwd.append((np.copyto, (Z1[l][:, 0], 1)))
        bwd = [] if n == 1 else [(np.multiply, (Y, 1.0 / n, Y))]  # delta = (y - t) / N
        d = Y
        for l in range(L - 1, 0, -1):
            # P = delta @ W[:, 1:] with W before its update, the gradient from [1 | Z], then
            # delta = h'(A) * P over Z, which no later step reads
            bwd.append((np.matmul, (d, Wh[l], P1[l - 1][:, 1:])))
            bwd += grad_ops(l, d, Z1[l - 1])
            bwd += self.delta_ops(Zf[l - 1], Pf[l - 1])
            d = Z[l - 1]
        last = grad_ops(0, d, None)
        # layer 0's gradient GEMM takes [1 | X_b], which changes every step: _step calls it
        first = last.pop(0)[1]
        first = None if self.fused[0] else (first[0], first[2])
        prog = (Z[0] if L > 1 else A, fwd, A, Y, bwd, d, first, last)
        self._programs[n] = prog
        return prog

    # ------------------------------------------------------------ one epoch

    def epoch(self, weights, idx, opt_state, learning_rate):
        """Train one epoch over ``idx`` (host order, or None for 0..N-1); returns
        ``(weights, opt_state, total)`` with ``total = sum_n L_n`` as a 0-d array."""
        if weights is not self.W:
            for a, b in zip(weights, self.W):
                if a is not b:
                    self._bind(weights)
                    break
        self.neg_lr[...] = -learning_rate
        self.lr = learning_rate
        X1, Tb, losses, pregather = self.X1, self.Tb, self.losses, self.pregather
        if idx is not None:
            idx = np.asarray(idx)
            # in range: gather without take's buffered bounds check
            ok = idx.size == 0 or (idx.min() >= 0 and idx.max() < self.N)
            self.take_mode = "clip" if ok else "raise"
        if pregather and (idx is not None or not self.gathered):
            self._gather(0, self.N, idx)
            self.gathered = idx is None
        step = self._step
        for s, e in self.bounds:
            if pregather:
                opt_state = step(X1[s:e], Tb[s:e], losses[s:e], e - s, opt_state)
            else:
                self._gather(s, e, idx)
                opt_state = step(X1[: e - s], Tb[: e - s], losses[s:e], e - s, opt_state)
        total = self.loss_scale * np.add.reduce(losses, axis=None)
        return self.W, opt_state, total

    def _gather(self, s, e, idx):
        n = e - s
        if idx is None:
            np.copyto(self.X1[:n, 1:], self.X[s:e])
            np.copyto(self.Tb[:n], self.T[s:e])
        else:
            i = idx[s:e]
            if self.Xb is None:
                np.take(self.X, i, axis=0, out=self.X1[:n, 1:], mode=self.take_mode)
            else:  # take into a strided ``out`` buffers anyway; contiguous, then copy: faster
                np.take(self.X, i, axis=0, out=self.Xb[:n], mode=self.take_mode)
                np.copyto(self.X1[:n, 1:], self.Xb[:n])
            np.take(self.T, i, axis=0, out=self.Tb[:n], mode=self.take_mode)

    def _step(self, x1, t, losses, n, opt_state):
        prog = self._programs.get(n) or self._program(n)
        first_out, fwd, A, Y, bwd, d, first, last = prog
        # forward: A = [1 | Z] @ W.T, Z = h(A) stored in place beside its ones
        np.matmul(x1, self.Wt[0], first_out)
        for f, args in fwd:
            f(*args)
        # output error y - t (scaled by 1/N in bwd) and the per-sample losses L_n
        if self.identity:
            np.subtract(A, t, A)  # Y = A
            if self.K1:
                np.multiply(A, A, losses)
            else:
                np.sum(np.multiply(A, A), axis=1, out=losses)
        else:
            xp = self.xp
            np.copyto(Y, self.output.f(A, xp=xp))
            losses[...] = xp.reshape(self.output.loss(A, Y, t, xp=xp), losses.shape)
            np.subtract(Y, t, Y)
        # backward: grads = delta.T @ [1 | Z]; delta <- h'(Z) * (delta @ W[:, 1:])
        for f, args in bwd:
            f(*args)
        if first is None:
            self._gemm(0, d, x1)
        else:
            np.matmul(first[0], x1, first[1])
        for f, args in last:
            f(*args)
        if not self.sgd:
            new, opt_state = self.optimizer.update(
                self.G, opt_state, self.W, learning_rate=self.lr, xp=self.xp
            )
            if any(a is not b for a, b in zip(new, self.W)):
                self._bind(new)
        return opt_state

    def _gemm(self, l, d, inp):
        # W <- W - eta delta.T @ [1 | Z], row-major: C (M x N) += alpha A.T (M x K) @ B (K x N)
        W = self.W[l]
        M, Ncol = W.shape
        self.gemm(
            101, 112, 111, M, Ncol, d.shape[0],
            -self.lr, d.ctypes.data, _ld(d), inp.ctypes.data, _ld(inp),
            1.0, W.ctypes.data, _ld(W),
        )  # fmt: skip
