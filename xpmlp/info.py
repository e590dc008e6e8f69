"""The environment report of ``xpmlp info``: versions, backends, CUDA devices and the BLAS.

Nothing here may fail: a backend that is missing or broken, a GPU without a driver, or an
unknown BLAS each becomes a line of the report.
"""

from __future__ import annotations

import importlib
import platform
from pathlib import Path
from typing import Any

from . import __version__
from .backend import BACKENDS, default_name, not_installed, resolve
from .tables import one_line


def print_info() -> None:
    """Print the report, one section at a time, to standard output."""
    print(f"xpmlp {__version__}")
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.platform()}"
    )
    print(f"default backend: {_default_backend()}")
    print("backends:")
    modules = {}
    for name in (*BACKENDS, "array_api_compat"):
        try:
            mod = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a broken install must not stop the report
            status = "not installed" if not_installed(exc, name) else one_line(exc)
        else:
            modules[name] = mod
            status = getattr(mod, "__version__", "installed")
        print(f"  {name:<17} {status}")
    print("CUDA devices:")
    for line in cuda_devices(modules):
        print(f"  {line}")
    print("BLAS:")
    for line in blas():
        print(f"  {line}")
    print(f"NumPy fast path: {fast_path()}")


def fast_path() -> str:
    """Whether NumPy training takes the fast path and its compiled kernels, and why not."""
    try:
        from . import _fast
    except Exception as exc:  # noqa: BLE001 - reported, never raised
        return f"unavailable ({one_line(exc)})"
    if not _fast.ENABLED:
        return "off (XPMLP_FAST)"
    if _fast.KERNELS is not None:
        return "on, with the compiled kernels"
    why = _fast.why_no_kernels() or "not loaded in this process"
    return f"on, NumPy's ufuncs in place of the kernels ({why})"


def _default_backend() -> str:
    """``XPMLP_BACKEND`` (else numpy), with what is wrong with it."""
    name = default_name()
    try:
        resolve(None)
    except Exception as exc:  # noqa: BLE001 - a bad setting is reported, not raised
        return f"{name} (unusable: {one_line(exc)})"
    return name


def cuda_devices(modules: dict[str, Any]) -> list[str]:
    """One line per CUDA device, via CuPy or else PyTorch; why there is none otherwise.

    Parameters
    ----------
    modules : the imported backends by module name (``"cupy"``, ``"torch"``, ...)
    """
    notes = [] if "cupy" in modules else ["CuPy not installed"]
    for name, label, probe in (("cupy", "CuPy", _cupy), ("torch", "PyTorch", _torch)):
        if name not in modules:
            continue
        try:
            devices, why_none = probe(modules[name])
        except Exception as exc:  # noqa: BLE001 - no driver, no device: report, never fail
            notes.append(f"{label}: {one_line(exc)}")
            continue
        if devices:
            return [
                f"{i}: {device}, {size / 2**30:.1f} GiB (via {label})"
                for i, (device, size) in enumerate(devices)
            ]
        notes.append(why_none)
    return [f"none found ({'; '.join(notes)})"]


def _cupy(cupy: Any) -> tuple[list[tuple[str, int]], str]:
    """The devices CuPy sees as (name, bytes of memory), and the note for none."""
    rt = cupy.cuda.runtime
    props = [rt.getDeviceProperties(i) for i in range(rt.getDeviceCount())]
    return [(_text(p["name"]), p["totalGlobalMem"]) for p in props], "CuPy sees none"


def _torch(torch: Any) -> tuple[list[tuple[str, int]], str]:
    """The devices PyTorch sees as (name, bytes of memory), and the note for none."""
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    props = [torch.cuda.get_device_properties(i) for i in range(n)]
    cuda = torch.version.cuda
    why_none = f"PyTorch (CUDA {cuda}) sees none" if cuda else "PyTorch is CPU-only"
    return [(p.name, p.total_memory) for p in props], why_none


def _text(x: str | bytes) -> str:
    return x.decode() if isinstance(x, bytes) else x


def blas() -> list[str]:
    """One line per BLAS library loaded (via threadpoolctl), or why it is unknown."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["unknown (pip install threadpoolctl to see it)"]
    lines = []
    for lib in threadpool_info():
        if lib.get("user_api") != "blas":
            continue
        layer, kernel = lib.get("threading_layer"), lib.get("architecture")
        lines.append(
            f"{lib.get('internal_api')} {lib.get('version') or ''}".rstrip()
            + (f", kernel {kernel}" if kernel else "")
            + f", {lib.get('num_threads')} threads"
            + (f" ({layer})" if layer and layer != "unknown" else "")
            + f", {Path(lib.get('filepath', '')).name}"
        )
    return lines or ["none found"]
