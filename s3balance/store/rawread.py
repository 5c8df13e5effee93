"""
The hottest read, GetObject's lookup, on SQLite without SQLAlchemy's
per-statement machinery.

Under small-object load SQLAlchemy's Connection.execute (checkout, events,
cache lookup, result wrapping) cost about ten times the query itself, on the
database thread, holding the GIL the reactor needs.  L{RawSelect} compiles a
SQLAlchemy statement once for the dialect and runs it straight on a DBAPI
connection, converting parameters and columns with the types' own bind and
result processors, so rows come out exactly as through SQLAlchemy
(tests/test_store.py compares both).  Only SQLite uses it: a standalone
SELECT there is a consistent snapshot by itself, and the store's single
database thread owns the connection.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping
from typing import Any


class RawSelect:
    """A SELECT compiled once; C{run(dbapi_connection, params)} -> rows with attribute access."""

    def __init__(self, statement, dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if compiled.positiontup is None:
            raise ValueError(f"{dialect.name} does not use positional parameters")
        self.sql = str(compiled)
        self._order = list(compiled.positiontup)
        self._binders = {}
        for name in self._order:
            processor = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self._binders[name] = processor
        columns = list(statement.selected_columns)
        self._row = namedtuple("Row", [column.key for column in columns])  # type: ignore[misc]
        self._processors = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns]

    def run(self, connection, params: Mapping[str, Any]) -> list:
        values = []
        for name in self._order:
            value = params[name]
            binder = self._binders.get(name)
            values.append(binder(value) if binder is not None else value)
        cursor = connection.cursor()
        try:
            cursor.execute(self.sql, values)
            fetched = cursor.fetchall()
        finally:
            cursor.close()
        processors = self._processors
        make = self._row._make  # type: ignore[attr-defined]
        return [
            make(value if processor is None else processor(value) for processor, value in zip(processors, raw, strict=True))
            for raw in fetched
        ]
