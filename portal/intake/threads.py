"""Which Message-IDs belong to which case: a small append-only map kept under data_dir.

Every email the intake files (the opening email, each reply) and every answer it sends is recorded as
`(partner id, message-id) -> case id`, so a reply whose In-Reply-To or References names any of them threads
into the case, and a redelivered email (same Message-ID) is recognised and not answered twice. The key
includes the partner: a Message-ID is only the sender's word, so another partner's email reusing it (by
accident or on purpose) neither counts as a redelivery nor takes the thread over; each partner only ever
finds its own records. Email that failed sender authentication is recorded under its own key
(`UNAUTHENTICATED`), never under the partner it claims to be. One JSON
object per line in `<data_dir>/intake/threads.jsonl`; a torn last line (a crash mid-write) is skipped on
load. At most `max_entries` are kept in memory (the oldest forgotten first); the file is rewritten with
only those when it holds twice as many lines.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAX_ENTRIES = 200_000
UNAUTHENTICATED = "!unauthenticated"
"""The partner key of email that failed sender authentication (no partner id can look like it)."""


@dataclass(frozen=True)
class ThreadRecord:
    case_id: str
    partner_id: str | None


class ThreadStore:
    """(partner, message-id) -> case, persisted as JSON lines (`path` None: memory only)."""

    def __init__(self, path: Path | None, max_entries: int = MAX_ENTRIES) -> None:
        self.path = path
        self.max_entries = max_entries
        self._by_message: OrderedDict[tuple[str, str], ThreadRecord] = OrderedDict()
        self._cases: OrderedDict[str, str | None] = OrderedDict()
        self._lines = 0
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._load(path)

    def _load(self, path: Path) -> None:
        if not path.exists():
            return
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                self._lines += 1
                try:
                    data = json.loads(line)
                    record = ThreadRecord(str(data["case"]), data.get("partner"))
                    self._remember(
                        (str(data.get("key") or record.partner_id or ""), str(data["mid"])), record
                    )
                except (ValueError, KeyError, TypeError):
                    log.warning("intake: skipping an unreadable line of %s", path)
        if self._lines > 2 * self.max_entries:
            self._rewrite(path)

    def _rewrite(self, path: Path) -> None:
        temp = path.with_suffix(".tmp")
        with temp.open("w", encoding="utf-8") as handle:
            for key, record in self._by_message.items():
                handle.write(_line(key, record))
        temp.replace(path)
        self._lines = len(self._by_message)

    def _remember(self, key: tuple[str, str], record: ThreadRecord) -> None:
        self._by_message.pop(key, None)
        self._by_message[key] = record
        self._cases.pop(record.case_id, None)
        self._cases[record.case_id] = record.partner_id
        while len(self._by_message) > self.max_entries:
            self._by_message.popitem(last=False)
        while len(self._cases) > self.max_entries:
            self._cases.popitem(last=False)

    def get(self, partner: str | None, message_id: str) -> ThreadRecord | None:
        """The case of `partner`'s email (or our answer to it) with this Message-ID, if the intake filed or
        sent it (`partner` None: senders of no partner; `UNAUTHENTICATED`: email that failed
        authentication)."""
        return self._by_message.get((partner or "", message_id))

    def case(self, case_id: str) -> ThreadRecord | None:
        """The case with this id, if the intake opened it or added to it."""
        if case_id not in self._cases:
            return None
        return ThreadRecord(case_id, self._cases[case_id])

    def add(self, partner: str | None, message_id: str, case_id: str, partner_id: str | None) -> None:
        """Record that `partner`'s `message_id` belongs to `case_id`, a case of `partner_id` (durably, when
        there is a file). `partner` is the key the email is found under again (see `get`)."""
        key = (partner or "", message_id)
        record = ThreadRecord(case_id, partner_id)
        if self._by_message.get(key) == record:
            return
        self._remember(key, record)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(_line(key, record))
            self._lines += 1


def _line(key: tuple[str, str], record: ThreadRecord) -> str:
    partner, mid = key
    data = {"key": partner, "mid": mid, "case": record.case_id, "partner": record.partner_id}
    return json.dumps(data) + "\n"
