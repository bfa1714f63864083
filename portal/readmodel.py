"""The portal's read model: every case as the case topic tells it, kept current by a follower thread.

The portal reads case state only from here. A kafka-python consumer without a group is assigned every
partition of the cases topic, starts at the beginning and folds each event into `casefile.view.CaseView`s
(the same fold as `fleetwatch case`). `caught_up` is set once the follower has read up to the end offsets the
topic had when it started; after that new events show within a poll (~0.2 s). Messages that do not decode
are counted and logged, never fatal. The follower retries while the broker or the topic is missing.

Readers (aiohttp handlers) run on another thread: lookups take a lock around the indexes; a view object
returned may still grow (events are appended), which is safe to read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from casefile.reader import decode
from casefile.view import CaseView
from portal.directory import Directory, User, UserRole
from schemas.cases import CaseEvent, Visibility

log = logging.getLogger(__name__)

POLL_MS = 200
RETRY_S = 1.0
SHOWN_CONTACT_ROLES = frozenset({"customer_technical", "partner_helpdesk"})
"""Roles whose contact ids a partner may see in a timeline (their own people); staff contacts never."""
REDACTED_DETAILS = ("contact", "error")


class ReadModel:
    """Case views folded from the cases topic `topic` at `bootstrap` (call `start()`; `stop()` at the end)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.caught_up = threading.Event()
        """Set once everything the topic held at start-up has been read."""
        self.problems = 0
        """Messages skipped because they were not case events."""
        self.events_read = 0
        self._lock = threading.Lock()
        self._views: dict[str, CaseView] = {}
        self._tickets: dict[str, str] = {}
        self._next: dict[TopicPartition, int] = {}
        """Next offset per partition, so a reconnect resumes where the follower was."""
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lookups -------------------------------------------------------------------------------------

    def views(self) -> list[CaseView]:
        """Every case (ids that only saw rejected commands are left out)."""
        with self._lock:
            return [view for view in self._views.values() if view.is_case]

    def get(self, ref: str) -> CaseView | None:
        """The case with id `ref`, else the one whose ticket is `ref` (case-insensitive)."""
        with self._lock:
            view = self._views.get(ref)
            if view is None:
                case_id = self._tickets.get(ref.strip().upper())
                view = self._views.get(case_id) if case_id is not None else None
        return view if view is not None and view.is_case else None

    def for_user(self, user: User, directory: Directory) -> list[CaseView]:
        """The cases `user` may see (isolation: `Directory.may_see`), newest first."""
        mine = [v for v in self.views() if directory.may_see(user, v.partner, v.customer)]
        return sorted(mine, key=lambda v: (v.opened_at is not None, v.opened_at), reverse=True)

    # -- folding -------------------------------------------------------------------------------------

    def apply(self, events: Iterable[CaseEvent]) -> None:
        """Fold events in (log order). The follower calls this; tests may too."""
        with self._lock:
            for event in events:
                view = self._views.get(event.case_id)
                if view is None:
                    view = self._views[event.case_id] = CaseView(case_id=event.case_id)
                view.apply(event)
                if view.ticket is not None:
                    self._tickets[view.ticket.upper()] = view.case_id
                self.events_read += 1

    # -- the follower --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start following the topic in a daemon thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="portal-readmodel", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the follower and wait for it."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._follow()
            except KafkaError as exc:
                log.warning("read model: %s; retrying", exc)
                self._stopping.wait(RETRY_S)

    def _follow(self) -> None:
        client = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id="fleetwatch-portal-readmodel",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            parts = sorted(client.partitions_for_topic(self.topic) or ())
            while not parts and not self._stopping.is_set():
                log.warning("read model: topic %s not found yet", self.topic)
                self._stopping.wait(RETRY_S)
                client.topics()
                parts = sorted(client.partitions_for_topic(self.topic) or ())
            tps = [TopicPartition(self.topic, p) for p in parts]
            client.assign(tps)
            for tp in tps:
                client.seek(tp, self._next.get(tp, 0))
            end = client.end_offsets(tps)
            while not self._stopping.is_set():
                batch = client.poll(timeout_ms=POLL_MS)
                for tp, records in batch.items():
                    events: list[CaseEvent] = []
                    for record in records:
                        decoded = decode(tp.partition, record.offset, record.key, record.value)
                        if isinstance(decoded, str):
                            self.problems += 1
                            log.warning("read model skipped %s", decoded)
                        else:
                            events.append(decoded)
                        self._next[tp] = record.offset + 1
                    self.apply(events)
                if not self.caught_up.is_set() and all(client.position(tp) >= end[tp] for tp in tps):
                    self.caught_up.set()
                    log.info("read model caught up: %d events", self.events_read)
        finally:
            client.close(autocommit=False)


def visible_events(view: CaseView, user: User) -> list[CaseEvent]:
    """The timeline `user` may see: staff everything; partners the customer-visible events only, with
    staff contact ids (and delivery errors, which name them) removed from the details."""
    if user.role is UserRole.STAFF:
        return list(view.timeline)
    return [_redacted(e) for e in view.timeline if e.visibility is Visibility.CUSTOMER]


def _redacted(event: CaseEvent) -> CaseEvent:
    if not any(name in event.details for name in REDACTED_DETAILS):
        return event
    if event.details.get("role") in SHOWN_CONTACT_ROLES:
        return event
    kept = {k: v for k, v in event.details.items() if k not in REDACTED_DETAILS}
    return event.model_copy(update={"details": kept})


def wait_caught_up(model: ReadModel, timeout_s: float) -> bool:
    """Block until the read model has caught up (True) or the time is up (False)."""
    deadline = time.monotonic() + timeout_s
    while not model.caught_up.wait(0.1):
        if time.monotonic() > deadline:
            return False
    return True
