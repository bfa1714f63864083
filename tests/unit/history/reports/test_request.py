"""Report requests are validated before any SQL; the policy book loads like the engine's; CSV is flat."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetcore.errors import ConfigError
from history.queries import InvalidQuery
from history.reports import load_policies, parse, to_csv


def test_parse_accepts_a_full_request() -> None:
    req = parse("capacity.svg", {"month": "2026-02", "customer": "acme", "threshold_ms": "250"})
    assert (req.name, req.svg, req.format, req.threshold_ms) == ("capacity", True, "json", 250.0)
    assert (req.query.start.isoformat(), req.query.end.isoformat()) == (
        "2026-02-01T00:00:00+00:00",
        "2026-03-01T00:00:00+00:00",
    )
    assert parse("cases", {"month": "2026-12"}).query.end.year == 2027
    assert parse("sla", {"month": "2026-11", "case": " fw-100003 "}).query.case == "fw-100003"


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("uptime", {}),
        ("bogus", {"month": "2026-11"}),
        ("uptime", {"month": "2026-11", "format": "xml"}),
        ("capacity", {"month": "2026-11", "threshold_ms": "fast"}),
        ("uptime", {"month": "2026-00"}),
        ("uptime", {"month": "2026-11", "server": "a/b"}),
        ("uptime", {"month": "2026-11", "case": "FW-100003"}),  # the drill-down is the SLA report's
        ("sla", {"month": "2026-11", "case": "x" * 101}),
        ("sla", {"month": "2026-11", "case": "FW-1\nBcc: x"}),
    ],
)
def test_parse_refuses_bad_input(name: str, params: dict[str, str]) -> None:
    with pytest.raises(InvalidQuery):
        parse(name, params)


def test_load_policies(tmp_path: Path) -> None:
    assert load_policies(None).for_customer("x").uptime_target_percent is None
    good = tmp_path / "p.yaml"
    good.write_text("customers:\n  acme:\n    uptime_target_percent: 99.5\n")
    assert load_policies(good).for_customer("acme").uptime_target_percent == 99.5
    bad = tmp_path / "bad.yaml"
    bad.write_text("customers:\n  acme:\n    uptime_target_percent: 150\n")
    with pytest.raises(ConfigError):
        load_policies(bad)
    with pytest.raises(ConfigError):
        load_policies(tmp_path / "missing.yaml")


def test_csv_leaves_out_nested_values() -> None:
    text = to_csv([{"a": 1, "b": None, "timeline": [1]}, {"a": 2, "c": "x,y"}])
    assert text.splitlines() == ["a,b,c", "1,,", '2,,"x,y"']
