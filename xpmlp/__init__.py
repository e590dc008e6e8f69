"""xpmlp: multilayer perceptrons trained by explicit error backpropagation, written once
against the Python Array API standard and run on NumPy, CuPy, PyTorch, JAX or
array-api-strict."""

from . import activations, backend, network, objectives, optim, train
from .backend import BackendError, resolve, to_numpy
from .io import load
from .model import MLP, check_gradients
from .network import backward, forward, init_weights

__version__ = "0.1.0"
__all__ = [
    "MLP",
    "BackendError",
    "activations",
    "backend",
    "backward",
    "check_gradients",
    "forward",
    "init_weights",
    "load",
    "network",
    "objectives",
    "optim",
    "resolve",
    "to_numpy",
    "train",
]
