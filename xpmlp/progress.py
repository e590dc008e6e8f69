"""A per-epoch progress bar (tqdm), shown only on a terminal, and a line writer that keeps
printed lines from tearing an open bar."""

from __future__ import annotations

import os
import sys
from typing import IO, Any


def _on_terminal(file: Any) -> bool:
    isatty = getattr(file, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class ProgressBar:
    """Epoch counter with the latest loss and validation score; silent off a terminal.

    Parameters
    ----------
    epochs : int
        Length of the bar.
    file : text stream, optional
        Where the bar is drawn; standard error by default.
    force : bool
        Draw even when ``file`` is not a terminal.
    desc : str
        Label in front of the bar.

    The bar is also off when tqdm is not installed or ``XPMLP_PROGRESS=0`` is set.
    """

    def __init__(
        self, epochs: int, *, file: IO[str] | None = None, force: bool = False, desc: str = "fit"
    ):
        file = file or sys.stderr
        self._bar = None
        if os.environ.get("XPMLP_PROGRESS", "") == "0":
            return
        if not (force or _on_terminal(file)):
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is optional: no bar without it
            return
        self._bar = tqdm(
            total=epochs,
            desc=desc,
            unit="epoch",
            file=file,
            leave=False,
            dynamic_ncols=True,
            mininterval=0.1,
        )

    def update(self, loss: float, score: float | None = None) -> None:
        """Advance by one epoch and show its mean training loss and validation score."""
        if self._bar is None:
            return
        post = {"loss": f"{loss:.4g}"}
        if score is not None:
            post["val"] = f"{score:.4g}"
        self._bar.set_postfix(post, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write(line: str, file: IO[str] | None = None) -> None:
    """Print ``line``; while a tqdm bar is open, print it above the bar instead of through it."""
    file = file or sys.stdout
    tqdm = sys.modules.get("tqdm.auto") and sys.modules["tqdm.auto"].tqdm
    if tqdm is not None and getattr(tqdm, "_instances", None):
        tqdm.write(line, file=file)
    else:
        print(line, file=file, flush=True)
