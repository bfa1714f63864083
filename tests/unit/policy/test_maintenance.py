"""Maintenance windows over virtual time: recurrence edges, until, cancellation, scope, the book's index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from policy.maintenance import (
    MaintenanceBook,
    Occurrence,
    WindowStatus,
    applies,
    covering,
    current_or_next,
    occurrence_at,
    status,
    still_relevant,
)
from schemas.maintenance import MaintenanceWindow, Recurrence

D1 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
H = timedelta(hours=1)
M = timedelta(minutes=1)
MS = timedelta(milliseconds=1)


def window(
    start: datetime = D1 + 2 * H,
    length: timedelta = 2 * H,
    *,
    window_id: str = "mw-1",
    server_id: str | None = "srv-a",
    customer_id: str = "acme",
    **extra: Any,
) -> MaintenanceWindow:
    return MaintenanceWindow(
        window_id=window_id,
        server_id=server_id,
        customer_id=customer_id,
        starts_at=start,
        ends_at=start + length,
        created_by="ops",
        created_at=D1 - 24 * H,
        **extra,
    )


def test_one_off_start_inclusive_end_exclusive() -> None:
    w = window()
    assert occurrence_at(w, D1 + 2 * H - MS) is None
    assert occurrence_at(w, D1 + 2 * H) == Occurrence(D1 + 2 * H, D1 + 4 * H)
    assert occurrence_at(w, D1 + 4 * H - MS) is not None
    assert occurrence_at(w, D1 + 4 * H) is None
    assert occurrence_at(w, D1 + 26 * H) is None  # no repeat the next day


def test_daily_window_across_midnight() -> None:
    w = window(D1 + 23 * H, 2 * H, recurrence=Recurrence.DAILY)  # 23:00 -> 01:00 every day
    assert occurrence_at(w, D1 + 23 * H + 30 * M) == Occurrence(D1 + 23 * H, D1 + 25 * H)
    assert occurrence_at(w, D1 + 24 * H + 30 * M) == Occurrence(D1 + 23 * H, D1 + 25 * H)  # 00:30 day 2
    assert occurrence_at(w, D1 + 25 * H) is None  # 01:00 day 2, end exclusive
    assert occurrence_at(w, D1 + 30 * H) is None  # midday day 2
    assert occurrence_at(w, D1 + 47 * H) == Occurrence(D1 + 47 * H, D1 + 49 * H)  # 23:00 day 2
    assert occurrence_at(w, D1 + 48 * H + 59 * M) == Occurrence(D1 + 47 * H, D1 + 49 * H)  # 00:59 day 3
    assert occurrence_at(w, D1 + 30 * 24 * H + 30 * M) is not None  # a month later, 00:30
    assert occurrence_at(w, D1 + 30 * M) is None  # 00:30 of day 1 precedes the first occurrence


def test_weekly_window() -> None:
    w = window(D1 + 2 * H, 3 * H, recurrence=Recurrence.WEEKLY)  # Mondays 02:00-05:00
    week = 7 * 24 * H
    assert occurrence_at(w, D1 + week + 2 * H) == Occurrence(D1 + week + 2 * H, D1 + week + 5 * H)
    assert occurrence_at(w, D1 + 5 * week + 4 * H) is not None
    assert occurrence_at(w, D1 + 24 * H + 3 * H) is None  # Tuesday 03:00
    assert occurrence_at(w, D1 + week + 5 * H) is None


def test_until_stops_occurrences_starting_at_or_after_it() -> None:
    w = window(D1 + 2 * H, 2 * H, recurrence=Recurrence.DAILY, until=D1 + 2 * 24 * H + 2 * H)
    assert occurrence_at(w, D1 + 3 * H) is not None  # day 1
    assert occurrence_at(w, D1 + 24 * H + 3 * H) is not None  # day 2
    assert occurrence_at(w, D1 + 48 * H + 3 * H) is None  # day 3 would start exactly at until
    later = w.model_copy(update={"until": D1 + 48 * H + 2 * H + MS})
    assert occurrence_at(later, D1 + 48 * H + 3 * H) is not None  # starts before until: it runs whole
    assert occurrence_at(later, D1 + 48 * H + 4 * H - MS) is not None


def test_cancel_stops_covering_from_cancelled_at_but_earlier_moments_stay_covered() -> None:
    w = window(cancelled_at=D1 + 3 * H)
    assert applies(w, D1 + 2 * H)
    assert applies(w, D1 + 3 * H - MS)  # a replay of a result from before the cancel stays planned
    assert not applies(w, D1 + 3 * H)
    assert not applies(w, D1 + 3 * H + M)


def test_cancel_before_the_window_starts_cancels_all_of_it() -> None:
    w = window(D1 + 2 * H, 2 * H, recurrence=Recurrence.DAILY, cancelled_at=D1 + H)
    assert not applies(w, D1 + 2 * H)
    assert not applies(w, D1 + 26 * H)


def test_cancel_after_the_window_changes_nothing_about_it() -> None:
    w = window(cancelled_at=D1 + 10 * H)
    assert applies(w, D1 + 2 * H)
    assert applies(w, D1 + 4 * H - MS)


def test_customer_wide_window_covers_every_server_of_that_customer_only() -> None:
    wide = window(server_id=None, customer_id="acme")
    at = D1 + 3 * H
    assert covering([wide], "srv-a", "acme", at) == wide
    assert covering([wide], "srv-z", "acme", at) == wide
    assert covering([wide], "srv-a", "other", at) is None


def test_server_window_covers_only_its_server() -> None:
    own = window(server_id="srv-a")
    at = D1 + 3 * H
    assert covering([own], "srv-a", "acme", at) == own
    assert covering([own], "srv-b", "acme", at) is None


def test_a_servers_own_window_wins_then_the_smallest_id() -> None:
    at = D1 + 3 * H
    wide = window(window_id="mw-0", server_id=None)
    own_b = window(window_id="mw-b")
    own_a = window(window_id="mw-a")
    assert covering([wide, own_b, own_a], "srv-a", "acme", at) == own_a
    assert covering([own_a, own_b, wide], "srv-a", "acme", at) == own_a
    assert covering([wide, window(window_id="mw-z", server_id=None)], "srv-a", "acme", at) == wide


def test_book_lookup_upsert_replaces_scope_and_remove() -> None:
    at = D1 + 3 * H
    book = MaintenanceBook([window(window_id="mw-1", server_id="srv-a")])
    assert book.covering("srv-a", "acme", at) is not None
    book.upsert(window(window_id="mw-1", server_id=None, customer_id="globex"))  # same id, new scope
    assert len(book) == 1
    assert book.covering("srv-a", "acme", at) is None
    found = book.covering("srv-q", "globex", at)
    assert found is not None
    assert found.window_id == "mw-1"
    book.apply("mw-1", None)  # tombstone
    assert len(book) == 0
    assert book.covering("srv-q", "globex", at) is None
    book.remove("mw-unknown")
    assert book.windows() == []


def test_book_honours_cancellation_like_covering() -> None:
    book = MaintenanceBook()
    book.apply("mw-1", window(cancelled_at=D1 + 3 * H))
    assert book.covering("srv-a", "acme", D1 + 2 * H) is not None
    assert book.covering("srv-a", "acme", D1 + 3 * H) is None
    assert "mw-1" in book
    assert book.get("mw-1") is not None


def test_current_or_next_and_status() -> None:
    w = window(D1 + 2 * H, 2 * H, recurrence=Recurrence.DAILY, until=D1 + 48 * H)
    assert current_or_next(w, D1) == Occurrence(D1 + 2 * H, D1 + 4 * H)
    assert status(w, D1) is WindowStatus.UPCOMING
    assert status(w, D1 + 2 * H) is WindowStatus.ACTIVE
    assert current_or_next(w, D1 + 5 * H) == Occurrence(D1 + 26 * H, D1 + 28 * H)
    assert status(w, D1 + 5 * H) is WindowStatus.UPCOMING
    assert current_or_next(w, D1 + 28 * H) is None  # day 2 was the last one
    assert status(w, D1 + 28 * H) is WindowStatus.PAST
    assert not still_relevant(w, D1 + 28 * H)


def test_cancelled_window_is_listed_until_the_occurrence_it_cancelled_would_have_ended() -> None:
    w = window(D1 + 2 * H, 2 * H, recurrence=Recurrence.DAILY, cancelled_at=D1 + H)
    assert status(w, D1 + H) is WindowStatus.CANCELLED
    assert still_relevant(w, D1 + 3 * H)
    assert not still_relevant(w, D1 + 4 * H)  # recurring forever, but cancelled: gone from the list
    assert status(window(cancelled_at=D1 + 10 * H), D1 + 3 * H) is WindowStatus.ACTIVE


@pytest.mark.parametrize("recurrence", [Recurrence.DAILY, Recurrence.WEEKLY])
def test_a_window_as_long_as_its_period_is_refused_by_the_contract(recurrence: Recurrence) -> None:
    period = 24 * H if recurrence is Recurrence.DAILY else 7 * 24 * H
    with pytest.raises(ValueError, match="shorter than its period"):
        window(length=period, recurrence=recurrence)
