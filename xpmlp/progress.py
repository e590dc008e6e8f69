"""Per-epoch progress: a tqdm bar on a terminal or in a Jupyter notebook, else about ten
plain lines; and a line writer that keeps printed lines from tearing an open bar."""

from __future__ import annotations

import sys
from typing import IO, Any

from ._checks import env_off

LINES = 10  # off a terminal: about this many lines per fit, the last epoch's included


def on_terminal(file: Any) -> bool:
    """A terminal, or a Jupyter kernel's stream (which says it is not a terminal but shows
    tqdm's bars)."""
    if type(file).__module__.startswith("ipykernel"):
        return True
    isatty = getattr(file, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class ProgressBar:
    """Epoch counter with the latest loss and validation score.

    Parameters
    ----------
    epochs : int
        Length of the bar.
    file : text stream, optional
        Where the bar is drawn; standard error by default.
    force : bool
        Draw a bar even when ``file`` is not a terminal.
    desc : str
        Label in front of the bar.

    Off a terminal (a log file, a pipe), or without tqdm, it writes a line
    ``fit: epoch 10/100, loss 0.1234, val 0.9`` every ``epochs / 10`` epochs and at the
    last one instead. ``XPMLP_PROGRESS=0`` (or false, no, off) turns both off. A stream that
    cannot be written (a closed pipe, one without ``flush``) ends the lines, not the fit.
    """

    def __init__(
        self, epochs: int, *, file: IO[str] | None = None, force: bool = False, desc: str = "fit"
    ):
        self._file = file or sys.stderr
        self._bar = None
        self._lines = False
        self._epochs, self._done, self._desc, self._last = epochs, 0, desc, ""
        self._every = max(1, -(-epochs // LINES))
        if env_off("XPMLP_PROGRESS"):
            return
        self._lines = True
        if not (force or on_terminal(self._file)):
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is optional: lines without it
            return
        self._lines = False
        self._bar = tqdm(
            total=epochs,
            desc=desc,
            unit="epoch",
            file=self._file,
            dynamic_ncols=True,
            mininterval=0.1,
        )

    def update(self, loss: float, score: float | None = None) -> None:
        """Advance by one epoch and show its mean training loss and validation score."""
        self._done += 1
        if self._lines:
            val = "" if score is None else f", val {score:.4g}"
            self._last = f"{self._desc}: epoch {self._done}/{self._epochs}, loss {loss:.4g}{val}"
            if self._done % self._every == 0 or self._done == self._epochs:
                self._print_last()
            return
        if self._bar is None:
            return
        post = {"loss": f"{loss:.4g}"}
        if score is not None:
            post["val"] = f"{score:.4g}"
        self._bar.set_postfix(post, refresh=False)
        self._bar.update(1)

    def _print_last(self) -> None:
        if self._last:
            try:
                print(self._last, file=self._file, flush=True)
            except (OSError, ValueError, AttributeError):  # closed pipe or stream, no flush
                self._lines = False  # the training goes on without them
            self._last = ""

    def close(self) -> None:
        """End the display; off a terminal, the line of an epoch that stopped early."""
        if self._lines:
            self._print_last()
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
