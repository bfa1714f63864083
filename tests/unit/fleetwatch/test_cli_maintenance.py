"""`fleetwatch maintenance`: argument errors publish nothing; add/list/cancel with Kafka replaced by fakes."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import pytest

import fleetwatch.cli_maintenance as cm
from fleetcore.settings import Settings
from fleetwatch.cli import main
from schemas.maintenance import MaintenanceWindow, Recurrence

D1 = datetime(2026, 11, 2, tzinfo=UTC)
H = timedelta(hours=1)


class FakeTopic:
    """The maintenance topic as a dict; records what was published."""

    def __init__(self) -> None:
        self.windows: dict[str, MaintenanceWindow] = {}
        self.published: list[MaintenanceWindow] = []

    def publish(self, settings: Settings, window: MaintenanceWindow) -> None:
        self.published.append(window)
        self.windows[window.window_id] = window

    def read(self, settings: Settings) -> dict[str, MaintenanceWindow]:
        return dict(self.windows)


@pytest.fixture
def topic(monkeypatch: pytest.MonkeyPatch) -> FakeTopic:
    fake = FakeTopic()
    monkeypatch.setattr(cm, "publish_window", fake.publish)
    monkeypatch.setattr(cm, "read_windows", fake.read)
    return fake


def run(*argv: str) -> int:
    return main(["maintenance", *argv])


def test_add_for_a_server_publishes_a_window_and_prints_its_id(
    topic: FakeTopic, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(
        "add", "--server", "srv-a", "--customer", "acme", "--start", "2026-11-07T02:00Z",
        "--duration", "90m", "--reason", "kernel update", "--as", "alice",
    )  # fmt: skip
    assert code == 0
    (window,) = topic.published
    out = capsys.readouterr().out.splitlines()
    assert out[0] == window.window_id
    assert window.window_id.startswith("mw-")
    assert len(window.window_id) == 11
    assert (window.server_id, window.customer_id) == ("srv-a", "acme")
    assert window.starts_at == datetime(2026, 11, 7, 2, 0, tzinfo=UTC)
    assert window.ends_at - window.starts_at == timedelta(minutes=90)
    assert (window.recurrence, window.until, window.cancelled_at) == (Recurrence.NONE, None, None)
    assert (window.reason, window.created_by) == ("kernel update", "alice")


def test_add_customer_wide_recurring_with_end_until_offset_and_given_id(topic: FakeTopic) -> None:
    code = run(
        "add", "--customer", "acme", "--start", "2026-11-01T23:00:00+01:00", "--end", "2026-11-02T01:00",
        "--recur", "daily", "--until", "2026-12-01", "--id", "mw-nightly",
    )  # fmt: skip
    assert code == 0
    (window,) = topic.published
    assert window.window_id == "mw-nightly"
    assert window.server_id is None
    assert window.starts_at == datetime(2026, 11, 1, 22, 0, tzinfo=UTC)  # offset honoured
    assert window.ends_at == datetime(2026, 11, 2, 1, 0, tzinfo=UTC)  # no offset: UTC
    assert window.recurrence is Recurrence.DAILY
    assert window.until == datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--start", "tomorrow", "--duration", "2h"], "argument --start: not an ISO 8601 time"),
        (["--start", "2026-11-07T02:00Z", "--duration", "2 hours"], "argument --duration: not a duration"),
        (["--start", "2026-11-07T02:00Z", "--duration", "0m"], "duration must be positive"),
        (["--start", "2026-11-07T02:00Z", "--duration", "400d"], "longer than 366 days"),
        (["--start", "2026-11-07T02:00Z", "--end", "2026-11-07T01:00Z"], "must end after it starts"),
        (["--start", "2026-11-07T02:00Z", "--end", "2026-11-07T02:00Z"], "must end after it starts"),
        (["--start", "2026-11-07T02:00Z", "--end", "x"], "argument --end: not an ISO 8601 time"),
        (["--start", "2026-11-07T02:00Z"], "one of the arguments --end --duration is required"),
        (
            ["--start", "2026-11-07T02:00Z", "--end", "2026-11-07T03:00Z", "--duration", "1h"],
            "not allowed with argument",
        ),
        (
            ["--start", "2026-11-07T02:00Z", "--duration", "25h", "--recur", "daily"],
            "shorter than its period",
        ),
        (
            ["--start", "2026-11-07T02:00Z", "--duration", "1h", "--until", "2026-12-01"],
            "--until only applies",
        ),
        (["--start", "2026-11-07T02:00Z", "--duration", "1h", "--recur", "hourly"], "invalid choice"),
        (["--start", "2026-11-07T02:00Z", "--duration", "1h", "--server", "bad id"], "invalid id"),
        (["--start", "9999-12-31T23:00Z", "--duration", "2h"], "after year 9999"),
        (["--start", "2026-11-07T02:00Z", "--duration", "1h", "--reason", "x" * 2001], "at most 2000"),
    ],
)
def test_bad_add_arguments_are_argparse_errors_and_publish_nothing(
    topic: FakeTopic, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        run("add", "--customer", "acme", *argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "usage: fleetwatch maintenance add" in err
    assert message in err
    assert topic.published == []


def test_customer_is_required(topic: FakeTopic, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run("add", "--server", "srv-a", "--start", "2026-11-07T02:00Z", "--duration", "1h")
    assert "--customer" in capsys.readouterr().err
    assert topic.published == []


def window(window_id: str, start: datetime, length: timedelta = 2 * H, **extra: object) -> MaintenanceWindow:
    return MaintenanceWindow.model_validate(
        {
            "window_id": window_id,
            "customer_id": "acme",
            "server_id": "srv-a",
            "starts_at": start,
            "ends_at": start + length,
            "created_by": "ops",
            "created_at": D1 - 48 * H,
            **extra,
        }
    )


def test_render_lists_active_and_upcoming_and_recently_cancelled_by_default() -> None:
    now = D1 + 3 * H
    windows = [
        window("mw-past", D1 - 24 * H),
        window("mw-active", D1 + 2 * H, reason="disk swap"),
        window("mw-next", D1 + 5 * H, server_id=None),
        window("mw-daily", D1 - 48 * H + 10 * H, recurrence="daily"),
        window("mw-off", D1 + 10 * H, cancelled_at=D1 + H, cancelled_by="bob"),
        window("mw-old-off", D1 - 30 * H, cancelled_at=D1 - 40 * H, cancelled_by="bob"),
    ]
    lines = cm.render_windows(windows, now, show_all=False).splitlines()
    assert lines[0].split() == [
        "ID", "STATUS", "SCOPE", "START", "(UTC)", "END", "(UTC)", "REPEATS", "BY", "CANCELLED", "REASON",
    ]  # fmt: skip
    ids = [line.split()[0] for line in lines[1:]]
    assert ids == ["mw-active", "mw-next", "mw-daily", "mw-off"]
    active = lines[1]
    assert "active" in active
    assert "server srv-a" in active
    assert "2026-11-02 02:00:00" in active
    assert active.endswith("disk swap")
    assert "customer acme (all)" in lines[2]
    assert "2026-11-02 10:00:00" in lines[3]  # the next daily occurrence
    assert "daily" in lines[3]
    assert "cancelled" in lines[4]
    assert "by bob at 2026-11-02 01:00:00" in lines[4]
    everything = cm.render_windows(windows, now, show_all=True)
    assert "mw-past" in everything
    assert "mw-old-off" in everything


def test_render_empty() -> None:
    assert "no maintenance windows active or upcoming" in cm.render_windows([], D1, show_all=False)


def test_cancel_republishes_with_cancelled_at_and_by(
    topic: FakeTopic, capsys: pytest.CaptureFixture[str]
) -> None:
    topic.windows["mw-1"] = window("mw-1", D1 + 1000 * 24 * H)
    assert run("cancel", "mw-1", "--as", "carol") == 0
    (cancelled,) = topic.published
    assert cancelled.window_id == "mw-1"
    assert cancelled.cancelled_by == "carol"
    assert cancelled.cancelled_at is not None
    assert cancelled.starts_at == topic.windows["mw-1"].starts_at
    assert "mw-1 cancelled at" in capsys.readouterr().out
    assert run("cancel", "mw-1") == 0  # a second cancel keeps the first one's time
    assert len(topic.published) == 1
    assert "already cancelled" in capsys.readouterr().out


def test_cancel_of_an_unknown_window_is_a_clear_error_with_exit_code_2(
    topic: FakeTopic, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("cancel", "mw-nope") == 2
    assert "no maintenance window 'mw-nope'" in capsys.readouterr().err
    assert topic.published == []


def test_list_prints_the_table(topic: FakeTopic, capsys: pytest.CaptureFixture[str]) -> None:
    topic.windows["mw-1"] = window("mw-1", D1 + 1000 * 24 * H)
    assert run("list") == 0
    out = capsys.readouterr().out
    assert "mw-1" in out
    assert "upcoming" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2h", 2 * H), ("90m", timedelta(minutes=90)), ("1h30m", timedelta(minutes=90)), ("1d", 24 * H),
     ("45s", timedelta(seconds=45)), (" 2H ", 2 * H)],
)  # fmt: skip
def test_durations(text: str, expected: timedelta) -> None:
    assert cm.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "h", "2", "-1h", "1.5h", "2h1d", "1w"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cm.parse_duration(text)


def test_times_without_offset_are_utc() -> None:
    assert cm.parse_time("2026-11-07T02:00") == datetime(2026, 11, 7, 2, tzinfo=UTC)
    assert cm.parse_time("2026-11-07T02:00:00-05:00") == datetime(2026, 11, 7, 7, tzinfo=UTC)
