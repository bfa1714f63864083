"""What analysts may read, checked on the engine's own parse of the statement (pure).

The engine's `EXPLAIN AST` of the statement (its query parameters bound, so `{t:Identifier}` shows the
table it names) is a tree, one node a line, indented one space a level:

    SelectWithUnionQuery (children 1)
     ...
          TableIdentifier system.disks
       Function getServerSetting (children 1)

Spelling tricks (comments, quoting, case, spaces, subqueries, CTEs, views of subqueries) are gone there.
`check_tree` allows:
- statements whose root is in READ_ROOTS (SELECT, DESCRIBE, SHOW tables/columns/create..., EXISTS,
  EXPLAIN of those) - SHOW forms reading the server's state are refused by `check_show` on the text;
- tables of the `system` database named in SYSTEM_TABLES only (the schema and what clients ask at
  start-up: no paths, disks, stacks, processes, users, logs or server settings); information_schema and
  the store's own databases are open;
- functions not in the deny-list the engine builds (`denied_functions`): functions revealing the server
  (its settings, host, disks, build and stacks), dictionaries and joins by name, and every table function
  but the generators of TABLE_FUNCTIONS (merge, cluster, remote, file, url, loop, input, ...).
An identifier with a line break in it can add lines to the dump: that only adds names to check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fleetcore.errors import FleetwatchError

ACCESS_DENIED = 497

READ_ROOTS = frozenset(
    {
        "SelectWithUnionQuery",
        "SelectIntersectExceptQuery",
        "Explain",
        "DescribeQuery",
        "ShowTables",
        "ShowColumns",
        "ShowIndexes",
        "ShowCreateTableQuery",
        "ShowCreateViewQuery",
        "ShowCreateDictionaryQuery",
        "ShowCreateDatabaseQuery",
        "ExistsTableQuery",
        "ExistsViewQuery",
        "ExistsDictionaryQuery",
        "ExistsDatabaseQuery",
    }
)
"""Root nodes of the statements analysts may run (EXPLAIN only of the others)."""

_NAMING_ROOTS = frozenset(
    {
        "ShowCreateTableQuery",
        "ShowCreateViewQuery",
        "ShowCreateDictionaryQuery",
        "ExistsTableQuery",
        "ExistsViewQuery",
        "ExistsDictionaryQuery",
    }
)
"""Roots that carry "database table" on their own line."""

SHOW_FORMS = frozenset(
    {"TABLES", "DATABASES", "COLUMNS", "FIELDS", "INDEX", "INDEXES", "INDICES", "KEYS", "DICTIONARIES"}
    | {"SETTINGS", "CHANGED", "CREATE"}
)
"""What may follow SHOW (after FULL, EXTENDED, TEMPORARY); SHOW CREATE only of tables, views,
dictionaries and databases. Refused: PROCESSLIST, CLUSTERS, MERGES, USERS, GRANTS, FILESYSTEM CACHES..."""
_SHOW_MODIFIERS = frozenset({"FULL", "EXTENDED", "TEMPORARY"})
_SHOW_CREATE_OF = frozenset({"TABLE", "VIEW", "DICTIONARY", "DATABASE", "TEMPORARY"})

SYSTEM_DATABASE = "system"
SYSTEM_TABLES = frozenset(
    {
        "one",
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "columns",
        "functions",
        "table_functions",
        "aggregate_function_combinators",
        "data_type_families",
        "table_engines",
        "formats",
        "settings",
        "time_zones",
        "collations",
        "keywords",
    }
)
"""The system tables open to analysts: the columns of tables (system.tables and system.databases hold
data paths: use information_schema.tables / .schemata or SHOW TABLES / DATABASES), what the engine offers,
and the session's own settings (clickhouse-connect reads system.settings when it connects)."""

TABLE_FUNCTIONS = frozenset(
    {
        "numbers",
        "numbers_mt",
        "zeros",
        "zeros_mt",
        "generate_series",
        "generateseries",
        "primes",
        "values",
        "generaterandom",
        "null",
        "format",
        "view",
    }
)
"""Table functions analysts may call (lower case): generators, and view() whose query is checked too."""

DENIED_FUNCTIONS = frozenset(
    {
        # read files, run code, or reach the embedding process
        "file",
        "eval",
        "python",
        "chdb",
        "catboostevaluate",
        "modelevaluate",
        "logtrace",
        # the server's settings, host, disks and build
        "getserversetting",
        "getmergetreesetting",
        "getsetting",
        "getsettingordefault",
        "getmacro",
        "hostname",
        "fqdn",
        "displayname",
        "serveruuid",
        "filesystemavailable",
        "filesystemcapacity",
        "filesystemunreserved",
        "filesystemfree",
        "getoskernelversion",
        "zookeepersessionuptime",
        "getclienthttpheader",
        "currentrequesturl",
        # access control
        "currentprofiles",
        "enabledprofiles",
        "defaultprofiles",
        "currentroles",
        "enabledroles",
        "defaultroles",
        # introspection (stacks, symbols): also off by allow_introspection_functions=0
        "addresstoline",
        "addresstolinewithinlines",
        "addresstosymbol",
        "demangle",
        # other tables by name
        "joinget",
        "joingetornull",
    }
)
"""Functions refused (lower case), with every alias of them and every table function outside
TABLE_FUNCTIONS (`denied_functions` adds those from the engine's catalogue)."""
DENIED_PREFIXES = ("dict", "__")
"""Dictionary functions (dictGet... read any dictionary by name) and the engine's internal functions."""


class AccessDenied(FleetwatchError):
    """A statement reads what analysts may not: a ClickHouse ACCESS_DENIED (497, HTTP 403)."""

    code = ACCESS_DENIED
    name = "ACCESS_DENIED"


def denied_functions(aliases: Iterable[tuple[str, str]], table_functions: Iterable[str]) -> frozenset[str]:
    """The deny-list (lower case) from the engine's catalogue: `aliases` are system.functions' (name,
    alias_to) pairs, `table_functions` system.table_functions' names."""
    denied = set(DENIED_FUNCTIONS)
    denied.update(name.lower() for name, target in aliases if target.lower() in DENIED_FUNCTIONS)
    denied.update(name.lower() for name in table_functions if name.lower() not in TABLE_FUNCTIONS)
    return frozenset(denied)


def function_denied(name: str, denied: frozenset[str]) -> bool:
    """Whether analysts may not call the function `name`."""
    lower = name.lower()
    return lower in denied or lower.startswith(DENIED_PREFIXES)


def check_database(database: str) -> None:
    """The current database of a query may not be `system` (its tables would be reachable unqualified)."""
    if database.lower() == SYSTEM_DATABASE:
        raise AccessDenied(
            "Not enough privileges: the system database cannot be the current database; "
            f"name its open tables in full (system.{', system.'.join(sorted(SYSTEM_TABLES))})"
        )


def check_show(words: list[str]) -> None:
    """Refuse SHOW forms that read the server's state. `words`: the statement's leading words, upper case."""
    if not words or words[0] != "SHOW":
        return
    rest = words[1:]
    while rest and rest[0] in _SHOW_MODIFIERS:
        rest = rest[1:]
    form = rest[0] if rest else ""
    allowed = form in SHOW_FORMS
    if form == "CREATE":
        allowed = len(rest) > 1 and rest[1] in _SHOW_CREATE_OF
    if form == "CHANGED":
        allowed = len(rest) > 1 and rest[1] == "SETTINGS"
    if not allowed:
        shown = " ".join(words[:3])
        raise AccessDenied(
            f"Not enough privileges: {shown} is not open to analysts "
            "(SHOW TABLES, DATABASES, COLUMNS, INDEXES, DICTIONARIES, SETTINGS and CREATE TABLE are)"
        )


@dataclass(frozen=True)
class Node:
    """One line of an EXPLAIN AST dump: its depth, kind (first word) and the rest of the line."""

    depth: int
    kind: str
    text: str


def parse_tree(dump: str) -> list[Node]:
    """The nodes of an EXPLAIN AST dump, in order."""
    nodes: list[Node] = []
    for line in dump.splitlines():
        stripped = line.lstrip(" ")
        if stripped:
            kind, _, text = stripped.partition(" ")
            nodes.append(Node(len(line) - len(stripped), kind, text))
    return nodes


def _system_table(name: str) -> str | None:
    """The table of `system` a dotted name refers to (db.table or db.table.column), or None."""
    parts = name.split(".")
    if len(parts) >= 2 and parts[0].lower() == SYSTEM_DATABASE:
        return parts[1]
    return None


def _check_system_table(table: str | None) -> None:
    if table is not None and table.lower() not in SYSTEM_TABLES:
        raise AccessDenied(
            f"Not enough privileges: system.{table} is not open to analysts (open: system."
            f"{', system.'.join(sorted(SYSTEM_TABLES))}; information_schema for tables and databases)"
        )


def check_tree(dump: str, denied: frozenset[str]) -> None:
    """Refuse a statement, given as its EXPLAIN AST dump, that reads what analysts may not."""
    nodes = parse_tree(dump)
    if not nodes or nodes[0].depth != 0 or nodes[0].kind not in READ_ROOTS:
        kind = nodes[0].kind if nodes else "an empty statement"
        raise AccessDenied(f"Not enough privileges: {kind} is not open to analysts")
    root = nodes[0]
    if root.kind == "Explain":
        explained = [n for n in nodes if n.depth == 1 and n.kind != "Set"]
        if not explained or any(n.kind not in READ_ROOTS - {"Explain"} for n in explained):
            raise AccessDenied("Not enough privileges: EXPLAIN of this statement is not open to analysts")
    if root.kind in _NAMING_ROOTS:  # "ShowCreateTableQuery system disks (children 2)"
        database, _, table = root.text.partition(" ")
        if database.lower() == SYSTEM_DATABASE:
            _check_system_table(table.split(" (")[0])
    for node in nodes:
        if node.kind == "Function":
            name = node.text.split(" ")[0]
            if function_denied(name, denied):
                raise AccessDenied(f"Not enough privileges: {name}() is not open to analysts")
        elif node.kind in ("TableIdentifier", "Identifier"):
            _check_system_table(_system_table(node.text.split(" (")[0]))
