"""The optional compiled kernels of the NumPy fast path; everything else is in pyproject.toml.

``optional=True``: where no C compiler (or no NumPy to read its ufunc headers from) is at
hand the install goes on without them, and the fast path runs NumPy ufunc passes instead
(the same numbers).
"""

import sys

from setuptools import Extension, setup

# no contraction into fused multiply-adds: each operation rounds as NumPy's ufuncs do
flags = ["/O2", "/fp:precise"] if sys.platform == "win32" else ["-O3", "-ffp-contract=off"]
if sys.platform != "win32":
    flags.append("-fno-math-errno")  # sqrt needs no errno: it can be vectorized

try:  # the kernels call NumPy's own ufunc loops: their headers give the ufunc's layout
    import numpy

    include = [numpy.get_include()]
except ImportError:
    include = []

kernels = Extension(
    "xpmlp._kernels",
    ["xpmlp/_kernels.c"],
    include_dirs=include,
    extra_compile_args=flags,
    optional=True,
)
setup(ext_modules=[kernels])
