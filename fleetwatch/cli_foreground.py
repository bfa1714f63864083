"""Run something in the foreground until Ctrl-C or SIGTERM (for `fleetwatch kafka` and `fleetwatch catch`)."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType


def say(command: str, message: str) -> None:
    """A human line on stderr (stdout carries only what scripts parse)."""
    print(f"[fleetwatch {command}] {message}", file=sys.stderr, flush=True)


def wait_for_signal(failure: Callable[[], str | None], poll_s: float = 0.5) -> str | None:
    """Block until SIGINT or SIGTERM (returns None) or until `failure()` names a failure (returns it).

    SIGINT is set explicitly: a process started in the background by a non-interactive shell inherits
    SIGINT as ignored, and Python then keeps ignoring it."""
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopping.wait(poll_s):
            reason = failure()
            if reason is not None:
                return reason
        return None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
