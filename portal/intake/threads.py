"""Which Message-IDs belong to which case: a small append-only map kept under data_dir.

Every email the intake files (the opening email, each reply) and every answer it sends is recorded as
`message-id -> (case id, partner id)`, so a reply whose In-Reply-To or References names any of them threads
into the case, and a redelivered email (same Message-ID) is recognised and not answered twice. One JSON
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


@dataclass(frozen=True)
class ThreadRecord:
    case_id: str
    partner_id: str | None


class ThreadStore:
    """message-id -> case, persisted as JSON lines (`path` None: memory only)."""

    def __init__(self, path: Path | None, max_entries: int = MAX_ENTRIES) -> None:
        self.path = path
        self.max_entries = max_entries
        self._by_message: OrderedDict[str, ThreadRecord] = OrderedDict()
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
                    self._remember(str(data["mid"]), record)
                except (ValueError, KeyError, TypeError):
                    log.warning("intake: skipping an unreadable line of %s", path)
        if self._lines > 2 * self.max_entries:
            self._rewrite(path)

    def _rewrite(self, path: Path) -> None:
        temp = path.with_suffix(".tmp")
        with temp.open("w", encoding="utf-8") as handle:
            for mid, record in self._by_message.items():
                handle.write(_line(mid, record))
        temp.replace(path)
        self._lines = len(self._by_message)

    def _remember(self, message_id: str, record: ThreadRecord) -> None:
        self._by_message.pop(message_id, None)
        self._by_message[message_id] = record
        self._cases.pop(record.case_id, None)
        self._cases[record.case_id] = record.partner_id
        while len(self._by_message) > self.max_entries:
            self._by_message.popitem(last=False)
        while len(self._cases) > self.max_entries:
            self._cases.popitem(last=False)

    def get(self, message_id: str) -> ThreadRecord | None:
        """The case an email with this Message-ID belongs to, if the intake filed or sent it."""
        return self._by_message.get(message_id)

    def case(self, case_id: str) -> ThreadRecord | None:
        """The case with this id, if the intake opened it or added to it."""
        if case_id not in self._cases:
            return None
        return ThreadRecord(case_id, self._cases[case_id])

    def add(self, message_id: str, case_id: str, partner_id: str | None) -> None:
        """Record that `message_id` belongs to `case_id` (durably, when there is a file)."""
        record = ThreadRecord(case_id, partner_id)
        if self._by_message.get(message_id) == record:
            return
        self._remember(message_id, record)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(_line(message_id, record))
            self._lines += 1


def _line(message_id: str, record: ThreadRecord) -> str:
    return json.dumps({"mid": message_id, "case": record.case_id, "partner": record.partner_id}) + "\n"
