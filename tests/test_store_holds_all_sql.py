"""All SQL lives in instaflyd/store/: no other package runs a query or spells one.

The check reads the package's syntax trees: a call of `.execute`, `.executemany` or
`.executescript`, or a string that starts like an SQL statement, anywhere outside
instaflyd/store/, is a finding. The second test plants each kind in a copy of the package, so a
check that has stopped finding anything fails too.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "instaflyd"
RUNS_SQL = frozenset({"execute", "executemany", "executescript"})
SQL_STATEMENT = re.compile(
    r"\s*(SELECT|INSERT|UPDATE|DELETE|REPLACE|CREATE|ALTER|DROP|PRAGMA|WITH)\s+[\w*(]"
)


def sql_outside_store(package: Path) -> list[str]:
    """Each query run or spelled outside `package`/store, as "path:line: what"."""
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if relative.parts[0] == "store":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{relative}:{getattr(node, 'lineno', 0)}"
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in RUNS_SQL
            ):
                found.append(f"{where}: .{node.func.attr}()")
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and SQL_STATEMENT.match(node.value)
            ):
                found.append(f"{where}: {node.value[:40]!r}")
    return found


def test_no_sql_outside_the_store() -> None:
    assert sql_outside_store(PACKAGE) == []


def test_the_check_finds_planted_sql_but_not_the_stores(tmp_path: Path) -> None:
    copy = tmp_path / "instaflyd"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "web" / "pages.py", "a") as pages:
        pages.write(
            "\n\ndef planted(db):\n"
            '    db.conn.execute("UPDATE jobs SET state = ?", ("done",))\n'
            '    return db.one("SELECT ext FROM images")\n'
        )
    with open(copy / "store" / "jobs.py", "a") as jobs:
        jobs.write('\n\ndef planted(conn):\n    conn.execute("SELECT 1")\n')
    found = sql_outside_store(copy)
    assert [entry.split(": ", 1)[1] for entry in found] == [
        ".execute()",
        "'UPDATE jobs SET state = ?'",
        "'SELECT ext FROM images'",
    ]
    assert all(entry.startswith("web/pages.py:") for entry in found)


def test_store_functions_take_a_connection_unless_they_commit_themselves() -> None:
    """The caller owns the transaction: a store function takes a `sqlite3.Connection`; one that
    takes the `Database` must open its own transaction(s) with it."""
    takes_database = {}
    for path in sorted((PACKAGE / "store").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.FunctionDef) or not node.args.args:
                continue
            first = node.args.args[0]
            annotation = ast.unparse(first.annotation) if first.annotation else ""
            if annotation == "Database":
                commits = any(
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "transaction"
                    for call in ast.walk(node)
                )
                takes_database[node.name] = commits
            elif first.arg in ("conn", "db"):
                assert annotation == "sqlite3.Connection", (path.name, node.name, annotation)
    assert takes_database == {
        "record_event": True,
        "prune_events": True,
        "prune_unused_images": True,
    }
