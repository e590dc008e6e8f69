"""Runners for the benchmark: xpmlp, its peers and the GEMM-only limit.

Every runner trains the same network ``sizes`` from the same initial weights ``W0`` (float64,
``W[l]`` of shape (n_{l+1}, n_l + 1), bias in column 0) over the same batches, with tanh
hidden units, identity output, the mean of ``L_n = 1/2 ||y_n - t_n||^2`` and plain gradient
descent, and hands its final weights back in that layout so that the driver can check that
everyone did the same work. ``reset()`` restores ``W0`` (untimed); ``run()`` is the timed
call and returns only after the device has finished.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class Skip(Exception):  # noqa: N818 (a verdict, not an error)
    """A peer that cannot run here; the message says why."""


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class Runner:
    name = "?"
    dtype = "float32"

    def __init__(self, wl, dtype=None):
        self.wl = wl
        self.dtype = dtype or wl.dtype

    def info(self) -> str:
        return ""


# ------------------------------------------------------------------ xpmlp


class XpmlpFit(Runner):
    """``MLP.fit``, the public API: input checks, conversion, the training loop."""

    name = "xpmlp"

    def __init__(self, wl, backend="numpy", device=None):
        super().__init__(wl)
        if backend == "torch" and not available("torch"):
            raise Skip("torch is not installed")
        import xpmlp

        self.xpmlp = xpmlp
        self.net = xpmlp.MLP(
            wl.sizes, "tanh", "identity", backend=backend, device=device, dtype=wl.dtype
        )
        xp = self.net.xp
        self.X = self.net._array(wl.X)  # the data moved to the backend once, untimed
        self.T = self.net._array(wl.T)
        self.xp = xp

    def reset(self):
        import xpmlp

        self.net.weights = list(self.wl.W0)
        self.net.state = xpmlp.train.LoopState()
        self.net.rng = np.random.default_rng(self.wl.seed)  # draws exactly wl.perm

    def run(self):
        wl = self.wl
        self.net.fit(
            self.X,
            self.T,
            epochs=wl.epochs,
            batch_size=wl.batch,
            learning_rate=wl.lr,
            optimizer=wl.optimizer,
            alpha=wl.alpha,
            shuffle=wl.perm is not None,
        )
        self.xpmlp.backend.synchronize(self.xp)

    def weights(self):
        return [np.asarray(self.xpmlp.to_numpy(W), dtype=np.float64) for W in self.net.weights]

    def info(self):
        return f"backend {self.net.backend}"


class XpmlpPure(XpmlpFit):
    """``MLP.fit`` with the NumPy fast path switched off: the pure Array API path (before)."""

    name = "xpmlp, pure Array API path"

    def run(self):
        from xpmlp import _fast

        enabled, _fast.ENABLED = _fast.ENABLED, False
        try:
            super().run()
        finally:
            _fast.ENABLED = enabled


class XpmlpLoop(XpmlpFit):
    """``xpmlp.train.train`` on arrays already checked and converted: the loop alone."""

    name = "xpmlp (loop only)"

    def run(self):
        from xpmlp import optim, train

        wl, net = self.wl, self.net
        cfg = train.Config(
            epochs=wl.epochs, batch_size=wl.batch, learning_rate=wl.lr, shuffle=wl.perm is not None
        )
        train.train(
            net.weights,
            self.X,
            self.T,
            activation=net.activation,
            output=net.output,
            optimizer=optim.sgd(),
            config=cfg,
            state=train.LoopState(),
            rng=net.rng,
            xp=net.xp,
        )
        self.xpmlp.backend.synchronize(self.xp)


# ------------------------------------------------------------------ GEMM-only limit


class GemmLimit(Runner):
    """The 8 matrix products of a step (3 forward, 3 weight gradients, 2 delta propagations)
    over the same batches, pre-gathered, into preallocated outputs: nothing else."""

    name = "GEMM-only limit"

    def __init__(self, wl, mod=np):
        super().__init__(wl)
        self.mod = mod
        if mod.__name__ == "torch":  # torch's BLAS (MKL in PyTorch's wheels) on the CPU
            self.name = "GEMM-only limit (torch)"
        dt = getattr(mod, wl.dtype)
        X = mod.asarray(wl.X, dtype=dt)
        perm = np.arange(wl.N) if wl.perm is None else wl.perm
        self.Xp = X[mod.asarray(perm)]  # batches gathered before timing
        self.W = [mod.asarray(np.ascontiguousarray(W[:, 1:]), dtype=dt) for W in wl.W0]
        B = wl.batch or wl.N
        sizes = wl.sizes
        self.Z = [mod.empty((B, n), dtype=dt) for n in sizes[1:]]
        self.delta = [mod.empty((B, n), dtype=dt) for n in sizes[1:]]
        self.G = [mod.empty(W.shape, dtype=dt) for W in self.W]

    def reset(self):
        pass

    def run(self):
        mod, W, G, wl = self.mod, self.W, self.G, self.wl
        L = len(W)
        for _ in range(wl.epochs):
            for s, e in wl.bounds:
                n = e - s
                x = self.Xp[s:e]
                Z = [z[:n] for z in self.Z]
                d = [z[:n] for z in self.delta]
                inp = x
                for l in range(L):
                    mod.matmul(inp, W[l].T, out=Z[l])
                    inp = Z[l]
                d[L - 1] = Z[L - 1]
                for l in range(L - 1, -1, -1):
                    mod.matmul(d[l].T, x if l == 0 else Z[l - 1], out=G[l])
                    if l > 0:
                        mod.matmul(d[l], W[l], out=d[l - 1])
        _sync(mod)

    def weights(self):
        return None


def _sync(mod):
    if mod.__name__ == "cupy":
        mod.cuda.get_current_stream().synchronize()


# ------------------------------------------------------------------ hand-written NumPy


class HandNumpy(Runner):
    """Straightforward NumPy (or CuPy) backprop: separate W and b, fancy-indexed batches."""

    name = "NumPy (hand-written)"

    def __init__(self, wl, mod=np):
        super().__init__(wl)
        self.mod = mod
        if mod is not np:
            self.name = "CuPy (hand-written)"
        self.dt = getattr(mod, wl.dtype)
        self.X = mod.asarray(wl.X, dtype=self.dt)
        self.T = mod.asarray(wl.T, dtype=self.dt)
        self.perm = None if wl.perm is None else mod.asarray(wl.perm)

    def reset(self):
        m = self.mod
        self.W = [m.array(W[:, 1:], dtype=self.dt, copy=True) for W in self.wl.W0]
        self.b = [m.array(W[:, 0], dtype=self.dt, copy=True) for W in self.wl.W0]
        self.moments = [[m.zeros_like(p) for p in (*self.W, *self.b)] for _ in range(2)]
        self.t = 0

    def update(self, grads):
        """Plain SGD, or Adam (Kingma & Ba's efficient form, as scikit-learn's) on the
        parameters ``W + b`` in place."""
        params, wl = [*self.W, *self.b], self.wl
        if wl.optimizer == "sgd":
            for p, g in zip(params, grads):
                p -= wl.lr * g
            return
        self.t += 1
        eta = wl.lr * (1 - 0.999**self.t) ** 0.5 / (1 - 0.9**self.t)
        for p, g, m1, m2 in zip(params, grads, *self.moments):
            m1 *= 0.9
            m1 += 0.1 * g
            m2 *= 0.999
            m2 += 0.001 * g * g
            p -= eta * m1 / (self.mod.sqrt(m2) + 1e-8)

    def run(self):
        m, wl, W, b = self.mod, self.wl, self.W, self.b
        L = len(W)
        for _ in range(wl.epochs):
            total = 0.0
            for s, e in wl.bounds:
                if self.perm is None:
                    x, t = self.X[s:e], self.T[s:e]
                else:
                    i = self.perm[s:e]
                    x, t = self.X[i], self.T[i]
                Z = [x]
                for l in range(L):
                    a = Z[-1] @ W[l].T + b[l]
                    Z.append(m.tanh(a) if l < L - 1 else a)
                r = Z[-1] - t
                total = total + 0.5 * m.sum(r * r)
                d = r / (e - s)
                gW, gb = [None] * L, [None] * L
                for l in range(L - 1, -1, -1):
                    gW[l], gb[l] = d.T @ Z[l], d.sum(axis=0)
                    if wl.alpha:
                        gW[l] += wl.alpha / (e - s) * W[l]
                    if l > 0:
                        d = (d @ W[l]) * (1 - Z[l] ** 2)
                self.update(gW + gb)
            self.loss = float(total) / wl.N  # one host value per epoch
        _sync(m)

    def weights(self):
        to = (lambda a: a.get()) if self.mod is not np else np.asarray
        return [
            np.concatenate([to(b)[:, None], to(W)], axis=1).astype(np.float64)
            for W, b in zip(self.W, self.b)
        ]


# ------------------------------------------------------------------ PyTorch


class Torch(Runner):
    """PyTorch eager: nn.Linear + Tanh, autograd, torch.optim.SGD (or Adam, with the L2
    term in the loss: its ``weight_decay`` would decay the biases too). PyTorch's Adam adds
    epsilon to ``sqrt(v / (1 - beta_2**t))`` where the others add it to ``sqrt(v)``: the
    same step up to epsilon's scale."""

    name = "PyTorch eager"

    def __init__(self, wl, device="cpu", tf32=False):
        super().__init__(wl)
        if not available("torch"):
            raise Skip("torch is not installed")
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise Skip("torch has no CUDA device here")
        self.torch, self.device = torch, torch.device(device)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = tf32
            self.name = "PyTorch eager (CUDA)"
        self.dt = getattr(torch, wl.dtype)
        layers = []
        for l, (n_in, n_out) in enumerate(zip(wl.sizes[:-1], wl.sizes[1:])):
            layers.append(torch.nn.Linear(n_in, n_out, dtype=self.dt, device=self.device))
            if l < len(wl.sizes) - 2:
                layers.append(torch.nn.Tanh())
        self.model = torch.nn.Sequential(*layers)
        self.linear = [m for m in self.model if isinstance(m, torch.nn.Linear)]
        if wl.optimizer == "adam":
            self.opt = torch.optim.Adam(self.model.parameters(), lr=wl.lr)
        else:
            self.opt = torch.optim.SGD(self.model.parameters(), lr=wl.lr)
        self.X = torch.as_tensor(wl.X, dtype=self.dt, device=self.device)
        self.T = torch.as_tensor(wl.T, dtype=self.dt, device=self.device)
        self.perm = None if wl.perm is None else torch.as_tensor(wl.perm, device=self.device)

    def reset(self):
        torch = self.torch
        with torch.no_grad():
            for lin, W in zip(self.linear, self.wl.W0):
                lin.weight.copy_(torch.from_numpy(np.array(W[:, 1:])))
                lin.bias.copy_(torch.from_numpy(np.array(W[:, 0])))
        self.opt.state.clear()  # Adam starts afresh

    def run(self):
        torch, wl = self.torch, self.wl
        total = torch.zeros((), dtype=self.dt, device=self.device)
        for _ in range(wl.epochs):
            total.zero_()  # one epoch's loss sum, on the device, read once per epoch
            for s, e in wl.bounds:
                if self.perm is None:
                    x, t = self.X[s:e], self.T[s:e]
                else:
                    i = self.perm[s:e]
                    x, t = self.X.index_select(0, i), self.T.index_select(0, i)
                self.opt.zero_grad(set_to_none=True)
                r = self.model(x) - t
                loss = 0.5 * (r * r).sum(dim=1).mean()
                if wl.alpha:
                    l2 = sum((lin.weight * lin.weight).sum() for lin in self.linear)
                    (loss + wl.alpha / (2 * (e - s)) * l2).backward()
                else:
                    loss.backward()
                self.opt.step()
                total += loss.detach() * (e - s)
            self.loss = float(total) / wl.N
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def weights(self):
        return [
            np.concatenate(
                [
                    lin.bias.detach().cpu().double().numpy()[:, None],
                    lin.weight.detach().cpu().double().numpy(),
                ],
                axis=1,
            )
            for lin in self.linear
        ]

    def info(self):
        if self.device.type == "cuda":
            return self.torch.cuda.get_device_name(self.device)
        return f"{self.torch.get_num_threads()} intra-op threads"


# ------------------------------------------------------------------ JAX


class Jax(Runner):
    """JAX: the whole step (gather, forward, grad, update) under one ``jax.jit``."""

    name = "JAX jit"

    def __init__(self, wl, platform="cpu", tf32=False):
        super().__init__(wl)
        if not available("jax"):
            raise Skip("jax is not installed")
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)  # float64 workloads run in float64
        try:
            self.dev = jax.devices(platform)[0]
        except RuntimeError as exc:
            raise Skip(f"jax has no {platform} device here") from exc
        if platform == "gpu":
            self.name = "JAX jit (GPU)"
        precision = "tensorfloat32" if tf32 else "highest"
        self.jax, self.jnp = jax, jnp
        dt = getattr(jnp, wl.dtype)
        self.dt = dt
        put = lambda a, **k: jax.device_put(jnp.asarray(a, **k), self.dev)  # noqa: E731
        self.X, self.T = put(wl.X, dtype=dt), put(wl.T, dtype=dt)
        self.idx = (
            None if wl.perm is None else [put(wl.perm[s:e], dtype=jnp.int32) for s, e in wl.bounds]
        )
        lr, alpha, adam = wl.lr, wl.alpha, wl.optimizer == "adam"
        tree_map = jax.tree_util.tree_map

        def loss_fn(params, x, t):
            z = x
            for l, (W, b) in enumerate(params):
                a = jnp.matmul(z, W.T, precision=precision) + b
                z = jnp.tanh(a) if l < len(params) - 1 else a
            r = z - t
            data = 0.5 * jnp.mean(jnp.sum(r * r, axis=1))
            l2 = sum(jnp.sum(W * W) for W, _ in params) if alpha else 0.0
            return data + alpha / (2 * x.shape[0]) * l2, data

        def update(state, total, x, t):
            # the epoch's loss sum is carried through the step: no eager op per step
            params, m1, m2, k = state
            (_, loss), g = jax.value_and_grad(loss_fn, has_aux=True)(params, x, t)
            if not adam:
                new = tree_map(lambda p, gp: p - lr * gp, params, g)
                return (new, m1, m2, k), total + loss * x.shape[0]
            k = k + 1  # Adam, Kingma & Ba's efficient form, as scikit-learn's
            m1 = tree_map(lambda m, gp: 0.9 * m + 0.1 * gp, m1, g)
            m2 = tree_map(lambda v, gp: 0.999 * v + 0.001 * gp * gp, m2, g)
            eta = lr * jnp.sqrt(1 - 0.999**k) / (1 - 0.9**k)
            new = tree_map(lambda p, m, v: p - eta * m / (jnp.sqrt(v) + 1e-8), params, m1, m2)
            return (new, m1, m2, k), total + loss * x.shape[0]

        def step_idx(state, total, X, T, i):
            return update(state, total, jnp.take(X, i, axis=0), jnp.take(T, i, axis=0))

        self.step_idx = jax.jit(step_idx, donate_argnums=0)
        self.step_full = jax.jit(update, donate_argnums=0)
        self.zero = put(0, dtype=dt)  # each epoch's loss sum starts here: no copy per epoch

    def reset(self):
        jnp, jax = self.jnp, self.jax
        params = [
            (
                jax.device_put(jnp.asarray(W[:, 1:], dtype=self.dt), self.dev),
                jax.device_put(jnp.asarray(W[:, 0], dtype=self.dt), self.dev),
            )
            for W in self.wl.W0
        ]
        if self.wl.optimizer == "adam":  # parameters, Adam's moments and step count
            zeros = lambda: jax.tree_util.tree_map(jnp.zeros_like, params)  # noqa: E731
            k = jax.device_put(jnp.asarray(0, dtype=self.dt), self.dev)
            self.state = (params, zeros(), zeros(), k)
        else:
            self.state = (params, None, None, None)

    def run(self):
        wl, p = self.wl, self.state
        for _ in range(wl.epochs):
            total = self.zero
            for k, (s, e) in enumerate(wl.bounds):
                if self.idx is None:
                    x, t = (self.X[s:e], self.T[s:e]) if wl.batch else (self.X, self.T)
                    p, total = self.step_full(p, total, x, t)
                else:
                    p, total = self.step_idx(p, total, self.X, self.T, self.idx[k])
            self.loss = float(total) / wl.N  # one host value per epoch
        self.jax.block_until_ready(p)
        self.state = p

    def weights(self):
        return [
            np.concatenate([np.asarray(b, np.float64)[:, None], np.asarray(W, np.float64)], 1)
            for W, b in self.state[0]
        ]

    def info(self):
        return f"device {self.dev}"


# ------------------------------------------------------------------ scikit-learn


class Sklearn(Runner):
    """scikit-learn MLPRegressor, ``partial_fit`` once per epoch (sgd without momentum, or
    adam), on the data put in the epoch's order inside the timed run, as the others gather
    their batches (``shuffle=False``: it takes them in that order)."""

    def __init__(self, wl, dtype):
        super().__init__(wl, dtype)
        if not available("sklearn"):
            raise Skip("scikit-learn is not installed")
        from sklearn.neural_network import MLPRegressor

        self.name = f"scikit-learn MLPRegressor ({dtype})"
        dt = np.dtype(dtype)
        self.X = np.ascontiguousarray(wl.X, dtype=dt)
        T = np.ascontiguousarray(wl.T, dtype=dt)
        self.y = T[:, 0] if T.shape[1] == 1 else T
        self.m = MLPRegressor(
            hidden_layer_sizes=tuple(wl.sizes[1:-1]),
            activation="tanh",
            solver=wl.optimizer,
            alpha=wl.alpha,
            batch_size=wl.batch or wl.N,
            learning_rate="constant",
            learning_rate_init=wl.lr,
            momentum=0.0,
            nesterovs_momentum=False,
            shuffle=False,
            tol=0.0,
            n_iter_no_change=10**9,
        )
        with warnings.catch_warnings():  # "batch_size larger than sample size": meant so
            warnings.simplefilter("ignore", UserWarning)
            self.m.partial_fit(self.X[:2], self.y[:2])  # builds its state; weights set in reset

    def reset(self):
        for l, W in enumerate(self.wl.W0):
            self.m.coefs_[l][...] = W[:, 1:].T  # in place: its optimizer holds these arrays
            self.m.intercepts_[l][...] = W[:, 0]
        opt = self.m._optimizer
        if hasattr(opt, "ms"):  # Adam starts afresh
            opt.t = 0
            for A in (*opt.ms, *opt.vs):
                A[...] = 0

    def run(self):
        perm = self.wl.perm
        for _ in range(self.wl.epochs):
            if perm is None:
                self.m.partial_fit(self.X, self.y)
            else:
                self.m.partial_fit(self.X[perm], self.y[perm])

    def weights(self):
        return [
            np.concatenate([b[:, None], C.T], axis=1).astype(np.float64)
            for C, b in zip(self.m.coefs_, self.m.intercepts_)
        ]
