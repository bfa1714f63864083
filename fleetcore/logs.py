"""Logging set-up shared by every worker: one line per record, level from settings."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "INFO") -> None:
    """Configure the root logger once for a worker process."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if not any(getattr(h, "_fleetwatch", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._fleetwatch = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    for noisy in ("kafka", "aiokafka", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
