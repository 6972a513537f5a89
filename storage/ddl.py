"""Quoted DDL for reshaping a district's table: add and drop columns, and what a table has."""
from __future__ import annotations

import logging

from sqlalchemy import Column, Table, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import DDLElement

log = logging.getLogger(__name__)


class AddColumn(DDLElement):
    inherit_cache = False

    def __init__(self, table: Table, column: Column):
        self.table, self.column = table, column


class DropColumn(DDLElement):
    inherit_cache = False

    def __init__(self, table: Table, column_name: str):
        self.table, self.column_name = table, column_name


class SetStorage(DDLElement):
    """PostgreSQL's `ALTER TABLE ... SET (name = value, ...)`: a table's storage parameters."""
    inherit_cache = False

    def __init__(self, table: Table, parameters: dict[str, int]):
        self.table, self.parameters = table, parameters


@compiles(SetStorage, "postgresql")
def _set_storage(element, compiler, **kw):
    settings = ", ".join(f"{compiler.preparer.quote(name)} = {int(value)}"
                         for name, value in sorted(element.parameters.items()))
    return f"ALTER TABLE {compiler.preparer.format_table(element.table)} SET ({settings})"


@compiles(AddColumn)
def _add_column(element, compiler, **kw):
    spec = compiler.get_column_specification(element.column)
    default = " DEFAULT 0" if not element.column.nullable else ""
    return f"ALTER TABLE {compiler.preparer.format_table(element.table)} ADD COLUMN {spec}{default}"


@compiles(DropColumn)
def _drop_column(element, compiler, **kw):
    return (
        f"ALTER TABLE {compiler.preparer.format_table(element.table)} "
        f"DROP COLUMN {compiler.preparer.quote(element.column_name)}"
    )


def existing_columns(conn: Connection, table_name: str) -> list[str] | None:
    """Column names of `table_name` as it stands in the database, or None if it is absent."""
    inspector = inspect(conn)
    if not inspector.has_table(table_name):
        return None
    return [c["name"] for c in inspector.get_columns(table_name)]
