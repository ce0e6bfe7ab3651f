"""What is asked of a trained version or a training run is a real column; the rest of its
metrics is one JSON value shown whole (the status document, `train --json`) and read by nobody
key by key. A figure that comes to be queried gets a column by migration (as v9 did for the
pass and the comparison), so no query looks inside JSON and no reader picks keys out of it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from instaflyd.store import Database

PACKAGE = Path(__file__).resolve().parent.parent / "instaflyd"
JSON_SQL = re.compile(r"\bjson_(extract|each|tree)\b|->>", re.IGNORECASE)
QUERIED = {
    "model_versions": {"val_srcc", "val_pairwise_accuracy", "pass_kind", "compared_version",
                       "compared_val_srcc", "promoted"},
    "training_runs": {"state", "epoch", "epochs", "loss", "cpu_seconds", "version"},
}  # fmt: skip


def test_the_figures_that_are_asked_for_are_columns(tmp_path: Path) -> None:
    with Database(tmp_path / "instafly.db") as db:
        for table, wanted in QUERIED.items():
            columns = {row[1] for row in db.conn.execute(f"PRAGMA table_info({table})")}
            assert wanted <= columns, f"{table} lacks {wanted - columns}"


def test_no_query_looks_inside_json_but_a_migration() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in sorted((PACKAGE / "store").glob("*.py"))
        if path.name != "migrations.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if JSON_SQL.search(line)
    ]
    assert found == []
    assert JSON_SQL.search((PACKAGE / "store" / "migrations.py").read_text())  # v9's backfill


def metrics_readers(source: str) -> list[int]:
    """Lines of `source` with `x.metrics[...]` or `x.metrics.get(...)`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        target = None
        if isinstance(node, ast.Subscript):
            target = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value if node.func.attr == "get" else None
        if isinstance(target, ast.Attribute) and target.attr == "metrics":
            found.append(node.lineno)
    return found


def test_no_reader_picks_keys_out_of_stored_metrics() -> None:
    """Outside the trainer (model/, which builds the dict), nobody reads a key of it."""
    found = [
        f"{path.relative_to(PACKAGE)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] != "model"
        for line in metrics_readers(path.read_text())
    ]
    assert found == []
    planted = "def f(run):\n    return run.metrics['val_mse'], run.metrics.get('seconds')\n"
    assert metrics_readers(planted) == [2, 2]
