"""The compose deployment's read-only `analyst` ClickHouse user (deploy/clickhouse), checked without a server.

There is no Docker engine here, so the server never loads these files; what can be checked is: the XML
parses; the profile's settings and the quota's resources are names the engine knows (asked of the embedded
engine, the same ClickHouse code); the key limits are set; the grants parse as GRANT statements, read only,
and open exactly what the embedded gateway opens; and docker-compose.yml mounts both files.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import chdb
import pytest
import yaml

from sinks.analysts.access import SYSTEM_TABLES

ROOT = Path(__file__).resolve().parents[2]
USERS = ROOT / "deploy" / "clickhouse" / "users.d" / "analysts.xml"
CONFIG = ROOT / "deploy" / "clickhouse" / "config.d" / "analysts.xml"


def engine_rows(sql: str) -> list[str]:
    conn: Any = chdb.connect(":memory:")  # type: ignore[no-untyped-call]
    try:
        return str(conn.query(sql, "TSVRaw").bytes().decode()).splitlines()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def users() -> ET.Element:
    return ET.parse(USERS).getroot()


def test_the_profile_is_read_only_and_limited(users: ET.Element) -> None:
    profile = users.find("profiles/analyst")
    assert profile is not None
    settings = {child.tag: (child.text or "").strip() for child in profile}
    assert settings["readonly"] == "1"
    assert settings["allow_introspection_functions"] == "0"
    assert settings["result_overflow_mode"] == "throw"
    for limit in (
        "max_execution_time",
        "max_memory_usage",
        "max_result_rows",
        "max_result_bytes",
        "max_concurrent_queries_for_user",
    ):
        assert int(settings[limit]) > 0, limit
    names = ", ".join(f"'{name}'" for name in settings)
    known = set(engine_rows(f"SELECT name FROM system.settings WHERE name IN ({names})"))
    assert known == set(settings), f"settings the engine does not know: {set(settings) - known}"


def test_the_quota_limits_queries_errors_and_failed_sign_ins(users: ET.Element) -> None:
    quota = users.find("quotas/analyst")
    assert quota is not None
    intervals = quota.findall("interval")
    assert intervals
    columns = set(
        engine_rows("SELECT name FROM system.columns WHERE database = 'system' AND table = 'quota_limits'")
    )
    resources: set[str] = set()
    for interval in intervals:
        limits = {child.tag: int((child.text or "0").strip()) for child in interval}
        assert limits.pop("duration") > 0
        assert all(value > 0 for value in limits.values())
        unknown = {name for name in limits if f"max_{name}" not in columns}
        assert not unknown, f"quota resources the engine does not know: {unknown}"
        resources |= set(limits)
    assert {"queries", "errors", "failed_sequential_authentications", "execution_time"} <= resources


def test_the_user_signs_in_with_a_hash_from_the_environment(users: ET.Element) -> None:
    user = users.find("users/analyst")
    assert user is not None
    password = user.find("password_sha256_hex")
    assert password is not None
    assert password.get("from_env") == "CLICKHOUSE_ANALYST_PASSWORD_SHA256"
    assert not (password.text or "").strip()  # no password in the repository
    assert user.findtext("profile") == "analyst"
    assert user.findtext("quota") == "analyst"
    assert user.findtext("access_management") == "0"
    for tag in ("password", "password_double_sha1_hex", "no_password"):
        assert user.find(tag) is None, tag


def test_the_grants_open_what_the_gateway_opens_and_only_to_read(users: ET.Element) -> None:
    grants = [(query.text or "").strip() for query in users.findall("users/analyst/grants/query")]
    canonical = engine_rows(
        "SELECT formatQuerySingleLine(q) FROM (SELECT arrayJoin(["
        + ", ".join("'" + grant.replace("'", "\\'") + " TO analyst'" for grant in grants)
        + "]) AS q)"
    )
    assert len(canonical) == len(grants)  # each one a GRANT statement the engine parses
    system_tables: set[str] = set()
    databases: set[str] = set()
    pattern = re.compile(r"^GRANT (?P<what>.+) ON (?P<db>[\w*]+)\.(?P<table>[\w*]+) TO analyst$")
    for grant in canonical:
        match = pattern.match(grant)
        assert match, grant
        what = {p.strip() for p in match["what"].split(",")}
        if match["db"] == "*":
            assert what == {"CREATE TEMPORARY TABLE"}, grant  # table functions; readonly=1 refuses the DDL
            continue
        assert what <= {"SELECT", "SHOW"}, grant
        if match["db"] == "system":
            system_tables.add(match["table"])
        else:
            assert match["table"] == "*", grant
            databases.add(match["db"])
    assert system_tables == SYSTEM_TABLES
    assert databases == {"fleetwatch", "information_schema", "INFORMATION_SCHEMA"}


def test_system_tables_need_a_grant() -> None:
    root = ET.parse(CONFIG).getroot()
    improvements = root.find("access_control_improvements")
    assert improvements is not None
    assert improvements.findtext("select_from_system_db_requires_grant") == "true"
    assert improvements.findtext("select_from_information_schema_requires_grant") == "true"


def test_compose_mounts_the_files_and_passes_the_hash() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    clickhouse = compose["services"]["clickhouse"]
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in clickhouse["volumes"]}
    assert mounts["./deploy/clickhouse/users.d/analysts.xml"] == "/etc/clickhouse-server/users.d/analysts.xml"
    assert (
        mounts["./deploy/clickhouse/config.d/analysts.xml"] == "/etc/clickhouse-server/config.d/analysts.xml"
    )
    assert all(volume.endswith(":ro") for volume in clickhouse["volumes"] if volume.startswith("./deploy/"))
    value = clickhouse["environment"]["CLICKHOUSE_ANALYST_PASSWORD_SHA256"]
    default = re.fullmatch(r"\$\{CLICKHOUSE_ANALYST_PASSWORD_SHA256:-([0-9a-f]{64})\}", value)
    assert default, value
    assert set(default.group(1)) == {"0"}  # closed by default: no password hashes to zeros
