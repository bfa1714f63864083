"""The hash-chain audit: an intact chain passes, and every kind of tampering is detected and named."""

from __future__ import annotations

import json

from casefile.audit import customer_hash, verify_all, verify_chain
from schemas.cases import CaseEvent, case_event_hash, chained
from tests.helpers import case_event
from tests.unit.casefile.builders import KEYS, SIGNER, E, S, event, history


def problems_of(events: list[CaseEvent]) -> list[str]:
    report = verify_chain(events, keys=KEYS)
    assert not report.ok
    assert report.problems
    return report.problems


def test_intact_chain_is_ok() -> None:
    events = history()
    report = verify_chain(events, keys=KEYS)
    assert report.ok, report.problems
    assert report.verified
    assert report.case_id == "stf-case1"
    assert report.count == 9
    assert report.head_seq == 8
    assert report.head_hash == events[-1].hash
    assert "OK, chain of 9 events intact and signed" in report.render()


def test_identical_duplicates_are_fine() -> None:
    events = history()
    report = verify_chain([*events[:5], events[3], events[4], *events[5:], events[-1]], keys=KEYS)
    assert report.ok, report.problems
    assert report.count == 9


def test_rewritten_field_is_detected() -> None:
    events = history()
    forged = events[2].model_copy(update={"reason": "all fine, nothing to see"})
    problems = problems_of([*events[:2], forged, *events[3:]])
    assert len(problems) == 1
    assert "seq 2" in problems[0]
    assert events[2].event_id in problems[0]
    assert "hash mismatch" in problems[0]
    assert "FAILED" in verify_chain([*events[:2], forged, *events[3:]], keys=KEYS).render()


def test_rewritten_copy_beside_the_original_is_detected() -> None:
    events = history()
    forged = events[4].model_copy(update={"at": events[4].at.replace(hour=3)})
    problems = problems_of([*events, forged])
    assert any("seq 4" in p and "hash mismatch" in p for p in problems)
    assert any("seq 4 holds 2 different events" in p for p in problems)


def test_removed_event_is_detected() -> None:
    events = history()
    problems = problems_of(events[:3] + events[4:])
    assert problems == ["seq 3 is missing (an event was removed)"]


def test_removed_first_event_is_detected() -> None:
    problems = problems_of(history()[1:])
    assert any("starts at seq 1, not 0" in p for p in problems)


def test_swapped_in_the_log_is_detected() -> None:
    events = history()
    swapped = [*events[:3], events[4], events[3], *events[5:]]
    problems = problems_of(swapped)
    assert any("seq 3" in p and "reordered" in p for p in problems)


def test_swapped_and_renumbered_is_detected() -> None:
    """Swap two events' contents and recompute both hashes with their new seqs: the links break."""
    events = history()
    third = SIGNER.sign(chained(events[4], 3, events[2].hash))
    fourth = SIGNER.sign(chained(events[3], 4, third.hash))
    problems = problems_of([*events[:3], third, fourth, *events[5:]])
    assert any("seq 5" in p and "prev_hash" in p for p in problems)
    # and the originals cannot simply be left in the log beside the forgeries
    problems = problems_of([*events, third, fourth])
    assert any("seq 3 holds 2 different events" in p for p in problems)


def test_inserted_event_is_detected() -> None:
    events = history()
    extra = SIGNER.sign(
        chained(event(E.NOTE, 41, S.WORKING, reason="nothing happened here"), 4, events[3].hash)
    )
    problems = problems_of([*events[:4], extra, *events[4:]])
    assert any("seq 4 holds 2 different events" in p and extra.event_id in p for p in problems)


def test_forged_event_with_recomputed_hash_but_wrong_prev_hash() -> None:
    events = history()
    forged = SIGNER.sign(chained(events[6].model_copy(update={"reason": "no breach"}), 6, "0" * 64))
    assert forged.hash == case_event_hash(forged)
    problems = problems_of([*events[:6], forged, *events[7:]])
    assert any("seq 6" in p and forged.event_id in p and "prev_hash" in p for p in problems)
    assert any("seq 7" in p and "prev_hash" in p for p in problems)


def test_unchained_and_foreign_events_are_reported() -> None:
    legacy = case_event("web-1", E.CASE_OPENED, 10)
    assert any("has no hash" in p for p in problems_of([legacy]))
    other = history(case_id="stf-other")
    problems = verify_chain([*history(), other[0]], "stf-case1", KEYS).problems
    assert any("belongs to case stf-other" in p for p in problems)


def test_no_events_is_not_ok() -> None:
    report = verify_chain([], "stf-x")
    assert not report.ok
    assert report.problems == ["no events for this case"]


def test_verify_all_reports_per_case() -> None:
    one, two = history(), history(case_id="stf-case2", ticket="FW-100004")
    tampered = two[1].model_copy(update={"owner": "mallory"})
    reports = verify_all([one[0], two[0], *one[1:], tampered, *two[2:]], KEYS)
    assert [(r.case_id, r.ok) for r in reports] == [("stf-case1", True), ("stf-case2", False)]


def test_customer_recipe_matches_the_chain_hash() -> None:
    """The docstring's recipe (stdlib json + sha256 on the wire JSON) gives the engine's hashes."""
    tricky = event(
        E.NOTE,
        3,
        S.WORKING,
        reason='Grüße, "quoted" \\ back\tslash\nnew line \u2028 \x01 ✓',
        details={"ratio": 0.75, "count": 3, "flag": True, "none": None, "text": "é"},
    )
    for item in [*history(), chained(tricky, 9, "ab" * 32)]:
        wire = json.loads(item.model_dump_json())
        assert customer_hash(wire) == item.hash == case_event_hash(item)
