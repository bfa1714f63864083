"""The portal's read model: every case as the case topic tells it, kept current by a follower thread.

The portal reads case state only from here. A kafka-python consumer without a group is assigned every
partition of the cases topic, starts at the beginning and folds each event into `casefile.view.CaseView`s
(the same fold as `fleetwatch case`). `caught_up` is set once the follower has read up to the end offsets the
topic had when it started; after that new events show within a poll (~0.2 s). Messages that do not decode
are counted and logged, never fatal. The follower retries while the broker or the topic is missing.

One verdict with `fleetwatch case show` / `audit verify`: each event is judged where it sits
(`casefile.checker.CaseChecker`, i.e. `casefile.audit.event_verdict`: hash, signature by a listed key,
the case's home partition = murmur2 of the case id). Only events in the case's home partition whose hash
holds and whose signature verifies (or that are unsigned, before the case's first signed event) are folded
into its view; anything else is kept beside the view and never changes it. `chain(case_id)` is
`casefile.audit.verify_located` over every event of the case wherever it sits (and its unreadable
messages): the status the pages and the API show ("audit chain broken: <reason>").

Readers (aiohttp handlers) run on another thread: lookups take a lock around the indexes; a view object
returned may still grow (events are appended), which is safe to read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from casefile.audit import AuditReport, ChainStatus, EventStatus, Located, verify_located
from casefile.checker import CaseChecker
from casefile.reader import decode
from casefile.signing import Keyring, is_signed
from casefile.view import CaseView
from fleetcore.settings import Settings
from portal.directory import Directory, User, UserRole
from schemas.cases import CaseEvent, Visibility

log = logging.getLogger(__name__)

POLL_MS = 200
RETRY_S = 1.0
SHOWN_CONTACT_ROLES = frozenset({"customer_technical", "partner_helpdesk"})
"""Roles whose contact ids a partner may see in a timeline (their own people); staff contacts never."""
REDACTED_DETAILS = ("contact", "error")


FOLDED = frozenset({EventStatus.VERIFIED, EventStatus.UNSIGNED})
"""Event verdicts that may be folded into a view (unsigned only before the case's first signed event)."""


@dataclass
class _Chain:
    """Everything the topic holds for one case: what the audit of its chain needs."""

    items: list[Located] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Messages keyed with the case id that could not be read as its events."""
    signed: bool = False
    """A signed event was folded: unsigned events after it are forgeries that dropped the signature."""
    report: AuditReport | None = None
    """The cached audit (None: to be computed; reset whenever the case changes)."""


class ReadModel:
    """Case views folded from the cases topic `topic` at `bootstrap` (call `start()`; `stop()` at the end).

    Events are judged with the audit keys `settings` name (`casefile.signing.load_keyring`, reloaded when an
    unknown key id shows up), or with `keys` when given (tests; no settings: no keys, so any signed event
    fails)."""

    def __init__(
        self, bootstrap: str, topic: str, settings: Settings | None = None, keys: Keyring | None = None
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = 1
        """Partitions of the cases topic (the follower sets it; a case's home partition depends on it)."""
        self.checker = CaseChecker(settings, lambda: self.partitions, keys)
        self.unfolded = 0
        """Events not folded into a view: outside the case's partition, forged, or unsigned after signed."""
        self.caught_up = threading.Event()
        """Set once everything the topic held at start-up has been read."""
        self.problems = 0
        """Messages skipped because they were not case events."""
        self.events_read = 0
        self._lock = threading.Lock()
        self._views: dict[str, CaseView] = {}
        self._tickets: dict[str, str] = {}
        self._chains: dict[str, _Chain] = {}
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

    def chain(self, case_id: str) -> AuditReport:
        """The verdict on the case's chain (`casefile.audit.verify_located`, as `fleetwatch audit verify`)."""
        with self._lock:
            chain = self._chains.get(case_id)
            if chain is None:
                return verify_located([], case_id, self.checker.keys)
            if chain.report is None:
                chain.report = verify_located(chain.items, case_id, self.checker.keys, chain.problems)
            return chain.report

    # -- folding -------------------------------------------------------------------------------------

    def apply(self, events: Iterable[CaseEvent]) -> None:
        """Fold events in (log order), each as if read from its case's own partition (tests; callers
        without a partition). The follower uses `apply_at`."""
        for event in events:
            self.apply_at(self.checker.home(event.case_id), [(-1, event)])

    def apply_at(self, partition: int, records: Iterable[tuple[int, CaseEvent]]) -> None:
        """Fold in the events (offset, event) read from `partition`, in log order: each is judged where it
        sits and only a sound event in its case's own partition changes the case's view."""
        with self._lock:
            for offset, event in records:
                self._apply_one(partition, offset, event)

    def problem(self, key: bytes | None, why: str) -> None:
        """An unreadable message: one keyed with a case id fails that case's chain."""
        self.problems += 1
        log.warning("read model skipped %s", why)
        if key is None:
            return
        with self._lock:
            chain = self._chains.setdefault(key.decode("utf-8", "replace"), _Chain())
            chain.problems.append(why)
            chain.report = None

    def _apply_one(self, partition: int, offset: int, event: CaseEvent) -> None:
        self.events_read += 1
        case_id = event.case_id
        home = partition == self.checker.home(case_id)
        chain = self._chains.setdefault(case_id, _Chain())
        chain.items.append(Located(event, partition, offset, home))
        chain.report = None
        verdict = self.checker(event, partition)
        fault = verdict.fault if verdict.status not in FOLDED else ""
        if not fault and chain.signed and not is_signed(event):
            fault = "unsigned after signed events"
        if fault:
            self.unfolded += 1
            log.warning("read model: %s seq %d not folded: %s", case_id, event.seq, fault)
            return
        chain.signed = chain.signed or is_signed(event)
        view = self._views.get(case_id)
        if view is None:
            view = self._views[case_id] = CaseView(case_id=case_id)
        view.apply(event)
        if view.ticket is not None:
            self._tickets.setdefault(view.ticket.upper(), case_id)

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
            self.partitions = len(parts)
            tps = [TopicPartition(self.topic, p) for p in parts]
            client.assign(tps)
            for tp in tps:
                client.seek(tp, self._next.get(tp, 0))
            end = client.end_offsets(tps)
            while not self._stopping.is_set():
                batch = client.poll(timeout_ms=POLL_MS)
                for tp, records in batch.items():
                    events: list[tuple[int, CaseEvent]] = []
                    for record in records:
                        decoded = decode(tp.partition, record.offset, record.key, record.value)
                        if isinstance(decoded, str):
                            self.problem(record.key, decoded)
                        else:
                            events.append((record.offset, decoded))
                        self._next[tp] = record.offset + 1
                    self.apply_at(tp.partition, events)
                if not self.caught_up.is_set() and all(client.position(tp) >= end[tp] for tp in tps):
                    self.caught_up.set()
                    log.info("read model caught up: %d events", self.events_read)
        finally:
            client.close(autocommit=False)


def chain_marker(report: AuditReport) -> str | None:
    """The line a case page shows above a case whose chain is not verified (None: verified)."""
    status = report.status
    if status is ChainStatus.VERIFIED:
        return None
    if status is ChainStatus.UNSIGNED:
        return (
            f"audit chain unsigned: {report.unsigned} of {report.count} events carry no signature "
            "(written before signing); not verified"
        )
    more = f" (and {len(report.problems) - 1} more problem(s))" if len(report.problems) > 1 else ""
    return f"audit chain broken: {report.problems[0]}{more}; this history is not verified"


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
