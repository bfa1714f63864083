"""One event's verdict as a long-running reader sees it: the sink and the portal's read model share this.

`CaseChecker` wraps `casefile.audit.event_verdict` with the keys (`casefile.signing.load_keyring`) and the
topic's partition count. A key id it does not know reloads the key list first (once per unknown key id and
second), so a key the engine generated after the reader started, or a key added to the list, is picked up
before an event is judged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from casefile.audit import EventVerdict, event_verdict
from casefile.reader import partition_for_case
from casefile.signing import Keyring, SigningKeyError, load_keyring
from fleetcore.settings import Settings
from schemas.cases import CaseEvent

log = logging.getLogger(__name__)


class CaseChecker:
    """The verdict on each case event where it sits: signature by a listed key, hash, and the partition
    murmur2 of the case id gives. `settings` None: judge with `keys` only (never reloaded)."""

    RELOAD_S = 1.0

    def __init__(
        self, settings: Settings | None, partitions: Callable[[], int], keys: Keyring | None = None
    ) -> None:
        self.settings = settings
        self.partitions = partitions
        if keys is not None:
            self.keys = keys
        else:
            self.keys = load_keyring(settings) if settings is not None else Keyring()
        self._misses: dict[str, float] = {}

    def home(self, case_id: str) -> int:
        """The case's own partition (where the case engine writes its events)."""
        return partition_for_case(case_id, self.partitions())

    def __call__(self, event: CaseEvent, partition: int) -> EventVerdict:
        key_id = event.key_id
        if key_id and key_id not in self.keys.keys and self.settings is not None:
            now = time.monotonic()
            if now - self._misses.get(key_id, -self.RELOAD_S) >= self.RELOAD_S:
                if len(self._misses) > 1000:
                    self._misses.clear()
                self._misses[key_id] = now
                try:
                    self.keys = load_keyring(self.settings)
                except SigningKeyError as exc:  # keep the keys in hand; the event is judged with them
                    log.error("reloading the audit keys failed: %s", exc)
        return event_verdict(event, partition, self.home(event.case_id), self.keys)
