"""A per-epoch progress bar (tqdm), shown only on a terminal."""

from __future__ import annotations

import sys


class ProgressBar:
    """Epoch counter with the latest loss and validation score; silent off a terminal."""

    def __init__(self, epochs: int, *, file=None, force: bool = False):
        file = file or sys.stderr
        self._bar = None
        if not (force or (hasattr(file, "isatty") and file.isatty())):
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is optional: no bar without it
            return
        self._bar = tqdm(total=epochs, unit="epoch", file=file, leave=False, dynamic_ncols=True)

    def update(self, loss: float, score: float | None = None) -> None:
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
