"""Backends: resolve a name or namespace to ``(xp, device)`` and move arrays between them.

This is the only module that imports NumPy's array-API peers (CuPy, PyTorch, JAX,
array-api-strict), and it imports each lazily, so ``import xpmlp`` never imports CuPy.
Everything else receives ``xp`` (an Array API namespace, as returned by
``array_api_compat.array_namespace``) as a keyword argument.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

# backend name -> (module to import, pip extra or package that provides it)
BACKENDS = {
    "numpy": ("numpy", "numpy"),
    "cupy": ("cupy", "xpmlp[cuda12] or xpmlp[cuda13]"),
    "torch": ("torch", "torch"),
    "jax": ("jax.numpy", "jax"),
    "array_api_strict": ("array_api_strict", "array-api-strict (or xpmlp[test])"),
}
DTYPES = ("float32", "float64")


class BackendError(ImportError):
    """A backend that was asked for is missing or cannot run here."""


def _import_backend(name: str) -> ModuleType:
    module, install = BACKENDS[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise BackendError(
            f"backend={name!r} needs the package {module.split('.')[0]!r}, which is not "
            f"installed here: pip install {install}"
        ) from exc
    if name == "cupy":
        try:
            n = mod.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDA driver or runtime missing
            raise BackendError(
                f"backend='cupy' needs a usable CUDA device, but CuPy could not reach one "
                f"({type(exc).__name__}: {exc}); use backend='numpy' on this machine"
            ) from exc
        if n == 0:
            raise BackendError(
                "backend='cupy' needs a CUDA device and none was found; "
                "use backend='numpy' on this machine"
            )
    if name == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)  # honour dtype="float64"
    return mod


def backend_name(xp: ModuleType) -> str:
    """The xpmlp name of an Array API namespace (``"numpy"``, ``"cupy"``, ...)."""
    for name, test in (
        ("numpy", array_api_compat.is_numpy_namespace),
        ("cupy", array_api_compat.is_cupy_namespace),
        ("torch", array_api_compat.is_torch_namespace),
        ("jax", array_api_compat.is_jax_namespace),
        ("array_api_strict", array_api_compat.is_array_api_strict_namespace),
    ):
        if test(xp):
            return name
    return getattr(xp, "__name__", repr(xp))


def _resolve_device(name: str, xp: ModuleType, device: Any) -> Any:
    if device is None:
        return None
    if name == "torch":
        import torch

        try:
            return torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(
                f"device={device!r} is not a torch device; accepted: 'cpu', 'cuda', 'cuda:1', ..."
            ) from exc
    if name == "cupy":
        import cupy

        index = device
        if isinstance(device, str):
            head, _, tail = device.partition(":")
            if head != "cuda" or not (tail or "0").isdigit():
                raise ValueError(
                    f"device={device!r} is not a CUDA device; accepted: 'cuda', 'cuda:1' or 1"
                )
            index = int(tail or 0)
        if isinstance(device, cupy.cuda.Device):
            return device
        return cupy.cuda.Device(int(index))
    if name == "jax":
        import jax

        if isinstance(device, str):
            platform, _, tail = device.partition(":")
            platform = {"cuda": "gpu"}.get(platform, platform)
            try:
                return jax.devices(platform)[int(tail or 0)]
            except (RuntimeError, IndexError) as exc:
                raise ValueError(f"device={device!r}: no such JAX device") from exc
        return device
    if name == "numpy":
        if device not in ("cpu", None):
            raise ValueError(f"device={device!r}: NumPy arrays live on 'cpu' only")
        return "cpu"
    return device


def resolve(backend: str | ModuleType | None = None, device: Any = None) -> tuple[Any, Any]:
    """Resolve a backend name or namespace (and a device) to ``(xp, device)``.

    Parameters
    ----------
    backend : {"numpy", "cupy", "torch", "jax", "array_api_strict"}, module or None
        ``None`` reads the ``XPMLP_BACKEND`` environment variable, else NumPy.
    device : str, int or backend device, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a CuPy device id, ...; ``None`` is the
        backend's default device.
    """
    if backend is None:
        backend = os.environ.get("XPMLP_BACKEND", "numpy") or "numpy"
    if isinstance(backend, ModuleType):
        try:
            xp = array_api_compat.array_namespace(backend.asarray([0.0]))
        except (TypeError, AttributeError) as exc:
            raise TypeError(
                f"backend={backend.__name__!r} is not an Array API array library; accepted: "
                f"{', '.join(BACKENDS)} or their modules"
            ) from exc
        name = backend_name(xp)
        if name == "cupy":
            _import_backend("cupy")  # the same check for a CUDA device
    elif isinstance(backend, str):
        name = backend.strip().lower().replace("-", "_")
        name = {"pytorch": "torch", "np": "numpy", "strict": "array_api_strict"}.get(name, name)
        if name not in BACKENDS:
            raise ValueError(f"backend={backend!r} is unknown; accepted: {', '.join(BACKENDS)}")
        mod = _import_backend(name)
        xp = array_api_compat.array_namespace(mod.asarray([0.0]))
    else:
        raise TypeError(
            f"backend must be a name or a namespace module, got {type(backend).__name__}; "
            f"accepted: {', '.join(BACKENDS)}"
        )
    resolved = _resolve_device(name, xp, device)
    if resolved is not None and name != "numpy":
        _check_usable(name, xp, resolved, device)
    return xp, resolved


def _check_usable(name: str, xp: Any, resolved: Any, device: Any) -> None:
    """Put a tiny array on the device: a CUDA device on a CPU-only build, or one past the
    last, fails here, when the backend is chosen, rather than inside the first ``fit``."""
    try:
        xp.asarray([0.0], device=resolved)
    except Exception as exc:  # each backend raises its own (AssertionError, RuntimeError, ...)
        reason = (str(exc).splitlines() or [""])[0]
        raise BackendError(
            f"device={device!r} cannot be used with backend={name!r} here "
            f"({type(exc).__name__}: {reason}); device=None picks the backend's default"
        ) from exc


def namespace_of(x: Any) -> Any | None:
    """The Array API namespace of ``x``, or ``None`` for lists, scalars and the like."""
    if isinstance(x, (list, tuple, int, float)) or not array_api_compat.is_array_api_obj(x):
        return None
    return array_api_compat.array_namespace(x)


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy-or-view of an array from any backend (GPU arrays are copied to host)."""
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    if array_api_compat.is_array_api_obj(x) and not array_api_compat.is_jax_array(x):
        try:
            return np.from_dlpack(x)
        except (TypeError, BufferError, RuntimeError):
            pass
    return np.asarray(x)


def asarray(x: Any, *, xp: Any, dtype: Any = None, device: Any = None) -> Any:
    """``x`` as an array of namespace ``xp`` on ``device`` with ``dtype``.

    Arrays already in ``xp`` stay where they are unless a device is named; arrays of another
    backend pass through host memory once. Torch tensors are detached: the model's arrays
    never join the caller's autograd graph.
    """
    if array_api_compat.is_torch_array(x):
        x = x.detach()
    if namespace_of(x) is not xp and namespace_of(x) is not None:
        if backend_name(namespace_of(x)) != backend_name(xp):
            x = to_numpy(x)
    if (
        isinstance(x, np.ndarray)
        and not x.flags.writeable
        and backend_name(xp) in ("torch", "array_api_strict")
    ):
        x = np.array(x)  # these would share read-only memory (torch warns); copy it once
    if device is None:
        return xp.asarray(x, dtype=dtype)
    return xp.asarray(x, dtype=dtype, device=device)


def get_dtype(dtype: Any, *, xp: Any) -> Any:
    """Resolve ``"float32"``/``"float64"`` (or a dtype object) to ``xp``'s dtype."""
    name = dtype if isinstance(dtype, str) else getattr(dtype, "name", None) or str(dtype)
    name = name.replace("torch.", "").replace("jnp.", "")
    if name not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; accepted: {', '.join(DTYPES)}")
    return getattr(xp, name)


def dtype_name(dtype: Any) -> str:
    """``"float32"`` or ``"float64"`` for any backend's floating dtype."""
    s = str(dtype)
    return "float64" if "64" in s else "float32"


def device_of(x: Any) -> Any:
    return array_api_compat.device(x)


def is_writeable(x: Any) -> bool:
    return array_api_compat.is_writeable_array(x)


def synchronize(xp: Any) -> None:
    """Wait for queued device work (for timing); a no-op on the CPU backends."""
    name = backend_name(xp)
    if name == "cupy":
        import cupy

        cupy.cuda.get_current_stream().synchronize()
    elif name == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
