"""Backends: resolve a name or namespace to ``(xp, device)`` and move arrays between them.

This is the only module that imports NumPy's array-API peers (CuPy, PyTorch, JAX,
array-api-strict), and it imports each lazily, so ``import xpmlp`` never imports CuPy.
Everything else receives ``xp`` (an Array API namespace, as returned by
``array_api_compat.array_namespace``) as a keyword argument.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import platform
import sys
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

# backend name -> (module to import, pip extra or package that provides it)
BACKENDS = {
    "numpy": ("numpy", "numpy"),
    "cupy": ("cupy", '"xpmlp[cuda12]" or "xpmlp[cuda13]"'),
    "torch": ("torch", "torch"),
    "jax": ("jax.numpy", "jax"),
    "array_api_strict": ("array_api_strict", 'array-api-strict (or "xpmlp[test]")'),
}
DTYPES = ("float32", "float64")
# backend name -> what ``device=`` accepts there (besides None, the backend's default)
DEVICES = {
    "numpy": "'cpu'",
    "cupy": "'cuda', 'cuda:1', ..., a device id such as 1, or a cupy.cuda.Device",
    "torch": "'cpu', 'cuda', 'cuda:1', ... or a torch.device",
    "jax": "'cpu', 'gpu' (or 'cuda'), 'gpu:1', ... or a jax.Device",
    "array_api_strict": "'cpu' or an array_api_strict.Device",
}


class BackendError(ImportError, ValueError):
    """A backend that was asked for is missing or cannot run here, or a device that it
    cannot use (an ``ImportError`` for the first, a ``ValueError`` for the second)."""


def not_installed(exc: BaseException, module: str) -> bool:
    """Whether importing ``module`` failed for want of the package itself, not of one of
    its parts or dependencies (a broken install)."""
    missing = getattr(exc, "name", None) or ""
    return isinstance(exc, ModuleNotFoundError) and missing.split(".")[0] == module.split(".")[0]


def _import_backend(name: str) -> ModuleType:
    module, install = BACKENDS[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        if not_installed(exc, module):
            raise BackendError(
                f"backend={name!r} needs the package {package!r}, which is not installed "
                f"here: pip install {install}"
            ) from exc
        reason = (str(exc).splitlines() or [""])[0]
        raise BackendError(
            f"backend={name!r}: the package {package!r} is installed but cannot be imported "
            f"({type(exc).__name__}: {reason}); repair or reinstall it: pip install {install}"
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


def default_name() -> str:
    """The backend ``backend=None`` means: ``XPMLP_BACKEND``, else ``"numpy"``."""
    return os.environ.get("XPMLP_BACKEND") or "numpy"


def _resolve_device(name: str, xp: ModuleType, device: Any) -> Any:
    """``device`` as backend ``name`` takes it; raises whatever the backend raises."""
    if device is None:
        return None
    if name == "torch":
        import torch

        return torch.device(device)
    if name == "cupy":
        import cupy

        if isinstance(device, cupy.cuda.Device):
            return device
        if isinstance(device, str):
            head, _, tail = device.partition(":")
            if head != "cuda" or not (tail or "0").isdigit():
                raise ValueError("not a CUDA device")
            device = int(tail or 0)
        return cupy.cuda.Device(int(device))
    if name == "jax":
        import jax

        if isinstance(device, str):
            platform, _, tail = device.partition(":")
            if not platform:
                raise ValueError("no platform named")
            devices = jax.devices({"cuda": "gpu"}.get(platform, platform))
            if not 0 <= int(tail or 0) < len(devices):
                raise ValueError(f"JAX has {len(devices)} {platform} device(s) here")
            return devices[int(tail or 0)]
        return device
    if name == "numpy":
        if not (isinstance(device, str) and device == "cpu"):
            raise ValueError("NumPy arrays live on the CPU")
        return "cpu"
    if name == "array_api_strict" and isinstance(device, str) and device == "cpu":
        return xp.Device("CPU_DEVICE")
    return device


def resolve(backend: str | ModuleType | None = None, device: Any = None) -> tuple[Any, Any]:
    """Resolve a backend name or namespace (and a device) to ``(xp, device)``.

    Parameters
    ----------
    backend : {"numpy", "cupy", "torch", "jax", "array_api_strict"}, module or None
        A module is one of these (``jax`` or ``jax.numpy``) or an Array API namespace such
        as ``array_api_compat.numpy``. ``None`` reads the ``XPMLP_BACKEND`` environment
        variable, else NumPy.
    device : str, int or backend device, optional
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, a CuPy device id, ... (see ``DEVICES``);
        ``None`` is the backend's default device.

    Raises
    ------
    BackendError
        For a backend that is not installed (an ``ImportError``) or a device that it cannot
        use (a ``ValueError``).
    """
    given = "backend"
    if backend is None:
        backend = default_name()
        given = "the environment variable XPMLP_BACKEND"  # what the user must change
    if isinstance(backend, ModuleType) and backend.__name__ in BACKENDS:
        backend = backend.__name__  # numpy, torch, ... and the top-level jax package
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
            raise ValueError(f"{given}={backend!r} is unknown; accepted: {', '.join(BACKENDS)}")
        mod = _import_backend(name)
        xp = array_api_compat.array_namespace(mod.asarray([0.0]))
    else:
        raise TypeError(
            f"backend must be a name or a namespace module, got {type(backend).__name__}; "
            f"accepted: {', '.join(BACKENDS)}"
        )
    try:
        resolved = _resolve_device(name, xp, device)
        if resolved is not None and name != "numpy":
            # a CUDA device on a CPU-only build, or one past the last, fails here, when the
            # backend is chosen, rather than inside the first fit; so does one that holds no
            # values (torch's "meta")
            float(xp.asarray([0.0], device=resolved)[0])
    except Exception as exc:  # each backend raises its own (AssertionError, RuntimeError, ...)
        reason = (str(exc).splitlines() or [""])[0]
        present = _present_devices(name)
        raise BackendError(
            f"device={device!r} cannot be used with backend={name!r} here "
            f"({type(exc).__name__}: {reason}); accepted: {DEVICES.get(name, 'its devices')}, "
            "or None for the backend's default"
            + (f"; present here: {', '.join(present)}" if present else "")
        ) from exc
    return xp, resolved


def _present_devices(name: str) -> list[str]:
    """The devices backend ``name`` can reach on this machine, as ``device=`` names them."""
    try:
        if name == "torch":
            import torch

            return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if name == "cupy":
            import cupy

            return [f"cuda:{i}" for i in range(cupy.cuda.runtime.getDeviceCount())]
        if name == "jax":
            import jax

            return [f"{d.platform}:{d.id}" for d in jax.devices()]
    except Exception:  # the list is a hint; its absence is no error
        pass
    return []


def namespace_of(x: Any) -> Any | None:
    """The Array API namespace of ``x``, or ``None`` for lists, scalars and the like."""
    if isinstance(x, (list, tuple, int, float)) or not array_api_compat.is_array_api_obj(x):
        return None
    return array_api_compat.array_namespace(x)


def check_readable(x: Any, name: str) -> None:
    """Refuse an array whose values cannot be read as a dense array: a torch sparse tensor
    (``TypeError``) or one on torch's ``meta`` device, which holds no values
    (``ValueError``); ``name`` is the argument's."""
    if not array_api_compat.is_torch_array(x):
        return
    if x.layout is not sys.modules["torch"].strided:
        raise TypeError(
            f"{name} is a sparse torch tensor ({x.layout}); accepted: dense arrays "
            "(pass .to_dense())"
        )
    if x.device.type == "meta":
        raise ValueError(
            f"{name} is on torch's 'meta' device, which holds no values; accepted: arrays "
            "that hold their values (CPU, CUDA, ...)"
        )


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy-or-view of an array from any backend (GPU arrays are copied to host).

    Floats NumPy has no dtype for (bfloat16, float8, ...) are cast to float32 first, also
    NumPy arrays of ml_dtypes' (``np.asarray`` of a JAX bfloat16 array)."""
    if isinstance(x, np.generic):  # a NumPy scalar (a loss on NumPy): no DLPack to read
        x = np.asarray(x)
    if isinstance(x, np.ndarray):
        if x.dtype.kind == "V" and x.dtype.names is None:  # ml_dtypes' floats are kind V
            try:
                return x.astype(np.float32)  # exact: they are narrower floats
            except (TypeError, ValueError):  # a plain void array: the caller refuses it
                return x
        return x
    xp = namespace_of(x)
    if xp is not None and xp.isdtype(x.dtype, "real floating"):
        if x.dtype not in (xp.float32, xp.float64, getattr(xp, "float16", xp.float32)):
            x = xp.astype(x, xp.float32)
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if array_api_compat.is_torch_array(x):  # conjugate and negative views made real first
        return x.detach().cpu().resolve_conj().resolve_neg().numpy()
    if array_api_compat.is_array_api_obj(x) and not array_api_compat.is_jax_array(x):
        try:
            return np.from_dlpack(x)
        except (TypeError, BufferError, RuntimeError):
            pass
    return np.asarray(x)


TORCH_BLAS = None  # whether torch CPU tensors train on torch's BLAS; None: torch_blas_wins()


def torch_blas() -> bool:
    """Whether torch CPU tensors train on torch's BLAS and threads (:data:`TORCH_BLAS`, by
    default :func:`torch_blas_wins`), or else on NumPy's: then :mod:`_fast` trains them as
    NumPy arrays, and :func:`copy_array` and :func:`all_finite` read them through NumPy,
    so that no torch op wakes torch's threads to spin beside NumPy's BLAS (right after
    fit's torch copies of the weights, workload A's epoch took 4 % longer), as do
    :func:`take_rows` and the score of each epoch on validation data (:meth:`MLP._score`)."""
    return torch_blas_wins(sys.modules["torch"]) if TORCH_BLAS is None else TORCH_BLAS


def torch_blas_wins(torch) -> bool:
    """Whether torch's BLAS does large products faster than NumPy's: MKL (PyTorch's x86
    wheels) on an Intel CPU. On a 2-core Xeon workload A's eight products ran 1.2-1.3x as
    fast on it as on NumPy's OpenBLAS; on a 2-core AMD EPYC, where MKL does not take its
    fastest code, 0.5-0.6x as fast, and workload A's fit on torch tensors took 1.28x the
    time of the same plan on NumPy's BLAS. Another BLAS or CPU: NumPy's, untried."""
    return torch.backends.mkl.is_available() and "GenuineIntel" in _cpu_vendors()


@functools.cache
def _cpu_vendors() -> frozenset:
    """The CPU vendors' names (``vendor_id`` of ``/proc/cpuinfo``; else the words of
    ``platform.processor()``, where Windows names the vendor)."""
    try:
        with open("/proc/cpuinfo") as f:
            return frozenset(
                line.split(":")[-1].strip() for line in f if line.startswith("vendor_id")
            )
    except OSError:
        return frozenset(platform.processor().replace(",", " ").split())


def numpy_views(arrays, xp) -> list | None:
    """NumPy views of ``arrays`` where they are torch CPU tensors trained on NumPy's BLAS
    (:func:`torch_blas`) and NumPy can view them all, to be worked on in their place;
    else None."""
    if backend_name(xp) != "torch" or not all(A.device.type == "cpu" for A in arrays):
        return None
    if torch_blas():
        return None
    try:
        return [A.detach().numpy() for A in arrays]
    except (RuntimeError, TypeError):  # the negative or conjugate bit, bfloat16, ...
        return None


def copy_array(A, *, xp) -> Any:
    """A copy of ``A`` (of namespace ``xp``): by NumPy for torch CPU tensors trained on
    NumPy's BLAS (:func:`torch_blas`), as a tensor on the copy's memory."""
    views = numpy_views([A], xp)
    if views is not None and not A.requires_grad:
        return sys.modules["torch"].from_numpy(views[0].copy(order="K"))
    return xp.asarray(A, copy=True)


def take_rows(A, idx: np.ndarray, *, xp, device=None) -> Any:
    """The rows ``idx`` (host integers) of ``A``: by NumPy for torch CPU tensors trained on
    NumPy's BLAS (:func:`torch_blas`), as a tensor on the result's memory."""
    views = numpy_views([A], xp)
    if views is not None and not A.requires_grad:
        return sys.modules["torch"].from_numpy(np.take(views[0], idx, axis=0))
    return xp.take(A, xp.asarray(idx, device=device), axis=0)


def all_finite(*arrays, xp) -> bool:
    """Whether the ``arrays`` (of namespace ``xp``) hold no NaN or inf, with one host
    synchronisation and no temporary as large as them in the usual case: a finite total
    of the floating ones' sums (for contiguous NumPy floats, sums of squares: a threaded
    BLAS dot, twice as fast) proves it; else, maybe an overflow, it looks closer. Torch CPU
    tensors trained on NumPy's BLAS are read through NumPy (workload A's X took 1.7 ms
    so, 11.8 ms on torch)."""
    if not arrays:
        return True
    views = numpy_views(arrays, xp)
    if views is not None:
        arrays, xp = views, array_api_compat.array_namespace(*views)
    arrays = [A for A in arrays if xp.isdtype(A.dtype, "real floating")]  # ints are finite
    if not arrays:
        return True
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow only means: look closer
        sums = []
        for A in arrays:
            dot = type(A) is np.ndarray and A.flags.c_contiguous
            if dot and A.dtype in (np.float32, np.float64):
                v = A.reshape(-1)
                sums.append(np.dot(v, v))
            else:
                sums.append(xp.sum(A))
        if bool(xp.isfinite(sum(sums))):  # a NaN or inf term, or an overflow: look closer
            return True
    return all(bool(xp.all(xp.isfinite(A))) for A in arrays)


def asarray(x: Any, *, xp: Any, dtype: Any = None, device: Any = None) -> Any:
    """``x`` as an array of namespace ``xp`` on ``device`` with ``dtype``.

    Arrays already in ``xp`` stay where they are unless a device is named; arrays of another
    backend pass through host memory once. Torch tensors are detached: the model's arrays
    never join the caller's autograd graph. NumPy arrays torch cannot take (negative
    strides, another byte order, longdouble, ...) are copied first. Asking JAX for float64
    turns ``jax_enable_x64`` back on if it was switched off (see :func:`get_dtype`).
    """
    name = backend_name(xp)
    if dtype is not None:
        _jax_x64(name, dtype)
    if array_api_compat.is_torch_array(x):
        x = x.detach()
    if namespace_of(x) is not xp and namespace_of(x) is not None:
        if backend_name(namespace_of(x)) != name:
            x = to_numpy(x)
    if isinstance(x, np.ndarray) and name == "torch" and not _torch_takes(x):
        # a native, positively strided copy of a dtype torch knows (the model's, if given)
        host = np.dtype(dtype_name(dtype)) if dtype is not None else x.dtype.newbyteorder("=")
        x = np.array(x, dtype=host, order="C")
    if (
        isinstance(x, np.ndarray)
        and not x.flags.writeable
        and name in ("torch", "array_api_strict")
    ):
        x = np.array(x)  # these would share read-only memory (torch warns); copy it once
    if device is None:
        return xp.asarray(x, dtype=dtype)
    if name == "jax" and array_api_compat.is_jax_array(x):
        import jax

        x = jax.device_put(x, device)  # jnp.asarray refuses an array pinned elsewhere
        return xp.asarray(x, dtype=dtype)
    if array_api_compat.is_cupy_array(x) and not x.flags.c_contiguous:
        if x.device.id != getattr(device, "id", device):
            # CuPy copies between devices only contiguous arrays: made so on its own first
            with x.device:
                x = sys.modules["cupy"].ascontiguousarray(x)
    return xp.asarray(x, dtype=dtype, device=device)


def _torch_takes(x: np.ndarray) -> bool:
    """Whether torch can take ``x`` as it is: native byte order, strides of whole elements
    and none negative (not a field of a record array, not reversed), and a dtype torch has
    (not longdouble, ml_dtypes' bfloat16, ...)."""
    strides = x.strides
    return (
        x.dtype.isnative
        and all(s >= 0 and s % x.itemsize == 0 for s in strides)
        and x.dtype.name in _TORCH_NUMPY
    )


_TORCH_NUMPY = "bool uint8 int8 int16 int32 int64 float16 float32 float64".split()


def get_dtype(dtype: Any, *, xp: Any) -> Any:
    """Resolve ``"float32"``/``"float64"`` (or a dtype object) to ``xp``'s dtype.

    JAX computes in float32 unless ``jax_enable_x64`` is on: float64 on JAX turns it on,
    process-wide (float32 leaves it as it is)."""
    if isinstance(dtype, str):
        name = dtype
    elif dtype is None:  # np.dtype(None) would be float64
        name = "None"
    else:
        try:  # np.float64, jnp.float64, np.dtype("f8"), ...
            name = np.dtype(dtype).name
        except (TypeError, ValueError):  # torch.float64, array_api_strict.float64, ...
            name = str(dtype).rsplit(".", 1)[-1]
    if name not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; accepted: {', '.join(DTYPES)}")
    _jax_x64(backend_name(xp), name)
    return getattr(xp, name)


def _jax_x64(backend: str, dtype: Any) -> None:
    """Turn on ``jax_enable_x64`` for a float64 JAX model (if it is off)."""
    if backend == "jax" and dtype_name(dtype) == "float64":
        import jax

        if not jax.config.jax_enable_x64:
            jax.config.update("jax_enable_x64", True)


def dtype_name(dtype: Any) -> str:
    """``"float32"`` or ``"float64"`` for any backend's floating dtype."""
    s = str(dtype)
    return "float64" if "64" in s else "float32"


def device_of(x: Any) -> Any:
    return array_api_compat.device(x)


def is_writeable(x: Any) -> bool:
    return array_api_compat.is_writeable_array(x)


def updating(x: Any) -> Any:
    """The context of an optimizer's in-place step on ``x``: ``torch.no_grad()`` for a torch
    tensor that requires grad (an ``nn.Parameter``, as ``torch.optim`` steps it), else none."""
    if array_api_compat.is_torch_array(x) and x.requires_grad:
        return sys.modules["torch"].no_grad()
    return contextlib.nullcontext()


def device_scope(xp: Any, device: Any) -> Any:
    """A context in which ``xp`` computes on ``device``: CuPy launches its kernels and cuBLAS
    calls on its current device, not on the arrays' (``cuda:1`` needs it); elsewhere the
    arrays' device decides and this does nothing."""
    if device is not None and backend_name(xp) == "cupy":
        import cupy

        # a fresh Device each time: one keeps a stack of the devices it replaced, which two
        # threads entering the same object would mix up
        return cupy.cuda.Device(device.id)
    return contextlib.nullcontext()


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
