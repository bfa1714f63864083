"""When each server is probed next. Pure: time and randomness are passed in.

Policy: a server that passed is probed again after `interval_s` (the policy's 15 minutes); one that failed
is re-checked after `retry_interval_s` (60 s) until it passes again. Each interval is spread by +/- `jitter`
(a fraction of it) so servers that started together drift apart.

A server that is new to a worker (first load, or taken over from a worker that left) is due soon: at a random
moment within `min(interval_s, retry_interval_s)`, so a big fleet's first round is spread over that window
instead of arriving all at once, and no server waits a whole interval for its first check.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta


def jittered(base_s: float, jitter: float, rng: random.Random) -> float:
    """`base_s` spread uniformly by +/- `jitter` x `base_s` (jitter is clamped to 0..0.5)."""
    spread = min(max(jitter, 0.0), 0.5)
    return base_s * (1.0 + rng.uniform(-spread, spread))


def next_due(
    ok: bool,
    now: datetime,
    interval_s: float,
    retry_interval_s: float,
    jitter: float,
    rng: random.Random,
) -> datetime:
    """When to probe a server again, given whether its last probe passed (`ok`) and when it ended (`now`)."""
    base = interval_s if ok else retry_interval_s
    return now + timedelta(seconds=jittered(base, jitter, rng))


def first_due(now: datetime, interval_s: float, retry_interval_s: float, rng: random.Random) -> datetime:
    """When to probe a server this worker has just been given: uniformly within the first window."""
    window = min(interval_s, retry_interval_s)
    return now + timedelta(seconds=rng.uniform(0.0, window))
