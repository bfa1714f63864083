"""Every notification carries the case's chain head: an event of the same decision that is final (never the
decision's last event, which is re-hashed with the deadlines), so a customer can later prove a truncation."""

from __future__ import annotations

from schemas.cases import case_event_hash
from tests.unit.streams.test_cases import C, monitor_sev1, staff_case


def test_notifications_carry_a_chain_head_that_is_on_the_topic() -> None:
    sim = monitor_sev1()
    sim.send(C.START_WORK, 10)
    sim.send(C.POST_UPDATE, 20, message="rebooting the server")
    sim.run_until(600)
    assert sim.notifications
    by_seq = {e.seq: e for e in sim.events}
    for note in sim.notifications:
        assert note.chain_seq is not None, note.key
        head = by_seq[note.chain_seq]
        assert head.hash == note.chain_hash == case_event_hash(head)
        follows = by_seq[note.chain_seq + 1]  # the notification.requested event that records it
        assert follows.type.value == "notification.requested"
        assert follows.details.get("key") == note.key


def test_staff_case_notifications_have_heads_too() -> None:
    sim = staff_case()
    assert sim.notifications
    assert all(n.chain_seq is not None and len(n.chain_hash) == 64 for n in sim.notifications)
