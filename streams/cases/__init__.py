"""The case engine: one pure state machine from case commands to chained case events and notifications.

Pure policy code: no Kafka, Faust or aiohttp; time comes in as `command.at`. The Faust agent that owns a case
(key = case id) calls `apply(case, command, config, ticket)` and sends what the `Decision` says: events to the
case topic (the audit log), notifications to the notifications topic, the new `Case` to its table.

States (`schemas.cases.CaseState`)::

    OPEN ─┬─ severity (monitor/staff) ─▶ TRIAGED ──start_work──▶ WORKING ◀──customer_replied──┐
          └─ none (email/portal) ─▶ NEW ──triage──▶ TRIAGED        │ wait_on_customer           │
                                                      └────────────┴──────────────▶ WAITING ───┘
    any open state ──resolve──▶ RESOLVED ──close──▶ CLOSED;  any non-closed state ──close──▶ CLOSED
    RESOLVED/CLOSED ──reopen──▶ TRIAGED (NEW without severity), clocks restart at the reopen

Rules the engine keeps (the support policy, `policy.sla` for the clocks, `streams.notices` for who is told):

* Every valid command first fires what its clocks owed up to `command.at` (as a TICK would), then applies,
  then checks again (a triage anchors clocks at the open, so they may already be due). So a START_WORK that
  arrives at 2:00 of a Sev1 still pages the VP: "not worked within 2 h" is judged on event time, not on how
  soon the timer ticked. Only a TICK auto-resolves a recovered monitor case.
* An invalid command leaves the case as it was and yields ONE `command.rejected` event (internal) saying
  why; only the chain position (`seq`, `last_hash`) and the remembered command ids advance. A command for a
  case that does not exist (other than a well-formed OPEN) has nowhere to be recorded: dead letter.
* Idempotent: a command id among the last 64 applied (`recent_commands`) changes nothing and emits nothing;
  so does an OPEN repeated with the case's own opening command id, however old. Everything else is
  deterministic (event ids, notification keys, texts), so the same inputs give the same Decision, byte for
  byte, and a replay after a crash re-emits the same ids.
* Event ids: `case.opened` and `server.recovered` once per case (`event_id_for(case_id, type)`); every
  other event `event_id_for(case_id, type, f"{command_id}:{index}")`, index = its place in the Decision.
* Status notices keep their cadence: the next is due one period after the previous *due* time; if the
  engine was down across several due times, one notice covers them and the cadence resumes after `at`.

Partner correspondence (issue 4; `streams.notices` says who hears what):

* Threading. An OPEN may carry `details.message_id` (the Message-ID of the partner's email that opened the
  case) and `details.from` (its sender). The engine keeps them on the case as `thread_message_id` and
  `requester` when they are well formed (a `<local@domain>` id; a bare address, a display name is
  dropped) and ignores them otherwise: a case is never refused for a bad header. Every email to the
  partner help desk about the case carries both, so the notifier threads it into the partner's email and,
  when the partner's directory entry has no help desk contact, writes to the requester instead.
* Answering the partner. POST_UPDATE is how staff answer: the text goes to the customer's voice
  (`notices.customer_roles`): for an email/portal case the partner help desk (threaded) and not the
  customer's technical staff; for a monitor/staff case the customer's technical staff as before, plus the
  partner help desk when the case names a partner. Allowed from NEW too (a question before triage).
* Referral. CLOSE with `details.referral = true` on a NEW case (untriaged, no ticket: an end user's
  request) closes it without a ticket and emails the partner help desk the referral (`message`, or the
  policy's `notices.REFERRAL_TEXT`), threaded; the `case.closed` event says `referral: true` and the
  requests are on the case. A referral of a triaged case is rejected (it has a ticket: close it plainly).
  A flag on CLOSE rather than a new command type: it is a close in every other respect (state, clocks,
  reopen), and readers that know CLOSE keep working.
* Notes and phone follow-ups. NOTE takes `details.kind` ("note", the default, or "phone": a logged call,
  reason "phone follow-up") and `details.visible` (default false). A note is internal unless `visible` is
  true; then the partner sees it in the portal timeline. No email either way (a call already reached
  them; use POST_UPDATE to write). A visible note on an open case counts as the first response (the
  partner was answered), nothing more: it restarts no status clock.

Ticket numbers: `FW-<n>`, n = 100000 + counter * P + p, where p is the engine partition that owns the case
(0 ≤ p < P, P = partitions of the case-commands topic) and counter is that partition's own count of tickets
issued so far, kept in the engine's table beside its cases. Partitions never share an n (n mod P = p), so no
coordination is needed; numbers stay dense (P partitions issue the first P*k numbers between them) and
human-sized (6 digits until a million tickets). The counter moves only when a Decision says `ticket_used`,
and it is written with the case, so a replayed command reads the case that already holds its ticket and never
draws a second one. Changing P renumbers nothing already issued but may collide with it: a partition
change needs a new base (e.g. 200000).

The package: `model` (the case, the config, the decision, ticket numbers), `run` (`apply`, the entry, and the
scratch state of one apply), `clocks` (the SLA clocks of a case: due points, fitting, firing) and `handlers`
(one function per command type). The names below are the engine's API.
"""

from streams.cases.clocks import next_due, tick_command
from streams.cases.handlers import requester, thread_message_id
from streams.cases.model import (
    ACTIVE_STATES,
    MONITOR_ACTOR,
    NOTE_KINDS,
    OPEN_STATES,
    OUTCOMES,
    RECENT_COMMANDS,
    TICKET_BASE,
    TIMER_ACTOR,
    Case,
    CommandRejected,
    Decision,
    EngineConfig,
    ticket_number,
)
from streams.cases.run import DEADLINES, apply

__all__ = [
    "ACTIVE_STATES",
    "DEADLINES",
    "MONITOR_ACTOR",
    "NOTE_KINDS",
    "OPEN_STATES",
    "OUTCOMES",
    "RECENT_COMMANDS",
    "TICKET_BASE",
    "TIMER_ACTOR",
    "Case",
    "CommandRejected",
    "Decision",
    "EngineConfig",
    "apply",
    "next_due",
    "requester",
    "thread_message_id",
    "tick_command",
    "ticket_number",
]
