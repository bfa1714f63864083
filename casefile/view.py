"""Case views: what the case topic says about each case, folded from its events (pure, no Kafka).

The case engine is the only writer of the case topic and stamps every event with the case's state,
severity, ticket and owner *after* the event, so a view mostly copies the latest event's fields. Two kinds
of events need care:

* `command.rejected` answers an invalid command and leaves the case untouched: it joins the timeline but
  changes nothing else (a rejected command for a case that never existed makes no case at all).
* Events written before the hash chain and the lifecycle fields existed (the first detector wrote
  `case.opened` / `server.recovered` without `state`, `ticket` or `hash`) carry the default state `new`;
  for those the state is derived from the event type instead.

Duplicates (a replay after a crash re-emits the same event: same `event_id` and `hash`) are kept once.
A chained event whose seq is not past the newest seq already folded (an old event replayed, or a copy
written beside the original) never changes the view: it is kept aside in `conflicts`, so a replayed
`case.resolved` cannot silently resolve a case again. Whether the events are genuine is the audit's
question (`casefile.audit`): `fleetwatch case show` folds only the case's own partition and marks a chain
that is not verified.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from schemas.cases import CaseEvent, CaseEventType, CaseSource, CaseState, Severity, Visibility

_T = CaseEventType

_LEGACY_STATE: dict[CaseEventType, CaseState] = {
    _T.TRIAGED: CaseState.TRIAGED,
    _T.WORK_STARTED: CaseState.WORKING,
    _T.WAITING: CaseState.WAITING,
    _T.CUSTOMER_REPLIED: CaseState.WORKING,
    _T.RESOLVED: CaseState.RESOLVED,
    _T.CLOSED: CaseState.CLOSED,
    _T.REOPENED: CaseState.WORKING,
}
"""State after an unchained (pre-lifecycle) event of these types; other types keep the state."""

CLOSED_STATES = frozenset({CaseState.RESOLVED, CaseState.CLOSED})
"""States in which a case no longer needs work (`case list` hides them unless asked)."""


@dataclass
class CaseView:
    """One case as its events describe it: header fields, the timeline, and SLA facts."""

    case_id: str
    ticket: str | None = None
    state: CaseState = CaseState.NEW
    severity: Severity | None = None
    source: CaseSource | None = None
    customer: str | None = None
    partner: str | None = None
    server: str | None = None
    owner: str | None = None
    title: str = ""
    opened_at: datetime | None = None
    """Time of the opening event (or of the first event, if the opening event is missing)."""
    updated_at: datetime | None = None
    """Time of the latest event that concerned the case (rejections do not count)."""
    last_event: CaseEvent | None = None
    """The latest event of any type, rejections included."""
    timeline: list[CaseEvent] = field(default_factory=list)
    """Every distinct event, in log order."""
    breaches: list[CaseEvent] = field(default_factory=list)
    """`sla.breached` events (their details/reason name the clock)."""
    warnings: list[CaseEvent] = field(default_factory=list)
    """`sla.warning` events (internal pre-breach warnings)."""
    last_customer_update_at: datetime | None = None
    """Latest status update the customer got (staff update or automatic status notice)."""
    work_started_at: datetime | None = None
    """First acknowledgement by an engineer."""
    waiting_since: datetime | None = None
    """When the case started waiting on the customer, while it does."""
    recovered_at: datetime | None = None
    """When the monitor last saw the case's server recover."""
    resolved_at: datetime | None = None
    """When the case was last resolved (cleared by a reopen)."""
    rejected: int = 0
    """Commands the engine rejected for this case."""
    deadlines: dict[str, datetime] = field(default_factory=dict)
    """The running SLA clocks' deadlines (clock kind → due), as the engine's latest decision left them."""
    head_seq: int | None = None
    """The highest seq folded in (chained events only)."""
    conflicts: list[CaseEvent] = field(default_factory=list)
    """Chained events that arrived at or below `head_seq` and differ from what was folded: not applied."""
    _seen: set[tuple[str, str]] = field(default_factory=set, repr=False)

    @property
    def is_case(self) -> bool:
        """Whether anything but rejections happened: a rejected command for an unknown id makes no case."""
        return self.updated_at is not None

    @property
    def is_open(self) -> bool:
        """Whether the case still needs work (not resolved, not closed)."""
        return self.state not in CLOSED_STATES

    def apply(self, event: CaseEvent) -> bool:
        """Fold one event of this case in; False (and nothing changes) when it is a duplicate."""
        identity = (event.event_id, event.hash)
        if identity in self._seen:
            return False
        if event.hash and self.head_seq is not None and event.seq <= self.head_seq:
            self.conflicts.append(event)
            return False
        self._seen.add(identity)
        if event.hash:
            self.head_seq = event.seq
        self.timeline.append(event)
        self.last_event = event
        if event.type is _T.COMMAND_REJECTED:
            self.rejected += 1
            return True
        self._header(event)
        self._facts(event)
        return True

    def _header(self, event: CaseEvent) -> None:
        if self.updated_at is None:
            self.opened_at = event.at
            self.source = event.source
            self.customer = event.customer_id
        if event.type is _T.CASE_OPENED and self.opened_at is not None and event.at < self.opened_at:
            self.opened_at = event.at
        if event.type is _T.CASE_OPENED and not self.title:
            title = event.details.get("title")
            self.title = title if isinstance(title, str) and title else event.reason
        self.updated_at = event.at
        self.customer = event.customer_id or self.customer
        self.severity = event.severity if event.severity is not None or event.hash else self.severity
        self.ticket = event.ticket or self.ticket
        self.owner = event.owner or self.owner
        self.partner = event.partner_id or self.partner
        self.server = event.server_id or self.server
        if event.hash:
            self.state = event.state
        else:
            self.state = _LEGACY_STATE.get(event.type, self.state)

    def _facts(self, event: CaseEvent) -> None:
        due = event.details.get("due")
        if isinstance(due, str):
            self.deadlines = parse_deadlines(due)
        kind = event.type
        if kind is _T.SLA_BREACHED:
            self.breaches.append(event)
        elif kind is _T.SLA_WARNING:
            self.warnings.append(event)
        elif kind in (_T.CUSTOMER_UPDATE, _T.STATUS_NOTICE):
            self.last_customer_update_at = event.at
        elif kind is _T.WORK_STARTED and self.work_started_at is None:
            self.work_started_at = event.at
        elif kind is _T.SERVER_RECOVERED:
            self.recovered_at = event.at
        elif kind is _T.RESOLVED:
            self.resolved_at = event.at
        elif kind is _T.REOPENED:
            self.resolved_at = None
        if self.state is CaseState.WAITING:
            self.waiting_since = self.waiting_since or event.at
        else:
            self.waiting_since = None

    def summary(self) -> dict[str, Any]:
        """The header and SLA facts as JSON-ready data (no timeline)."""

        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment is not None else None

        return {
            "case_id": self.case_id,
            "ticket": self.ticket,
            "state": self.state.value,
            "severity": int(self.severity) if self.severity is not None else None,
            "source": self.source.value if self.source is not None else None,
            "customer": self.customer,
            "partner": self.partner,
            "server": self.server,
            "owner": self.owner,
            "title": self.title,
            "opened_at": iso(self.opened_at),
            "updated_at": iso(self.updated_at),
            "last_event": self.last_event.type.value if self.last_event is not None else None,
            "events": len(self.timeline),
            "breaches": [clock_of(e) for e in self.breaches],
            "last_customer_update_at": iso(self.last_customer_update_at),
            "work_started_at": iso(self.work_started_at),
            "waiting_since": iso(self.waiting_since),
            "recovered_at": iso(self.recovered_at),
            "resolved_at": iso(self.resolved_at),
            "rejected_commands": self.rejected,
            "deadlines": {kind: iso(at) for kind, at in self.deadlines.items()},
            "head_seq": self.head_seq,
            "conflicts": len(self.conflicts),
        }

    def to_dict(self) -> dict[str, Any]:
        """The summary plus the whole timeline (each event as on the wire)."""
        return {**self.summary(), "timeline": [e.model_dump(mode="json") for e in self.timeline]}

    def customer_timeline(self) -> list[CaseEvent]:
        """The events a customer may see."""
        return [e for e in self.timeline if e.visibility is Visibility.CUSTOMER]


def clock_of(event: CaseEvent) -> str:
    """The SLA clock an `sla.*` event is about (its `clock` detail, else its reason)."""
    clock = event.details.get("clock")
    return str(clock) if clock is not None else event.reason


def age(delta: timedelta) -> str:
    """A short age: 42s, 17m, 3h05m, 2d04h."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def parse_deadlines(text: str) -> dict[str, datetime]:
    """`kind=iso,kind=iso` (the engine's `due` detail) → {kind: due}; malformed parts are skipped."""
    out: dict[str, datetime] = {}
    for part in text.split(","):
        kind, _, when = part.partition("=")
        try:
            out[kind.strip()] = datetime.fromisoformat(when.strip())
        except ValueError:
            continue
    return out


def fold(events: Iterable[CaseEvent]) -> dict[str, CaseView]:
    """Every case in `events` (log order), by case id. Includes ids that only saw rejections (`is_case`)."""
    views: dict[str, CaseView] = {}
    for event in events:
        view = views.get(event.case_id)
        if view is None:
            view = views[event.case_id] = CaseView(case_id=event.case_id)
        view.apply(event)
    return views


def find(views: Mapping[str, CaseView], ref: str) -> CaseView | None:
    """The case with id `ref`, else the one whose ticket is `ref` (case-insensitive, e.g. "fw-100003")."""
    view = views.get(ref)
    if view is not None and view.is_case:
        return view
    wanted = ref.strip().upper()
    for candidate in views.values():
        if candidate.ticket is not None and candidate.ticket.upper() == wanted and candidate.is_case:
            return candidate
    return None
