"""What analysts may read: the review's findings and their bypass spellings, on the real embedded engine."""

from __future__ import annotations

import pytest

from fleetcore.settings import Settings
from sinks.analysts import QueryRefused, ReadOnlyEngine, without_format
from sinks.analysts.access import (
    DENIED_FUNCTIONS,
    AccessDenied,
    check_show,
    check_tree,
    denied_functions,
    parse_tree,
)


@pytest.fixture(scope="module")
def engine() -> ReadOnlyEngine:
    """The analysts' engine over an in-memory embedded store."""
    return ReadOnlyEngine.open("chdb://", Settings(analysts_max_execution_s=5))


def refused(engine: ReadOnlyEngine, sql: str, database: str = "default", **params: str) -> QueryRefused:
    with pytest.raises(QueryRefused) as caught:
        engine.run(sql, database, "TabSeparated", params)
    return caught.value


def answer(engine: ReadOnlyEngine, sql: str, database: str = "default", **params: str) -> str:
    return engine.run(sql, database, "TabSeparated", params).body.decode()


@pytest.mark.parametrize(
    "sql",
    [
        # the review's findings
        "SELECT getServerSetting('path')",
        "SELECT * FROM system.disks",
        "SELECT name, data_path FROM system.databases",
        "SELECT count() FROM system.stack_trace",
        # spellings of the same
        "SELECT * FROM `system`.`disks`",
        'SELECT * FROM "SYSTEM"."DISKS"',
        "SELECT * FROM system . disks",
        "SELECT * FROM /* x */ system.--y\n disks",
        "select GETSERVERSETTING('path')",
        "SELECT `getServerSetting`('path')",
        "SELECT * FROM system.one WHERE 1 IN (SELECT 1 FROM system.processes)",
        "WITH d AS (SELECT * FROM system.disks) SELECT * FROM d",
        "SELECT * FROM (SELECT * FROM (SELECT path FROM system.disks))",
        "SELECT * FROM view(SELECT * FROM system.disks)",
        "SELECT * FROM system.one AS o JOIN system.users AS u ON 1",
        "SELECT * FROM merge('system', '^disks$')",
        "SELECT * FROM merge(REGEXP('^sys'), '^disks$')",
        "SELECT * FROM clusterAllReplicas('default', system.disks)",
        "SELECT * FROM cluster('default', system, one)",
        "SELECT * FROM loop(system, one) LIMIT 1",
        "SELECT * FROM mergeTreeIndex(default, t)",
        "SELECT dictGet('d', 'a', 1)",
        "SELECT joinGet('j', 'v', 1)",
        "SELECT hostName(), FQDN()",
        "SELECT hostname()",
        "SELECT fullHostName()",
        "SELECT filesystemAvailable()",
        "SELECT getSetting('max_memory_usage')",
        "SELECT addressToSymbol(1)",
        "SELECT demangle('x')",
        "SELECT arrayMap(x -> getServerSetting(x), ['path'])",
        "SELECT * FROM system.tables",
        "SELECT system.disks.path FROM system.one",
        "DESCRIBE TABLE system.disks",
        "EXISTS TABLE system.disks",
        "SHOW CREATE TABLE system.disks",
        "EXPLAIN SELECT * FROM system.disks",
        "EXPLAIN AST SELECT getServerSetting('path')",
        "SHOW PROCESSLIST",
        "SHOW CLUSTERS",
        "SHOW MERGES",
        "SHOW USERS",
        "SHOW GRANTS",
        "SHOW CREATE USER default",
        "SHOW FILESYSTEM CACHES",
        "SHOW ENGINES",
        "SELECT * FROM system.server_settings FORMAT JSON",
        "SELECT 1 FROM system.one FORMAT JSON SETTINGS max_threads = 1",
    ],
)
def test_the_server_is_not_revealed(engine: ReadOnlyEngine, sql: str) -> None:
    error = refused(engine, sql)
    assert (error.code, error.status) in {(497, 403), (164, 403)}, (error.code, error.message)


def test_identifier_parameters_are_checked_once_bound(engine: ReadOnlyEngine) -> None:
    error = refused(engine, "SELECT * FROM {d:Identifier}.{t:Identifier}", d="system", t="disks")
    assert (error.code, error.status) == (497, 403)
    assert "system.disks" in error.message
    assert refused(engine, "SELECT * FROM {t:Identifier}", t="system.disks").code == 497
    assert answer(engine, "SELECT * FROM {d:Identifier}.{t:Identifier}", d="system", t="one") == "0\n"


def test_the_system_database_cannot_be_the_current_one(engine: ReadOnlyEngine) -> None:
    for database in ("system", "SYSTEM"):
        error = refused(engine, "SELECT * FROM disks", database=database)
        assert (error.code, error.status) == (497, 403)


def test_a_comment_hiding_a_second_statement_is_a_syntax_error(engine: ReadOnlyEngine) -> None:
    error = refused(engine, "SELECT 1 -- \nDROP TABLE x")
    assert (error.code, error.name, error.status) == (62, "SYNTAX_ERROR", 400)
    assert error.message.startswith("Syntax error: failed at position 19 (TABLE)")


def test_introspection_is_off_in_the_engine_itself(engine: ReadOnlyEngine) -> None:
    # the deny-list aside, the connection has allow_introspection_functions=0
    assert answer(
        engine, "SELECT value FROM system.settings WHERE name = 'allow_introspection_functions'"
    ) == ("0\n")


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1", "1\n"),
        ("SELECT count() FROM system.one", "1\n"),
        ("SELECT count() FROM numbers(10)", "10\n"),
        ("SELECT number FROM system.numbers LIMIT 3", "0\n1\n2\n"),
        ("SELECT count() > 0 FROM system.functions WHERE name = 'sum'", "1\n"),
        ("SELECT count() > 0 FROM system.columns WHERE table = 'one'", "1\n"),
        ("SELECT name FROM system.settings WHERE name = 'max_execution_time'", "max_execution_time\n"),
        ("SELECT count() > 0 FROM information_schema.tables", "1\n"),
        ("SELECT schema_name FROM information_schema.schemata WHERE schema_name = 'default'", "default\n"),
        ("SELECT currentDatabase(), version() = version()", "default\t1\n"),
        ("SELECT format('{} {}', 'a', 'b')", "a b\n"),
        ("SELECT 1 FORMAT JSONEachRow", '{"1":1}\n'),
        ("SELECT * FROM system.one FORMAT CSV", "0\n"),
        ("SHOW TABLES FROM system LIKE 'one'", "one\n"),
        ("SHOW DATABASES LIKE 'default'", "default\n"),
        ("SHOW COLUMNS FROM one FROM system", None),
        ("DESCRIBE TABLE system.one", None),
        ("DESCRIBE (SELECT 1 AS a)", None),
        ("EXISTS TABLE system.one", "1\n"),
        ("EXPLAIN SELECT 1", None),
        ("EXPLAIN AST SELECT 1", None),
        ("SELECT count() FROM view(SELECT * FROM numbers(3))", "3\n"),
    ],
)
def test_what_analysts_need_still_answers(engine: ReadOnlyEngine, sql: str, expected: str | None) -> None:
    got = answer(engine, sql)
    if expected is not None:
        assert got == expected


def test_the_tree_check_on_dumps() -> None:
    dump = (
        "SelectWithUnionQuery (children 1)\n"
        " ExpressionList (children 1)\n"
        "  SelectQuery (children 2)\n"
        "   ExpressionList (children 1)\n"
        "    Function sum (children 1)\n"
        "   TablesInSelectQuery (children 1)\n"
        "    TablesInSelectQueryElement (children 1)\n"
        "     TableExpression (children 1)\n"
        "      TableIdentifier System.Columns (alias c)\n"
    )
    check_tree(dump, DENIED_FUNCTIONS)
    assert [n.kind for n in parse_tree(dump)][-1] == "TableIdentifier"
    with pytest.raises(AccessDenied, match=r"system\.parts"):
        check_tree(dump.replace("System.Columns", "system.parts"), DENIED_FUNCTIONS)
    with pytest.raises(AccessDenied, match=r"dictGetString\(\)"):
        check_tree(dump.replace("Function sum", "Function dictGetString"), DENIED_FUNCTIONS)
    with pytest.raises(AccessDenied, match=r"__getScalar\(\)"):
        check_tree(dump.replace("Function sum", "Function __getScalar"), DENIED_FUNCTIONS)
    for bad in ("", '{"explain": "SelectWithUnionQuery"}', " SelectWithUnionQuery", "ShowProcesslistQuery"):
        with pytest.raises(AccessDenied):
            check_tree(bad, DENIED_FUNCTIONS)  # an answer in another format, or another statement


def test_the_deny_list_takes_aliases_and_table_functions_from_the_catalogue() -> None:
    denied = denied_functions(
        [("hostname", "hostName"), ("today_alias", "today")], ["merge", "numbers", "Format"]
    )
    assert {"hostname", "merge", "getserversetting"} <= denied
    assert not {"today_alias", "numbers", "format"} & denied


def test_show_forms() -> None:
    for ok in ("SHOW TABLES", "SHOW FULL TABLES FROM x", "SHOW CREATE TABLE t", "SHOW CHANGED SETTINGS"):
        check_show(ok.split())
    for bad in ("SHOW PROCESSLIST", "SHOW CREATE USER x", "SHOW CHANGED X", "SHOW FULL PROCESSLIST", "SHOW"):
        with pytest.raises(AccessDenied):
            check_show(bad.split())
    check_show(["SELECT", "1"])


def test_without_format_drops_only_the_output_format() -> None:
    assert without_format("SELECT 1 FORMAT JSON") == "SELECT 1 "
    assert without_format("SELECT 1 FORMAT `JSON` SETTINGS a = 1") == "SELECT 1  SETTINGS a = 1"
    assert without_format("SELECT format FROM t") == "SELECT format FROM t"
    assert without_format("SELECT * FROM (SELECT 1 FORMAT JSON)") == "SELECT * FROM (SELECT 1 FORMAT JSON)"
    assert without_format("SELECT 'FORMAT JSON'") == "SELECT 'FORMAT JSON'"
