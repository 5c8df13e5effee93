"""
The hot transactions on SQLite and PostgreSQL without SQLAlchemy's
per-statement machinery.

Under small-object load SQLAlchemy's Connection.execute (checkout, events,
cache lookup, result wrapping) cost about ten times the query itself, on the
database thread, holding the GIL the reactor needs.  Here a SQLAlchemy
statement is compiled once for the dialect and run straight on a DBAPI
connection, converting parameters and columns with the types' own bind and
result processors, so rows come out exactly as through SQLAlchemy
(tests/test_store.py compares both).

L{RawConnection} stands in for a SQLAlchemy Connection inside the same
transaction functions (L{s3balance.store.objects}) the ordinary path runs, so
there is one copy of the logic.  It knows only what those functions use:
C{execute(statement, params)} and C{dialect}.  It serves GetObject's lookup
(a standalone SELECT is a consistent snapshot by itself) and the PUT path's
write transactions.  On SQLite the store's single database thread owns the
connection, and L{MetadataStore._raw_group} wraps the writes, several to one
commit; on PostgreSQL they run on connections of the engine's pool
(L{MetadataStore._pooled_transaction}).
"""

from __future__ import annotations

import datetime
import time
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Optional, Union

from sqlalchemy.engine import Dialect
from sqlalchemy.sql.selectable import ExecutableReturnsRows
from sqlalchemy.types import TypeEngine

Params = Union[Mapping[str, Any], Sequence[Mapping[str, Any]]]
# Told each statement's duration in seconds (the metrics' database histogram,
# which sees the ordinary path's statements through SQLAlchemy's events).
Observer = Optional[Callable[[float], None]]


def _processors(type_: TypeEngine[Any], dialect: Dialect) -> tuple[Any, Any]:
    """
    A type's (bind, result) converters for a dialect.  For L{UTCDateTime} on
    SQLite, the column text SQLAlchemy's C{DATETIME} stores ("2026-11-25
    19:09:39.000000") is made and parsed in one C call each (C{isoformat},
    C{fromisoformat}) instead of a %-format of seven fields and a regular
    expression; the zone handling stays the type's own.
    """
    from s3balance.store.tables import UTCDateTime

    if isinstance(type_, UTCDateTime) and dialect.name == "sqlite":
        to_naive_utc, to_aware = type_.process_bind_param, type_.process_result_value

        def bind(value: Optional[datetime.datetime]) -> Optional[str]:
            naive = to_naive_utc(value, dialect)
            return None if naive is None else naive.isoformat(" ", "microseconds")

        def result(value: Optional[str]) -> Optional[datetime.datetime]:
            return None if value is None else to_aware(datetime.datetime.fromisoformat(value), dialect)

        return bind, result
    impl = type_.dialect_impl(dialect)
    return impl.bind_processor(dialect), impl.result_processor(dialect, None)


class _Compiled:
    """One statement compiled for a dialect: SQL text, parameter order and converters."""

    def __init__(
        self, statement: ExecutableReturnsRows, dialect: Dialect, column_keys: Optional[list[str]] = None
    ) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        if compiled.positiontup is None:
            raise ValueError(f"{dialect.name} does not use positional parameters")
        self.sql = str(compiled)
        self._order = list(compiled.positiontup)
        self._binders = {}
        for name in self._order:
            processor = _processors(compiled.binds[name].type, dialect)[0]
            if processor is not None:
                self._binders[name] = processor
        # The columns a SELECT or a RETURNING clause gives back (none for plain DML).
        columns = list(statement.exported_columns)
        self.returns_rows = bool(columns)
        # PostgreSQL compiles an INSERT with RETURNING of the generated key
        # (implicit returning), where the cursor's lastrowid means nothing.
        self.returns_key = not columns and bool(getattr(compiled, "effective_returning", None))
        self._row = namedtuple("Row", [column.key for column in columns]) if columns else None
        self._processors = [_processors(column.type, dialect)[1] for column in columns]

    def values(self, params: Mapping[str, Any]) -> list:
        values = []
        for name in self._order:
            value = params[name]
            binder = self._binders.get(name)
            values.append(binder(value) if binder is not None else value)
        return values

    def rows(self, fetched: Iterable[Sequence[Any]]) -> list:
        processors = self._processors
        make = self._row._make  # type: ignore[union-attr]
        return [
            make(value if processor is None else processor(value) for processor, value in zip(processors, raw, strict=True))
            for raw in fetched
        ]


class RawResult:
    """What the transaction functions read off a result: rows, rowcount, the new primary key."""

    def __init__(self, rows: list, rowcount: int, lastrowid: Optional[int]) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self.inserted_primary_key = (lastrowid,)

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def all(self) -> list:
        return self._rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


class RawConnection:
    """
    A SQLAlchemy Connection's C{execute} on a DBAPI connection, for the
    prebuilt statements of the write path.

    Compiled forms are kept per (statement, parameter names); statements
    built per call are compiled every time rather than piling up.
    """

    CACHE_LIMIT = 64

    def __init__(
        self, connection: Any, dialect: Dialect, cache: dict[Any, Any], observe: Observer = None
    ) -> None:
        self.connection = connection
        self.dialect = dialect
        self._cache = cache
        self._observe = observe

    def _compiled(self, statement: ExecutableReturnsRows, params: Mapping[str, Any]) -> _Compiled:
        # INSERT and UPDATE take their column list from the parameters.
        key = (statement, tuple(params))
        compiled = self._cache.get(key)
        if compiled is None:
            compiled = _Compiled(statement, self.dialect, list(params))
            if len(self._cache) < self.CACHE_LIMIT:
                self._cache[key] = compiled
        return compiled

    def execute(self, statement: ExecutableReturnsRows, params: Optional[Params] = None) -> RawResult:
        first: Mapping[str, Any]
        batch: list[Mapping[str, Any]] = []
        many = not (params is None or isinstance(params, Mapping))
        if params is None:
            first = {}
        elif isinstance(params, Mapping):
            first = params
        else:
            batch = list(params)
            if not batch:
                raise ValueError("executemany needs at least one row of parameters")
            first = batch[0]
        compiled = self._compiled(statement, first)
        started = time.perf_counter()
        cursor = self.connection.cursor()
        try:
            if many:
                cursor.executemany(compiled.sql, [compiled.values(row) for row in batch])
                result = RawResult([], cursor.rowcount, None)
            else:
                cursor.execute(compiled.sql, compiled.values(first))
                if compiled.returns_key:
                    key = cursor.fetchone()
                    result = RawResult([], cursor.rowcount, key[0] if key is not None else None)
                else:
                    fetched = cursor.fetchall() if compiled.returns_rows else []
                    result = RawResult(compiled.rows(fetched) if fetched else [], cursor.rowcount, cursor.lastrowid)
        finally:
            cursor.close()
        if self._observe is not None:
            self._observe(time.perf_counter() - started)
        return result
