"""Pictures: training curves and the two-layer demo figure (matplotlib, optional).

matplotlib is imported only when a picture is drawn, and figures are rendered with the Agg
canvas directly, so no window opens and pyplot's global state is never touched.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

INSTALL_HINT = 'pip install "xpmlp[plot]"'


class PlotError(ImportError):
    """matplotlib, needed for a picture, is not installed."""


def _figure(figsize: tuple[float, float]) -> Any:
    """A matplotlib ``Figure`` attached to an Agg canvas."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotError(
            f"plotting needs matplotlib, which is not installed: {INSTALL_HINT}"
        ) from exc
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def picture_path(path: str) -> str:
    """``path`` with ``.png`` added when it has no suffix (what is written, not what
    matplotlib would guess); a :class:`ValueError` for a suffix matplotlib cannot write.
    Without matplotlib the suffix is left to :func:`check_available` to refuse."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if not suffix:
        return f"{path.rstrip('.')}.png"
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        return path
    formats = set(FigureCanvasBase.get_supported_filetypes()) - {"pgf"}  # pgf needs LaTeX
    if suffix not in formats:
        raise ValueError(
            f"{path!r}: .{suffix} is not a picture format; accepted: "
            f"{', '.join('.' + f for f in sorted(formats))}"
        )
    return path


def check_available() -> None:
    """Raise :class:`PlotError` now, before any training, if matplotlib is missing."""
    _figure((1, 1))


def plot_history(
    history: dict, path: str | Path, *, score_name: str = "validation score", dpi: int = 100
) -> Path:
    """Loss per epoch (log scale) and, when recorded, the validation score per epoch.

    Parameters
    ----------
    history : dict with lists ``"loss"`` and ``"val_score"`` (as returned by ``MLP.fit``),
        a score for every epoch or none
    path : where to write the picture; the format follows the suffix (``.png``, ``.pdf``)
    score_name : y-axis label of the validation panel ("accuracy", "R^2", ...)

    Returns the path written: ``path``, with ``.png`` added where it has no suffix.
    """
    if not isinstance(history, Mapping):
        raise TypeError(
            f"history is a {type(history).__name__}; accepted: a dict with lists 'loss' and "
            "'val_score' (what MLP.fit returns)"
        )
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path is a {type(path).__name__}; accepted: a file name (str or Path)")
    if not isinstance(score_name, str):
        raise TypeError(f"score_name={score_name!r}; accepted: a str such as 'accuracy'")
    path = Path(picture_path(os.fspath(path)))
    loss = np.asarray(history.get("loss", []), dtype=float)
    score = np.asarray(history.get("val_score", []), dtype=float)
    if not loss.size:
        raise ValueError("history holds no epochs (its 'loss' is empty): nothing to plot")
    if score.size and score.size != loss.size:  # scores of some epochs: which is unknown
        raise ValueError(
            f"history holds {score.size} validation scores for {loss.size} epochs (a model's "
            "history over fits with and without validation); accepted: a score for every "
            "epoch or none: plot the history one fit returns"
        )
    score_name = {"R^2": "$R^2$"}.get(score_name, score_name)
    panels = 2 if score.size else 1
    fig = _figure((5.0 * panels, 3.6))
    axes = fig.subplots(1, panels, squeeze=False)[0]
    from matplotlib.ticker import MaxNLocator

    def curve(ax, values, color):  # a few epochs as points too (one epoch: a point alone)
        few = values.size <= 20
        ax.plot(np.arange(1, values.size + 1), values, color=color, marker="o" if few else "")
        if few:
            ax.set_xlim(0.5, values.size + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # not 1.25

    curve(axes[0], loss, "C0")
    if np.all(loss > 0):
        axes[0].set_yscale("log")
    axes[0].set(xlabel="epoch", ylabel="training loss", title="Loss")
    if panels == 2:
        curve(axes[1], score, "C1")
        title = (
            score_name
            if score_name.lower().startswith("validation")
            else (f"validation {score_name}")
        )
        axes[1].set(xlabel="epoch", ylabel=score_name, title=title[0].upper() + title[1:])
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=dpi)
    return path


HIDDEN_COLORS = ("C1", "C2", "C4", "C5")


class DemoPanel(NamedTuple):
    """One function of the demo: data ``(x, t)`` and the fit on a grid ``x_grid``.

    ``Z`` (G, M) holds the hidden units' outputs ``z_j = h(a_j)`` on the grid, ``y`` (G,)
    the network output.
    """

    title: str
    x: np.ndarray
    t: np.ndarray
    x_grid: np.ndarray
    y: np.ndarray
    Z: np.ndarray
    loss: float


def plot_demo(panels: Sequence[DemoPanel], path: str | Path, *, dpi: int = 100) -> Path:
    """Bishop's PRML Fig. 5.3: data (dots), network fit (line), hidden units (dashed);
    returns the path written (``.png`` added where ``path`` has no suffix)."""
    path = Path(picture_path(str(path)))
    n = len(panels)
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    fig = _figure((4.2 * cols, 3.3 * rows))
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, p in zip(axes, panels):
        for j in range(p.Z.shape[1]):
            label = "hidden units $z_j$" if j == 0 else None
            ax.plot(
                p.x_grid,
                p.Z[:, j],
                "--",
                lw=1.0,
                color=HIDDEN_COLORS[j % len(HIDDEN_COLORS)],
                label=label,
            )
        ax.plot(p.x, p.t, "o", ms=3.5, mfc="none", color="C0", label="data")
        ax.plot(p.x_grid, p.y, "-", lw=2.0, color="C3", label="network")
        ax.set_title(f"{p.title}   (loss {p.loss:.2g})", fontsize=10)
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.15, 1.15)
        ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=3)
    fig.suptitle("1-3-1 tanh network fitted by backpropagation", fontsize=11)
    fig.savefig(path, dpi=dpi)
    return path
