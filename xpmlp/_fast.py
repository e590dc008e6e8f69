"""NumPy fast path of the training loop: the pure path's arithmetic, with no per-step allocation.

:func:`train.train` asks :func:`plan` for a fast epoch once per call; where the arrays are
writeable NumPy arrays and the configuration is one covered here, each epoch runs
:meth:`Plan.epoch` instead of the generic ``forward -> backward -> optimizer.update`` loop.
It computes the same quantities (DESIGN.md, section 1) as :mod:`network` and :mod:`optim`:

- every array of a step lives in a buffer made once per call and is written with ``out=``;
- each layer's input is held as ``[1 | Z[l]]``, the ones written once, so that one GEMM gives
  ``A = [1 | Z] @ W.T`` (the bias ``w_j0 x_0`` inside the sum) and one GEMM gives the whole
  gradient ``grads = delta.T @ [1 | Z]`` (its column 0 is ``sum_n delta_n``): no bias pass, no
  ``concat``; the batch gather writes beside the ones, so ``[1 | X]`` costs no extra copy;
- ``h'`` is taken from the stored ``Z`` (``1 - Z**2`` for tanh), in place, then multiplied
  into ``delta``;
- plain SGD adds ``-eta delta.T @ [1 | Z]`` to ``W`` inside the GEMM (``beta = 1``) where
  NumPy's own BLAS is reachable and the layer is large, else it scales the gradient buffer
  and adds it in place; other built-in optimizers get the gradient buffers;
- small data sets are gathered once per epoch, so a step only slices views.

The two paths differ only in the order of floating-point additions (the bias joins the dot
product; the epoch loss sums per-sample losses); ``tests/test_fastpath.py`` checks that they
agree to ``rtol=1e-12`` in float64. Set ``XPMLP_FAST=0`` (or ``ENABLED = False``) to run
the pure Array API path everywhere.
"""

from __future__ import annotations

import ctypes
import glob
import os
from typing import Any

import numpy as np

from . import optim
from .activations import ACTIVATIONS
from .objectives import OUTPUTS

ENABLED = os.environ.get("XPMLP_FAST", "1").strip() not in ("0", "false", "no", "off")
PREGATHER_BYTES = 8 * 2**20  # gather a whole epoch at once when its copy is this small
GEMM_UPDATE_SIZE = 16384  # fuse the SGD update into the gradient GEMM from this many weights


# h'(a) from the stored z = h(a), multiplied into P = delta @ W[:, 1:]: D <- h'(Z) * P.
# Z is the layer's stored output, no longer needed afterwards; S is scratch of Z's shape.
def _dh_tanh(Z, D, S):
    np.multiply(Z, Z, out=Z)
    np.subtract(1, Z, out=Z)  # tanh' = 1 - tanh^2
    np.multiply(D, Z, out=D)


def _dh_logistic(Z, D, S):
    np.subtract(1, Z, out=S)
    np.multiply(Z, S, out=S)  # sigma' = sigma (1 - sigma)
    np.multiply(D, S, out=D)


def _dh_relu(Z, D, S):
    np.greater(Z, 0, out=Z)  # a > 0 exactly where z = max(a, 0) > 0
    np.multiply(D, Z, out=D)


def _dh_identity(Z, D, S):
    pass  # h' = 1


DERIVATIVES = {
    "identity": _dh_identity,
    "tanh": _dh_tanh,
    "logistic": _dh_logistic,
    "relu": _dh_relu,
}


def _forward_h(activation, xp):
    """``Z <- h(Z)`` in place on the matmul's output: NumPy ufuncs where the pure form is one."""
    if activation.name == "identity":
        return None
    if activation.name == "tanh":
        return lambda Z: np.tanh(Z, out=Z)
    if activation.name == "relu":
        return lambda Z: np.maximum(Z, 0, out=Z)
    return lambda Z: np.copyto(Z, activation.h(Z, xp=xp))  # the pure form, copied back


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
            i64, ptr = ctypes.c_int64, ctypes.c_void_p
            fn.argtypes = [i64, i64, i64, i64, i64, i64, real, ptr, i64, ptr, i64, real, ptr, i64]
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
    if activation.name not in DERIVATIVES or ACTIVATIONS.get(activation.name) is not activation:
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
        self.h = _forward_h(activation, xp)
        self.dh = DERIVATIVES[activation.name]
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
        self.gathered = False
        # [1 | Z[l]] of every hidden layer, delta of every hidden layer, scratch for h'.
        self.Z1 = [np.empty((B, n + 1), dtype=dt) for n in sizes[1:-1]]
        for Z1 in self.Z1:
            Z1[:, 0] = 1
        self.delta = [np.empty((B, n), dtype=dt) for n in sizes[1:-1]]
        self.S = (
            [np.empty((B, n), dtype=dt) for n in sizes[1:-1]] if self.dh is _dh_logistic else None
        )
        self.Aout = np.empty((B, K), dtype=dt)
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
        self._views = {}
        self._bind(weights)

    def _bind(self, weights):
        self.W = list(weights)
        self.Wt = [W.T for W in weights]
        self.Wh = [W[:, 1:] for W in weights]
        self._views.clear()

    def _views_for(self, n):
        """Per-batch-size views: [1 | Z], Z, delta, delta.T, the output buffer and its .T."""
        v = self._views.get(n)
        if v is None:
            Z1 = [Z[:n] for Z in self.Z1]
            Z = [Z[:, 1:] for Z in Z1]
            delta = [d[:n] for d in self.delta]
            S = None if self.S is None else [s[:n] for s in self.S]
            A = self.Aout[:n]
            v = (Z1, Z, delta, [d.T for d in delta], S, A, A.T)
            self._views[n] = v
        return v

    # ------------------------------------------------------------ one epoch

    def epoch(self, weights, idx, opt_state, learning_rate):
        """Train one epoch over ``idx`` (host order, or None for 0..N-1); returns
        ``(weights, opt_state, total)`` with ``total = sum_n L_n`` as a 0-d array."""
        if any(a is not b for a, b in zip(weights, self.W)):
            self._bind(weights)
        X1, Tb = self.X1, self.Tb
        if idx is not None:
            idx = np.asarray(idx)
            # in range: gather without take's buffered bounds check
            self.take_mode = (
                "clip" if idx.size == 0 or (idx.min() >= 0 and idx.max() < self.N) else "raise"
            )
        if self.pregather and (idx is not None or not self.gathered):
            self._gather(0, self.N, idx)
            self.gathered = idx is None
        for s, e in self.bounds:
            if self.pregather:
                x1, t = X1[s:e], Tb[s:e]
            else:
                self._gather(s, e, idx)
                x1, t = X1[: e - s], Tb[: e - s]
            opt_state = self._step(x1, t, s, e, opt_state, learning_rate)
        total = self.loss_scale * np.sum(self.losses)
        return self.W, opt_state, total

    def _gather(self, s, e, idx):
        n = e - s
        if idx is None:
            np.copyto(self.X1[:n, 1:], self.X[s:e])
            np.copyto(self.Tb[:n], self.T[s:e])
        else:
            i = idx[s:e]
            np.take(self.X, i, axis=0, out=self.X1[:n, 1:], mode=self.take_mode)
            np.take(self.T, i, axis=0, out=self.Tb[:n], mode=self.take_mode)

    def _step(self, x1, t, s, e, opt_state, learning_rate):
        n = e - s
        Z1, Z, delta, deltaT, S, A, AT = self._views_for(n)
        W, Wt, Wh, h, L = self.W, self.Wt, self.Wh, self.h, self.L
        # forward: A = [1 | Z] @ W.T, Z = h(A) stored in place beside its ones
        inp = x1
        for l in range(L - 1):
            out = Z[l]
            np.matmul(inp, Wt[l], out=out)
            if h is not None:
                h(out)
            inp = Z1[l]
        np.matmul(inp, Wt[L - 1], out=A)
        # output error delta = (y - t) / N and the per-sample losses L_n
        if self.output.name == "identity":
            R = A
            np.subtract(A, t, out=R)  # Y = A
            if R.shape[1] == 1:
                np.multiply(R, R, out=self.losses[s:e])
            else:
                np.sum(np.multiply(R, R), axis=1, out=self.losses[s:e])
            out_delta, out_deltaT = R, AT
        else:
            xp = self.xp
            Y = self.output.f(A, xp=xp)
            self.losses[s:e] = xp.reshape(self.output.loss(A, Y, t, xp=xp), self.losses[s:e].shape)
            out_delta = np.subtract(Y, t, out=Y)
            out_deltaT = out_delta.T
        if n != 1:
            np.multiply(out_delta, 1.0 / n, out=out_delta)
        # backward: grads = delta.T @ [1 | Z]; delta <- h'(Z) * (delta @ W[:, 1:])
        d, dT = out_delta, out_deltaT
        G, sgd = self.G, self.sgd
        for l in range(L - 1, -1, -1):
            inp = Z1[l - 1] if l > 0 else x1
            if l > 0:
                np.matmul(d, Wh[l], out=delta[l - 1])
            if self.fused[l]:
                self._gemm_update(l, d, inp, learning_rate)
            else:
                np.matmul(dT, inp, out=G[l])
                if sgd:
                    np.multiply(G[l], -learning_rate, out=G[l])
                    np.add(W[l], G[l], out=W[l])
            if l > 0:
                self.dh(Z[l - 1], delta[l - 1], None if S is None else S[l - 1])
                d, dT = delta[l - 1], deltaT[l - 1]
        if not sgd:
            new, opt_state = self.optimizer.update(
                G, opt_state, W, learning_rate=learning_rate, xp=self.xp
            )
            if any(a is not b for a, b in zip(new, W)):
                self._bind(new)
        return opt_state

    def _gemm_update(self, l, d, inp, learning_rate):
        # W <- W - eta delta.T @ [1 | Z], row-major: C (M x N) += alpha A.T (M x K) @ B (K x N)
        W = self.W[l]
        d = d if _ld(d) is not None else np.ascontiguousarray(d)
        M, Ncol = W.shape
        self.gemm(
            101, 112, 111, M, Ncol, d.shape[0],
            -learning_rate, d.ctypes.data, _ld(d), inp.ctypes.data, _ld(inp),
            1.0, W.ctypes.data, _ld(W),
        )  # fmt: skip
