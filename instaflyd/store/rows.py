"""The one way a row becomes a record: by column name, into a frozen dataclass of the same names.

A query selects the record's fields by name (`columns(Record)` spells them), and `record(Record,
row)` builds it; a column that needs parsing (JSON, a 0/1 flag) is passed in already parsed. A
renamed or missing column then fails here, with its name, not in a reader of the record.
"""

from __future__ import annotations

import sqlite3
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    R = TypeVar("R", bound=DataclassInstance)
else:
    R = TypeVar("R")


def columns(cls: type[DataclassInstance], table: str = "") -> str:
    """The record's fields as a SELECT list, each qualified by `table` if given."""
    prefix = f"{table}." if table else ""
    return ", ".join(prefix + f.name for f in fields(cls))


def record(cls: type[R], row: sqlite3.Row, **parsed: Any) -> R:
    """`cls` from the row's columns of the same names; `parsed` gives the ones already turned
    into their field's type (JSON, flags)."""
    values = {f.name: parsed[f.name] if f.name in parsed else row[f.name] for f in fields(cls)}
    return cls(**values)
