"""Shared fixtures: one ``backend`` parametrisation built from what imports here.

NumPy and array-api-strict always run; PyTorch (CPU) and JAX run when installed; CuPy carries
the ``gpu`` marker and is skipped, with the reason, where no CUDA device exists.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

import xpmlp

# JAX users often make implicit rank promotion (an (N, M) array plus an (M,) one) an error;
# the library must not rely on it, so every test runs JAX that way (read when JAX loads)
os.environ.setdefault("JAX_NUMPY_RANK_PROMOTION", "raise")


def _cuda_devices() -> int:
    try:
        cupy = importlib.import_module("cupy")
        return cupy.cuda.runtime.getDeviceCount()
    except Exception:
        return 0


def _backend_params():
    params = []
    for name, module in [
        ("numpy", "numpy"),
        ("array_api_strict", "array_api_strict"),
        ("torch", "torch"),
        ("jax", "jax"),
    ]:
        try:
            importlib.import_module(module)
            marks = ()
        except ImportError:
            marks = pytest.mark.skip(reason=f"{module} is not installed")
        params.append(pytest.param(name, marks=marks, id=name))
    gpu = [pytest.mark.gpu]
    if _cuda_devices() == 0:
        gpu.append(pytest.mark.skip(reason="no CUDA device (CuPy) on this machine"))
    params.append(pytest.param("cupy", marks=gpu, id="cupy"))
    return params


BACKENDS = _backend_params()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """A backend name: numpy, array_api_strict, torch, jax or cupy."""
    return request.param


@pytest.fixture
def xp(backend):
    """The Array API namespace of ``backend``, ready for float64 arrays (on JAX that turns
    ``jax_enable_x64`` on, as a float64 model does)."""
    xp = xpmlp.resolve(backend)[0]
    xpmlp.backend.get_dtype("float64", xp=xp)
    return xp


def to_np(x) -> np.ndarray:
    return np.asarray(xpmlp.to_numpy(x), dtype=np.float64)


def tolerance(dtype: str) -> dict:
    """Relative/absolute tolerances against a float64 NumPy reference."""
    return {"float64": {"rtol": 1e-10, "atol": 1e-12}, "float32": {"rtol": 2e-4, "atol": 2e-5}}[
        dtype
    ]
