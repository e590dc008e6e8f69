"""Ctrl-C between training steps.

A step updates the weights and the optimizer's state in place, one layer after another (the
NumPy fast path right after each layer's gradient), so a ``KeyboardInterrupt`` raised in the
middle of one would keep some layers stepped and others not, or Adam's step count ahead of
its updates. While :func:`held` is in force a Ctrl-C is held until the step under way is
complete, and raised where the loop calls :func:`check`, between steps; a second Ctrl-C
raises at once. Only where Python's own handler is in place, in the main thread; elsewhere
``check`` does nothing and an interrupt lands where it lands (a training in another thread
never takes the main thread's held Ctrl-C). The handler is set once per training call
(setting it costs about 10 us: a small network's whole epoch).
"""

from __future__ import annotations

import contextlib
import signal
import threading

_pending = False  # a Ctrl-C held since the last check, for the main thread's training


class Forced(KeyboardInterrupt):
    """The second Ctrl-C, raised at once: the step under way may be half done."""


def _hold(signum, frame) -> None:
    global _pending
    if _pending:  # the second: at once
        raise Forced
    _pending = True


def check() -> None:
    """Raise the Ctrl-C held since the last call, if any (call it between steps), in the
    main thread, whose training holds it."""
    global _pending
    if _pending and threading.current_thread() is threading.main_thread():  # as held()'s
        _pending = False
        raise KeyboardInterrupt


@contextlib.contextmanager
def held():
    """Hold Ctrl-C until :func:`check` while the block runs; one held after the block's last
    check is dropped (the block's work is then done)."""
    global _pending
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    _pending = False
    signal.signal(signal.SIGINT, _hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _pending = False
