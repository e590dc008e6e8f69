"""Speed of xpmlp against its peers, in one run; writes bench/results/<date>-<machine>.md.

Workloads (tanh hidden units, identity output, squared error, plain gradient descent
except in D):

- A, throughput: [784, 512, 512, 10], float32, batch 256, N = 16384 random samples, one
  epoch; samples/s, GFLOP/s and the ratio to a GEMM-only limit (the step's 8 matrix
  products over the same batches and nothing else, timed in the same run).
- B, the notes' per-sample algorithm: [8, 16, 1], float32, batch 1, N = 4000, one epoch.
- C, small full batch: [1, 3, 1], float32, 50 points of sin(pi x), 2000 iterations.
- D, A with scikit-learn's default solver: A's network and data, Adam (eta 0.001) and the
  L2 term alpha = 1e-4 (biases excluded, scaled by 1/batch as in scikit-learn).

Every runner starts from the same initial weights and takes the same batches; after the
run its loss (recomputed in float64 from its final weights) must match xpmlp's, so that no
one is timed doing less work. Times are medians of interleaved repeats, each after a short
pause that lets the other libraries' worker threads go idle. Fresh-process first epochs
and the peak memory of a training run are measured in subprocesses.

    python bench/run.py            # full run, ~4-5 minutes on 2 cores
    python bench/run.py --quick    # A, B, C: ~1 minute on 2 idle cores; <date>-<machine>-quick.md
    python bench/run.py --backend cupy --scale-a 4096 --tf32 off   # on a CUDA machine

OpenBLAS reads OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE when it loads: this script re-executes
itself without them for its own measurements and, when they were set, also times workload A
in a subprocess that keeps them, reporting the BLAS kernel each time ran.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

if __name__ == "__main__" and "XPMLP_BENCH_CHILD" not in os.environ:
    # Unset the BLAS overrides before NumPy loads OpenBLAS, remembering them for the report.
    found = {k: os.environ[k] for k in BLAS_VARS if k in os.environ}
    if found:
        env = {k: v for k, v in os.environ.items() if k not in BLAS_VARS}
        env["XPMLP_BENCH_CHILD"] = "main"
        env["XPMLP_BENCH_BLAS_ENV"] = json.dumps(found)
        os.execve(sys.executable, [sys.executable, *sys.argv], env)

import numpy as np  # noqa: E402

sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
import peers  # noqa: E402

# not peers; xpmlp-torch: MLP.fit on the torch backend, and the limit of torch's BLAS
OWN = ("xpmlp", "xpmlp (loop only)", "xpmlp-pure", "GEMM-only limit")
OWN += ("xpmlp-torch", "GEMM-only limit (torch)")
LIMITS = ("GEMM-only limit", "GEMM-only limit (torch)")  # each runs beside its pair()
PAUSE_S = 0.25  # let the other libraries' worker threads go idle before each timed run


# ------------------------------------------------------------------ workloads


@dataclass
class Workload:
    key: str
    title: str
    sizes: list
    dtype: str
    X: np.ndarray
    T: np.ndarray
    batch: int | None
    lr: float
    epochs: int
    seed: int
    shuffle: bool
    optimizer: str = "sgd"  # or "adam": beta_1 0.9, beta_2 0.999, epsilon 1e-8
    alpha: float = 0.0  # L2 term alpha / (2 n) sum ||W[:, 1:]||^2 of each batch of n
    W0: list = field(default_factory=list)
    perm: np.ndarray | None = None

    @property
    def N(self):
        return self.X.shape[0]

    @property
    def bounds(self):
        B = self.batch or self.N
        return [(s, min(s + B, self.N)) for s in range(0, self.N, B)]

    def __post_init__(self):
        import xpmlp

        rng = np.random.default_rng(self.seed)
        self.W0 = xpmlp.init_weights(self.sizes, rng=rng, init="glorot", activation="tanh")
        for W in self.W0:
            W.flags.writeable = False  # every runner starts from these: none may update them
        if self.shuffle:  # what MLP.fit draws from default_rng(seed) for its first epoch
            self.perm = np.random.default_rng(self.seed).permutation(self.N)

    def flops_per_epoch(self):
        """2 m n k per product: 3 forward, 3 weight gradients, delta propagations."""
        s, total = self.sizes, 0
        for n, e in self.bounds:
            b = e - n
            for l in range(len(s) - 1):
                total += 2 * 2 * b * s[l] * s[l + 1]  # forward and weight gradient
                if l > 0:
                    total += 2 * b * s[l] * s[l + 1]  # delta @ W[:, 1:]
        return total * self.epochs


def workload_a(scale=None):
    n = scale or 512
    D = scale or 784
    N = 16384 if scale is None else 8 * scale
    B = 256 if scale is None else scale
    rng = np.random.default_rng(1)
    X = rng.standard_normal((N, D), dtype=np.float32)
    T = rng.standard_normal((N, 10), dtype=np.float32)
    return Workload("A", "throughput", [D, n, n, 10], "float32", X, T, B, 0.01, 1, 11, True)


def workload_d():
    wl = workload_a()
    wl.key, wl.title = "D", "A with Adam and L2 (scikit-learn's default solver)"
    wl.optimizer, wl.alpha, wl.lr = "adam", 1e-4, 1e-3
    return wl


def workload_b():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((4000, 8))
    T = np.sin(X.sum(axis=1, keepdims=True) / 2)
    return Workload("B", "per-sample (notes)", [8, 16, 1], "float32", X, T, 1, 0.01, 1, 12, True)


def workload_c():
    x = np.linspace(-1, 1, 50)[:, None]
    T = np.sin(np.pi * x)
    return Workload(
        "C", "small full batch", [1, 3, 1], "float32", x, T, None, 0.1, 2000, 13, False
    )


def loss_of(weights, wl):
    """Mean of 1/2 ||y_n - t_n||^2 over (at most 2048 of) the workload's samples, float64,
    from any runner's final weights."""
    Z = wl.X[:2048].astype(np.float64)
    for l, W in enumerate(weights):
        A = Z @ W[:, 1:].T + W[:, 0]
        Z = np.tanh(A) if l < len(weights) - 1 else A
    R = Z - wl.T[:2048]
    return float(0.5 * np.mean(np.sum(R * R, axis=1)))


# ------------------------------------------------------------------ runners


def make_runners(wl, args):
    """(name, factory) pairs: xpmlp first, then the GEMM limit (A) and the peers."""
    gpu = args.backend == "cupy"
    mod = np
    if gpu:
        import cupy as mod  # noqa: F811
    out = [("xpmlp", lambda: peers.XpmlpFit(wl, backend=args.backend))]
    # before/after (the same fit with the NumPy fast path off) and the loop alone: in the
    # full run, not in the quick one's minute
    if not gpu and not args.quick:
        out.append(("xpmlp-pure", lambda: peers.XpmlpPure(wl, backend=args.backend)))
    if wl.key == "A" and not args.quick:
        out.append(("xpmlp (loop only)", lambda: peers.XpmlpLoop(wl, backend=args.backend)))
    if wl.key == "A":
        out.append(("GEMM-only limit", lambda: peers.GemmLimit(wl, mod=mod)))
    want = set(args.peers.split(","))
    if "torch" in want and not gpu:  # xpmlp on the torch backend, and torch's BLAS's limit
        out.append(("xpmlp-torch", lambda: peers.XpmlpFit(wl, backend="torch")))
        if wl.key == "A":
            out.append(("GEMM-only limit (torch)", lambda: peers.GemmLimit(wl, mod=_torch())))
    if "numpy" in want:
        out.append(("hand-written", lambda: peers.HandNumpy(wl, mod=mod)))
    if "torch" in want:
        dev = "cuda" if gpu else "cpu"
        out.append(("torch", lambda: peers.Torch(wl, device=dev, tf32=args.tf32 == "on")))
    if "jax" in want:
        plat = "gpu" if gpu else "cpu"
        out.append(("jax", lambda: peers.Jax(wl, platform=plat, tf32=args.tf32 == "on")))
    if "sklearn" in want and not gpu:
        for dt in ("float32", "float64"):
            out.append((f"sklearn-{dt}", lambda dt=dt: peers.Sklearn(wl, dt)))
    return out


def _torch():
    if not peers.available("torch"):
        raise peers.Skip("torch is not installed")
    import torch

    return torch


def time_workload(wl, args, log):
    """Medians of interleaved repeats; the loss check of every runner against xpmlp's."""
    runners, skipped = [], []
    for key, make in make_runners(wl, args):
        try:
            r = make()
            r.reset()  # warm-up: imports, JIT compilation, first-touch of buffers
            r.run()
        except peers.Skip as exc:
            skipped.append((key, str(exc)))
            continue
        except Exception as exc:  # one peer's failure (e.g. out of memory) is reported
            if key == "xpmlp":
                raise
            log(f"  {key} failed: {type(exc).__name__}: {exc}")
            skipped.append((key, f"failed: {type(exc).__name__}: {exc}"))
            continue
        r.key = key
        runners.append(r)
    times = {r.key: [] for r in runners}
    # a GEMM-only limit runs right beside its xpmlp (after it, then before it, in turn), so
    # that their paired ratio sees the machine as it was for both
    keys = {r.key for r in runners}
    limits = [r for r in runners if pair(r.key) in keys]
    others = [r for r in runners if r not in limits]
    for rep in range(args.repeats):
        k = rep % len(others)
        order = others[k:] + others[:k]  # rotate the order each repeat
        for limit in limits:
            i = next(i for i, r in enumerate(order) if r.key == pair(limit.key))
            order.insert(i + 1 - rep % 2, limit)
        for r in order:
            r.reset()
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            r.run()
            times[r.key].append(time.perf_counter() - t0)
        log(f"  {wl.key} repeat {rep + 1}/{args.repeats}")
    rows = []
    ref_loss = None
    for r in runners:
        W = r.weights()
        loss = None if W is None else loss_of(W, wl)
        if r.key == "xpmlp":
            ref_loss = loss
        rows.append(
            {
                "key": r.key,
                "name": r.name,
                "dtype": r.dtype,
                "median_s": statistics.median(times[r.key]),
                "min_s": min(times[r.key]),
                "times_s": times[r.key],
                "loss": loss,
                "info": r.info(),
            }
        )
    loss0 = loss_of(wl.W0, wl)
    for row in rows:
        if row["loss"] is None:
            row["agree"] = "n/a (no training)"
            continue
        # float32 runners agree to ~1e-6 here; 2e-3 let a runner skip one of A's 64 batches
        tol = 1e-7 if row["dtype"] == "float64" and wl.dtype == "float64" else 1e-5
        if args.backend != "numpy":
            tol = 1e-4  # GPU products sum in another order
        if args.tf32 == "on":  # TF32 products carry 10-bit mantissas; one of the scaled-up
            tol = 5e-3  # A's 8 batches moves its loss by about 1.4e-2
        rel = abs(row["loss"] - ref_loss) / abs(ref_loss)
        row["rel_loss_diff"] = rel
        row["agree"] = "yes" if rel <= tol else f"NO (tol {tol:g})"
    return {"rows": rows, "skipped": skipped, "loss0": loss0, "ref_loss": ref_loss}


# ------------------------------------------------------------------ subprocess probes


def child_env(extra=None, keep_blas=False):
    env = dict(os.environ)
    env["XPMLP_BENCH_CHILD"] = "probe"
    if not keep_blas:
        for k in BLAS_VARS:
            env.pop(k, None)
    env.update(extra or {})
    return env


def run_child(argv, env, timeout=300):
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv]
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]}


def probe_first_epoch(args):
    """In a fresh process: import time, then the first run (compilation included). Setup
    is the runner's own imports and construction: xpmlp's import (the workloads draw
    their weights with it) counts for the xpmlp runners, as torch's counts for PyTorch."""
    t = time.perf_counter()
    import xpmlp  # noqa: F401

    xpmlp_import = time.perf_counter() - t if args.runner.startswith("xpmlp") else 0.0
    t0 = time.perf_counter()
    wl = (
        WORKLOADS[args.workload](args.scale_a)
        if args.workload == "A"
        else WORKLOADS[args.workload]()
    )
    factories = dict(make_runners(wl, args))
    t1 = time.perf_counter()
    try:
        r = factories[args.runner]()
    except peers.Skip as exc:
        return {"skip": str(exc)}
    r.reset()
    t2 = time.perf_counter()
    r.run()
    t3 = time.perf_counter()
    return {"setup_s": t2 - t1 + xpmlp_import, "first_run_s": t3 - t2, "data_s": t1 - t0}


def probe_memory(args):
    """Peak traced memory of training workload A, against what training must hold."""
    import gc
    import tracemalloc

    import xpmlp
    from xpmlp import optim, train

    wl = workload_a(args.scale_a)
    B = wl.batch
    item = np.dtype(wl.dtype).itemsize
    s = wl.sizes
    weights = sum(W.size for W in wl.W0) * item
    batch = B * (s[0] + s[-1]) * item
    a_hidden = sum(B * n for n in s[1:-1]) * item  # A of the hidden layers: tanh needs Z only
    stored = 2 * a_hidden + B * s[-1] * item  # A and Z of the hidden layers; Y = A
    reference = {
        "weights": weights,
        "gradients": weights,
        "optimizer state (SGD)": 0,
        "batch (X_b, T_b)": batch,
        "stored activations (A, Z)": stored,
    }
    out = {"reference": reference, "reference_total": sum(reference.values())}
    out["reference_total_z_only"] = out["reference_total"] - a_hidden
    tracemalloc.start()
    # 1. the loop: weights in the backend, data already converted
    net = xpmlp.MLP(wl.sizes, "tanh", "identity", dtype=wl.dtype)
    net.weights = list(wl.W0)
    cfg = train.Config(epochs=1, batch_size=B, learning_rate=wl.lr)
    X, T = net._array(wl.X), net._array(wl.T)
    weights_list = [net.xp.asarray(W, copy=True) for W in net.weights]
    del net
    gc.collect()  # what cycles hold is freed now, not at a collection inside the measurement
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    import array_api_compat.numpy as xp

    from xpmlp.activations import get_activation
    from xpmlp.objectives import get_output

    train.train(
        weights_list,
        X,
        T,
        activation=get_activation("tanh"),
        output=get_output("identity"),
        optimizer=optim.sgd(),
        config=cfg,
        state=train.LoopState(),
        rng=np.random.default_rng(0),
        xp=xp,
    )
    peak = tracemalloc.get_traced_memory()[1]
    out["loop_peak"] = peak - base + weights  # the weights were allocated before the reset
    del weights_list
    # 2. MLP.fit: input checks, conversion, copies, the loop
    net = xpmlp.MLP(wl.sizes, "tanh", "identity", dtype=wl.dtype)
    net.weights = list(wl.W0)
    gc.collect()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    net.fit(wl.X, wl.T, epochs=1, batch_size=B, learning_rate=wl.lr)
    peak = tracemalloc.get_traced_memory()[1]
    out["fit_peak"] = peak - base + weights
    tracemalloc.stop()
    import resource

    out["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def probe_blas_env(args):
    """Workload A (xpmlp vs the GEMM-only limit) in a process that keeps the BLAS overrides."""
    wl = workload_a(args.scale_a)
    rs = [peers.XpmlpFit(wl), peers.GemmLimit(wl)]
    for r in rs:
        r.reset()
        r.run()
    t = [[], []]
    for _ in range(max(3, args.repeats // 2)):
        for k, r in enumerate(rs):
            r.reset()
            time.sleep(PAUSE_S)
            t0 = time.perf_counter()
            r.run()
            t[k].append(time.perf_counter() - t0)
    x, g = statistics.median(t[0]), statistics.median(t[1])
    return {
        "xpmlp_s": x,
        "gemm_s": g,
        "samples_per_s": wl.N / x,
        "pct_gemm": 100 * g / x,
        "blas": blas_info(),
        "env": {k: os.environ.get(k) for k in BLAS_VARS},
    }


# ------------------------------------------------------------------ environment


def blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "threadpoolctl is not installed"}]
    keep = ("user_api", "internal_api", "version", "architecture", "num_threads")
    return [
        {k: i.get(k) for k in keep} | {"lib": Path(i.get("filepath", "")).name}
        for i in threadpool_info()
    ]


def cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name():
    """The name of the CUDA device CuPy computes on (``CUDA_VISIBLE_DEVICES`` applied)."""
    try:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        return props["name"].decode()
    except Exception:  # no CuPy or no device: nvidia-smi's first line, if any
        pass
    try:
        p = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return p.stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown GPU"


def machine_tag(backend):
    if backend == "cupy":
        words = gpu_name().replace("NVIDIA", "").split()
        return "gpu-" + "-".join(w.lower() for w in words[:2] if w.isalnum())
    name = cpu_name()
    for junk in ("(R)", "(TM)", "CPU", "Processor", "@"):
        name = name.replace(junk, " ")
    words = [w.lower() for w in name.split() if w.replace("-", "").isalnum()][:3]
    return "cpu-" + "-".join(words or ["unknown"])


def versions():
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("xpmlp", "array_api_compat", "torch", "jax", "sklearn", "cupy", "threadpoolctl"):
        if peers.available(mod):
            try:
                out[mod] = __import__(mod).__version__
            except Exception as exc:  # a broken install is reported, not fatal
                out[mod] = f"import failed: {type(exc).__name__}"
    if "xpmlp" in out and not out["xpmlp"].startswith("import failed"):
        from xpmlp import _fast

        compiled = _fast.KERNELS is not None
        out["xpmlp kernels"] = "compiled" if compiled else "ufunc passes (not compiled or off)"
    return out


def threads():
    out = {"cores (os.cpu_count)": os.cpu_count()}
    if peers.available("torch"):
        import torch

        out["torch intra-op threads"] = torch.get_num_threads()
    out["load average (1 min) at start"] = round(os.getloadavg()[0], 2)
    return out


# ------------------------------------------------------------------ report


def fmt_t(wl, s):
    if wl.key in ("A", "D"):
        return f"{wl.N * wl.epochs / s:,.0f} samples/s"
    if wl.key == "B":
        return f"{s / (wl.N * wl.epochs) * 1e6:.1f} us/sample"
    return f"{s / wl.epochs * 1e6:.1f} us/iteration"


def paired(ref_times, times) -> list[float]:
    """``ref / time`` of every repeat, each pair timed in the same repeat."""
    return [a / b for a, b in zip(ref_times, times)]


def paired_ratio(ref_times, times):
    """Median over repeats of :func:`paired`."""
    return statistics.median(paired(ref_times, times))


def paired_quartiles(ref_times, times) -> str:
    """``median (q1-q3)`` of :func:`paired`: where the quartiles straddle 1, the two are
    level within this run's noise."""
    r = paired(ref_times, times)
    if len(r) < 2:
        return f"{r[0]:.2f}x" if r else "n/a"
    q1, q2, q3 = _quartiles(r)
    return f"{q2:.2f}x ({q1:.2f}-{q3:.2f})"


def spread_pct(times):
    """Half the interquartile range, in % of the median: how far a repeat typically strays."""
    if len(times) < 2:
        return 0.0
    q1, _, q3 = _quartiles(times)
    return 50 * (q3 - q1) / statistics.median(times)


def _quartiles(x) -> list[float]:
    """Quartiles within the data (interpolated between the repeats): the default method
    extrapolates past the least and the greatest of a few repeats (2: 1.5x their range)."""
    return statistics.quantiles(x, n=4, method="inclusive")


def report(results, meta, args):
    L = []
    add = L.append
    add(f"# xpmlp benchmark, {meta['date']}, {meta['machine']}")
    add("")
    add(f"Command: `python bench/run.py {' '.join(meta['argv'])}`. ")
    add(
        "Times are medians of interleaved repeats after a short pause; spread: half the "
        "interquartile range of a runner's repeats, in % of its median. Ratios are "
        "peer time / xpmlp time (> 1: xpmlp is faster). Loss: float64 loss recomputed from "
        "each runner's final weights (first 2048 samples), checked against xpmlp's. "
        "A's % of GEMM compares medians; its paired column is the median over repeats of "
        "the GEMM-only limit's time / the runner's time within the same repeat, which cancels "
        "the machine's drift between repeats."
    )
    add("")
    targets = []
    for key, res in results["workloads"].items():
        wl = WL[key]
        rows = res["rows"]
        by = {r["key"]: r for r in rows}
        x = by["xpmlp"]["median_s"]
        solver = "" if wl.optimizer == "sgd" else f", {wl.optimizer} (eta {wl.lr:g})"
        solver += f", alpha {wl.alpha:g}" if wl.alpha else ""
        add(
            f"## {key}: {wl.title}: {wl.sizes}, {wl.dtype}, batch {wl.batch or wl.N}, "
            f"N={wl.N}{solver}"
        )
        add("")
        if key == "A":
            g = by.get("GEMM-only limit", {}).get("median_s")
            add(
                "| runner | dtype | speed | spread | GFLOP/s | % of GEMM | paired | peer/xpmlp "
                "| loss | agrees |"
            )
            add("|---|---|---|---|---|---|---|---|---|---|")
        else:
            add("| runner | dtype | speed | spread | peer/xpmlp | loss | agrees |")
            add("|---|---|---|---|---|---|---|")
        for r in rows:
            t = r["median_s"]
            loss = "" if r["loss"] is None else f"{r['loss']:.6g}"
            ratio = f"{t / x:.2f}x"
            name = r["name"] + (f" ({r['info']})" if r["info"] else "")
            spread = f"±{spread_pct(r['times_s']):.0f}%"
            if key == "A":
                gf = wl.flops_per_epoch() / t / 1e9
                lim = by.get(limit_of(r["key"]))  # its own BLAS's limit for the torch rows
                pct = f"{100 * lim['median_s'] / t:.1f}%" if lim else ""
                paired = f"{100 * paired_ratio(lim['times_s'], r['times_s']):.1f}%" if lim else ""
                add(
                    f"| {name} | {r['dtype']} | {fmt_t(wl, t)} | {spread} | {gf:.1f} | {pct} "
                    f"| {paired} | {ratio} | {loss} | {r['agree']} |"
                )
            else:
                add(
                    f"| {name} | {r['dtype']} | {fmt_t(wl, t)} | {spread} | {ratio} | {loss} "
                    f"| {r['agree']} |"
                )
        for k, why in res["skipped"]:
            add(f"| {k} | | skipped: {why} | | | | |")
        add("")
        noisy = [
            r["name"] for r in rows if len(r["times_s"]) > 1 and spread_pct(r["times_s"]) > 20
        ]
        if noisy:
            add(
                f"Spread above 20 % ({', '.join(noisy)}): the machine was busy or the repeats "
                "too few, so ratios here are uncertain by as much; more --repeats narrow them."
            )
        if key == "A" and "xpmlp-torch" in by:
            blas = "torch's" if limit_of("xpmlp-torch") == LIMITS[1] else "NumPy's"
            add(
                f"xpmlp's plan for torch tensors does its products on {blas} BLAS here (torch's "
                "only where it is MKL on an Intel CPU): its row gives its % of the GEMM-only "
                f"limit on {blas} BLAS; the GEMM-only limit (torch) row, if any, of torch's "
                "own; the other rows, of the GEMM-only limit on NumPy's."
            )
        add(f"Loss before training {res['loss0']:.6g}; xpmlp after {res['ref_loss']:.6g}.")
        if "xpmlp-pure" in by:
            add(
                f"Before/after: the NumPy fast path is {by['xpmlp-pure']['median_s'] / x:.2f}x "
                "as fast as the pure Array API path (same fit, XPMLP_FAST=0)."
            )
        add("")
        peers_ = [r for r in rows if r["key"] not in OWN]
        goal = 95 if args.backend == "numpy" else 90  # % of the GEMM-only limit: CPU, GPU
        if key == "A" and not g:
            targets.append((f"A >= {goal}% of the GEMM-only limit", False, "not measured"))
        if key == "A" and g:
            loop = by.get("xpmlp (loop only)")
            extra = f" (loop only: {100 * g / loop['median_s']:.1f}%)" if loop else ""
            met, how = of_limit(goal, by["GEMM-only limit"], by["xpmlp"], extra)
            targets.append((f"A >= {goal}% of the GEMM-only limit", met, how))
        claim = f"{key} faster than every peer"
        if key == "D":
            claim += " (beyond the issue's targets)"
        if key == "A" and args.backend != "numpy":  # the GPU target: no slower than PyTorch
            peers_ = [r for r in peers_ if r["key"] == "torch"]
            claim = "A no slower than PyTorch eager"
            if not peers_:
                targets.append((claim, False, "not measured: no PyTorch CUDA run (see above)"))
        if peers_:
            targets.append((claim, *beats(peers_, by["xpmlp"])))
        xt = by.get("xpmlp-torch")  # the same on the torch backend (CPU)
        lim_t = limit_of("xpmlp-torch") if xt and key == "A" else None
        if lim_t in by:
            met, how = of_limit(goal, by[lim_t], xt)
            which = " (torch)" if lim_t == LIMITS[1] else " on NumPy's BLAS"
            claim_t = f"A >= {goal}% of the GEMM-only limit{which}, backend torch"
            targets.append((claim_t, met, how))
        if xt and peers_:
            targets.append((f"{claim}, backend torch", *beats(peers_, xt)))
    add("## Targets")
    add("")
    add("| target | met | by how much |")
    add("|---|---|---|")
    for name, met, how in targets:
        add(f"| {name} | {'yes' if met else 'NO'} | {how} |")
    mem = results.get("memory")
    if mem and "reference" in mem:
        ref = mem["reference_total"]
        add("")
        add("## Memory, workload A (tracemalloc peak, subprocess)")
        add("")
        add("| what | MiB | / reference |")
        add("|---|---|---|")
        for k, v in mem["reference"].items():
            add(f"| reference: {k} | {v / 2**20:.2f} | |")
        add(f"| **reference total** | {ref / 2**20:.2f} | 1.00 |")
        for what, key in (
            ("training loop peak (train.train)", "loop_peak"),
            ("MLP.fit peak (input checks, copies, loop)", "fit_peak"),
        ):
            add(f"| {what} | {mem[key] / 2**20:.2f} | {mem[key] / ref:.2f} |")
        add("")
        r_loop, r_fit = mem["loop_peak"] / ref, mem["fit_peak"] / ref
        add(
            f"Target <= 1.2x: training loop {'met' if r_loop <= 1.2 else 'NOT met'} "
            f"({r_loop:.2f}x); MLP.fit {'met' if r_fit <= 1.2 else 'NOT met'} ({r_fit:.2f}x). "
            f"Process ru_maxrss {mem['ru_maxrss_mib']:.0f} MiB (data and libraries included)."
        )
        z = mem.get("reference_total_z_only")
        if z:
            add(
                f"Counting only Z of the hidden layers (tanh's h' needs z alone; xpmlp keeps "
                f"[1 | Z]), the reference is {z / 2**20:.2f} MiB: the loop "
                f"{mem['loop_peak'] / z:.2f}x, MLP.fit {mem['fit_peak'] / z:.2f}x."
            )
    elif mem:
        add("")
        add(f"Memory probe failed: {mem}")
    fe = results.get("first_epoch")
    if fe:
        add("")
        add("## Fresh process: first run (subprocess; compilation and warm-up included)")
        add("")
        add("| workload | runner | first run, s | steady median, s | setup, s |")
        add("|---|---|---|---|---|")
        for (key, runner), v in fe.items():
            steady = next(
                (
                    r["median_s"]
                    for r in results["workloads"].get(key, {}).get("rows", [])
                    if r["key"] == runner
                ),
                None,
            )
            st = "" if steady is None else f"{steady:.3f}"
            if "first_run_s" in v:
                add(f"| {key} | {runner} | {v['first_run_s']:.3f} | {st} | {v['setup_s']:.3f} |")
            else:
                add(f"| {key} | {runner} | {v.get('skip') or v.get('error')} | {st} | |")
    add("")
    add("## BLAS environment variables")
    add("")
    benv = meta["blas_env"]
    if benv:
        add(
            f"The environment set {benv}; the measurements above ran with them unset "
            f"(BLAS kernel: {kernels(meta['blas'])})."
        )
        v = results.get("blas_env_run", {})
        if "samples_per_s" in v:
            add(
                f"With them set: workload A xpmlp {v['samples_per_s']:,.0f} samples/s, "
                f"{v['pct_gemm']:.1f}% of the GEMM-only limit of that run; BLAS kernel: "
                f"{kernels(v['blas'])}."
            )
        else:
            add(f"Run with them set failed: {v}")
    else:
        add(
            f"Neither {' nor '.join(BLAS_VARS)} was set; one run, BLAS kernel "
            f"{kernels(meta['blas'])}."
        )
    add("")
    add("## Environment")
    add("")
    add(f"- machine: {meta['cpu']}" + (f", {meta['gpu']}" if meta.get("gpu") else ""))
    add("- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    add("- threads: " + ", ".join(f"{k} {v}" for k, v in meta["threads"].items()))
    add(f"- load average (1 min) at the end: {meta['load_end']:.2f}")
    add("- BLAS (threadpoolctl): " + "; ".join(json.dumps(b) for b in meta["blas"]))
    if args.backend == "numpy":
        add("- JAX on CPU: XLA's default intra-op thread pool (all cores).")
    else:
        add(f"- TF32: CUPY_TF32={meta.get('cupy_tf32')}, peers' TF32 {args.tf32}")
    add(f"- repeats: {args.repeats}; pause before each timed run: {PAUSE_S} s")
    add("")
    return "\n".join(L)


def pair(limit):
    """The runner a GEMM-only limit runs beside and is the limit of: NumPy's, xpmlp's;
    torch's, xpmlp's on the torch backend where its plan does the products on torch's
    BLAS; else None."""
    if limit == LIMITS[0]:
        return "xpmlp"
    if limit == LIMITS[1] and peers.available("torch") and torch_plan_on_torch_blas():
        return "xpmlp-torch"
    return None


def limit_of(key):
    """The GEMM-only limit a row of workload A is measured against: its own, the one it is
    the pair of, else NumPy's."""
    if key in LIMITS:
        return key
    return next((limit for limit in LIMITS if pair(limit) == key), LIMITS[0])


@functools.cache
def torch_plan_on_torch_blas():
    """Whether xpmlp's plan for torch CPU tensors does its products on torch's BLAS (MKL
    on an Intel CPU), not on NumPy's."""
    _torch()
    from xpmlp import backend

    return backend.torch_blas()


def of_limit(goal, limit, row, extra=""):
    """(met, how): ``row``'s % of ``limit`` by medians against ``goal``."""
    pct = 100 * limit["median_s"] / row["median_s"]
    paired = paired_ratio(limit["times_s"], row["times_s"])
    how = f"{pct:.1f}%{extra}; median of the paired per-repeat ratios {100 * paired:.1f}%"
    return pct >= goal, how + ("" if pct >= goal else f"; missed by {goal - pct:.1f} points")


def beats(peers_, row):
    """(met, how): whether ``row`` is faster than every peer, and by how much."""
    x = row["median_s"]
    best = min(peers_, key=lambda r: r["median_s"])
    slower_than = [r for r in peers_ if r["median_s"] < x]
    how = f"fastest peer {best['name']}: {best['median_s'] / x:.2f}x xpmlp's time"
    if slower_than:
        how += "; slower than " + ", ".join(
            f"{r['name']} by {x / r['median_s']:.2f}x" for r in slower_than
        )
    close = [r for r in peers_ if r["median_s"] < 1.1 * x]
    if close:  # within the repeats' spread: the paired ratios and their quartiles
        how += "; paired per repeat (quartiles): " + ", ".join(
            f"{r['name']} {paired_quartiles(r['times_s'], row['times_s'])}" for r in close
        )
    return not slower_than, how


def kernels(blas):
    k = [
        f"{b.get('internal_api')} {b.get('version')} {b.get('architecture')} ({b.get('lib')})"
        for b in blas
        if b.get("user_api") == "blas"
    ]
    return ", ".join(k) or "unknown"


WORKLOADS = {"A": workload_a, "B": workload_b, "C": workload_c, "D": workload_d}
WL: dict = {}


def main(argv=None):
    p = argparse.ArgumentParser(  # no abbreviations: shown_argv drops --out by its full name
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter, allow_abbrev=False
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="A, B and C, 3 repeats, no before/after or loop-only rows, fewer probes",
    )
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument(
        "--workloads", default=None, help="default A,B,C,D (A,B,C with --quick: the targets)"
    )
    p.add_argument("--peers", default="numpy,torch,jax,sklearn")
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    p.add_argument("--scale-a", type=int, default=None, help="A as [s, s, s, 10], batch s")
    p.add_argument("--tf32", default="off", choices=["off", "on"], help="peers' TF32 (GPU)")
    p.add_argument("--out", default=str(HERE / "results"))
    p.add_argument("--no-probes", action="store_true", help="skip subprocess probes")
    p.add_argument(
        "--tag",
        default=None,
        help="suffix of the results file name (default: none; '-quick' with --quick, so that "
        "a quick run does not replace a full run's results)",
    )
    # internal: subprocess probes
    p.add_argument(
        "--probe", choices=["first-epoch", "memory", "blas-env"], help=argparse.SUPPRESS
    )
    p.add_argument("--workload", help=argparse.SUPPRESS)
    p.add_argument("--runner", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.backend == "cupy":  # CuPy reads it at its first matmul: the same TF32 as the peers
        os.environ["CUPY_TF32"] = "1" if args.tf32 == "on" else "0"
    if args.repeats is None:
        args.repeats = 3 if args.quick else 11
    if args.tag is None:
        args.tag = "-quick" if args.quick else ""
    if args.workloads is None:
        args.workloads = "A,B,C" if args.quick else "A,B,C,D"
    if args.probe:
        fn = {"first-epoch": probe_first_epoch, "memory": probe_memory, "blas-env": probe_blas_env}
        try:
            print(json.dumps(fn[args.probe](args)))
        except Exception as exc:  # report the failure to the parent, do not hide it
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    blas_env = json.loads(os.environ.get("XPMLP_BENCH_BLAS_ENV", "{}"))
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_tag(args.backend),
        "cpu": cpu_name(),
        "gpu": gpu_name() if args.backend == "cupy" else None,
        "argv": shown_argv(sys.argv[1:] if argv is None else argv),
        "versions": versions(),
        "threads": threads(),
        "blas_env": blas_env,
        "cupy_tf32": os.environ.get("CUPY_TF32"),
    }
    results = {"workloads": {}}
    for key in args.workloads.split(","):
        wl = workload_a(args.scale_a) if key == "A" else WORKLOADS[key]()
        WL[key] = wl
        log(f"workload {key}: {wl.sizes}, batch {wl.batch or wl.N}, N={wl.N}")
        results["workloads"][key] = time_workload(wl, args, log)
        write(results, meta, args, t_start)
    if not args.no_probes:
        common = ["--backend", args.backend, "--peers", args.peers, "--tf32", args.tf32]
        if args.scale_a:
            common += ["--scale-a", str(args.scale_a)]
        if args.backend == "numpy":  # tracemalloc sees host memory only
            log("probe: memory")
            results["memory"] = run_child(["--probe", "memory", *common], child_env())
        fe = {}
        for key in args.workloads.split(","):
            if (args.quick and key != "A") or key == "D":  # D's fresh processes are A's
                continue
            names = [k for k, _ in make_runners(WL[key], args) if k not in OWN[1:]]
            if key != "A":  # fresh-process costs are import and compilation: A shows them all
                names = [k for k in names if not k.startswith("sklearn")]
            for name in names if not args.quick else ["xpmlp"]:
                log(f"probe: first run {key} {name}")
                fe[(key, name)] = run_child(
                    ["--probe", "first-epoch", "--workload", key, "--runner", name, *common],
                    child_env(),
                )
        results["first_epoch"] = fe
        if blas_env:
            log("probe: workload A with the BLAS variables set")
            results["blas_env_run"] = run_child(
                ["--probe", "blas-env", "--repeats", str(args.repeats), *common],
                child_env(blas_env, keep_blas=True),
            )
    text = write(results, meta, args, t_start, final=True)
    print(text)
    log(f"wrote the results under {args.out}")


def shown_argv(argv):
    """The command's arguments as the report shows them: without ``--out``'s folder, a
    path of the machine that ran it (the report lies in it)."""
    shown, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--out":
            skip = True
        elif not a.startswith("--out="):
            shown.append(a)
    return shown


def write(results, meta, args, t_start, final=False):
    """Write the markdown report and the raw numbers (also after each workload, so that a run
    cut short by a time limit still leaves what it measured)."""
    meta["load_end"] = os.getloadavg()[0]
    meta["blas"] = blas_info()
    text = report(results, meta, args)
    text += f"Wall time of the benchmark: {time.perf_counter() - t_start:.0f} s"
    text += ".\n" if final else " so far (run incomplete: later sections missing).\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{meta['date']}-{meta['machine']}{args.tag}"
    (out / f"{stem}.md").write_text(text)
    raw = {
        "meta": meta,
        "workloads": results["workloads"],
        "memory": results.get("memory"),
        "first_epoch": {f"{k}/{r}": v for (k, r), v in results.get("first_epoch", {}).items()},
        "blas_env_run": results.get("blas_env_run"),
    }
    (out / f"{stem}.json").write_text(json.dumps(raw, indent=1, default=str))
    return text


if __name__ == "__main__":
    main()
