"""Every peer of the benchmark trains as xpmlp does, on a small float64 problem, twice from
``reset()`` (an optimizer's state starts afresh): plain SGD, and D's Adam with the L2 term,
here with an alpha large enough to show (the benchmark's own loss check, rtol 1e-5, cannot
see D's alpha = 1e-4: it moves D's loss by about 5e-7), in shuffled and in stored order."""

import contextlib
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import peers  # noqa: E402
import run as bench  # noqa: E402

PEERS = {  # factory, rtol on the final float64 weights
    "hand-written": (lambda wl: peers.HandNumpy(wl), 1e-10),
    "torch": (lambda wl: peers.Torch(wl), 1e-3),  # its epsilon: sqrt(v / (1 - beta_2**t)) + eps
    "jax": (lambda wl: peers.Jax(wl), 1e-9),
    "sklearn": (lambda wl: peers.Sklearn(wl, "float64"), 1e-9),
    "xpmlp-torch": (lambda wl: peers.XpmlpFit(wl, backend="torch"), 1e-10),
}


@pytest.mark.parametrize("peer", list(PEERS))
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("shuffle", [True, False])
def test_every_peer_trains_as_xpmlp_with_adam_and_l2(peer, optimizer, shuffle):
    rng = np.random.default_rng(0)
    X, T = rng.standard_normal((40, 5)), rng.standard_normal((40, 2))
    wl = bench.Workload(
        "t", "test", [5, 8, 2], "float64", X, T, 16, 0.05, 1, 7, shuffle,
        optimizer=optimizer, alpha=0.5 if optimizer == "adam" else 0.0,
    )  # fmt: skip
    make, rtol = PEERS[peer]
    try:
        runners = [peers.XpmlpFit(wl), make(wl)]
    except peers.Skip as exc:
        pytest.skip(str(exc))
    out = []
    # the JAX peer adds its biases as a JAX user writes it, by rank promotion, which the
    # tests otherwise make an error (conftest)
    allow = sys.modules["jax"].numpy_rank_promotion("allow") if peer == "jax" else None
    with allow or contextlib.nullcontext():
        for r in runners:
            for _ in range(2):
                r.reset()
                r.run()
            out.append(r.weights())
    for A, B in zip(*out):
        np.testing.assert_allclose(B, A, rtol=rtol, atol=rtol)


def test_the_gemm_only_limit_on_torch_does_numpys_products():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    X, T = rng.standard_normal((40, 5)), rng.standard_normal((40, 2))
    wl = bench.Workload("t", "test", [5, 8, 2], "float64", X, T, 16, 0.05, 1, 7, True)
    limits = [peers.GemmLimit(wl), peers.GemmLimit(wl, mod=torch)]
    assert limits[1].name == "GEMM-only limit (torch)"
    for limit in limits:
        limit.run()
    for G, G_torch in zip(limits[0].G, limits[1].G):
        assert np.abs(G).max() > 0
        np.testing.assert_allclose(G_torch.numpy(), G, rtol=1e-12)
