"""The few statements every message runs, straight on the driver's cursor.

For each execution SQLAlchemy's engine looks the compiled statement up, builds a context,
converts every parameter and wraps the result: on the writer's path of a backlog that cost
more than the driver itself (a fifth of the writer's time). A `Direct` statement is
compiled once per dialect and set of parameter names, keeps its column types' own
conversions (a date the way SQLite stores it, JSON both ways) and runs on the DBAPI cursor
of the session's connection, in the session's transaction. It never flushes the session.

Should the driver raise, its error is turned into SQLAlchemy's as the engine does (an
`IntegrityError` stays one) and a lost connection is invalidated.

A statement whose answer nobody reads (a message's outcome, its deliveries) can be sent
`later`: on PostgreSQL, inside a session that allows it (`PIPELINED` in its info), it goes
out at once in psycopg's pipeline mode and the writer goes on while the server runs it.
The next `first` or `many` runs in the same pipeline (its answer, and those before it,
come back in one round trip); any other statement the engine runs, and the end of a
transaction or of a savepoint, first wait for every answer (`settle`, called by `watch`'s
events). An error among them is raised there. Elsewhere `later` is `many`.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy import ClauseElement, ColumnElement, Dialect, Engine, event, exc
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import Compiled

Convert = Callable[[Any], Any]


@dataclass(frozen=True)
class _Form:
    """A statement compiled for one dialect and one set of parameter names."""
    sql: str
    order: tuple[str, ...] | None                      # positional drivers: the names in order
    fixed: dict[str, Any]                              # literals of the statement (`attempts + 1`)
    bind: dict[str, Convert]                           # parameter -> the column type's conversion
    rename: dict[str, str]                             # names the dialect escapes
    results: tuple[Convert | None, ...]                # per returned column

    def parameters(self, values: dict[str, Any]) -> Any:
        given = {**self.fixed, **values}
        for name, convert in self.bind.items():
            given[name] = convert(given[name])
        if self.order is not None:
            return tuple(given[name] for name in self.order)
        return {self.rename.get(name, name): value for name, value in given.items()}

    def row(self, raw: Sequence[Any] | None) -> tuple[Any, ...] | None:
        if raw is None:
            return None
        return tuple(value if convert is None else convert(value) for value, convert in zip(raw, self.results,
                                                                                            strict=True))


class Direct:
    """`statement` (with `returns`: the columns of its RETURNING, in order) run on the cursor."""

    def __init__(self, statement: ClauseElement, returns: Sequence[ColumnElement[Any]] = ()) -> None:
        self.statement, self.returns = statement, tuple(returns)
        self._forms: dict[tuple[str, frozenset[str]], _Form] = {}

    def first(self, session: Session, values: dict[str, Any]) -> tuple[Any, ...] | None:
        """Run once; the first row it returns, if any."""
        connection = session.connection()
        form = self._form(connection.dialect, values)
        cursor, parameters = connection.connection.cursor(), form.parameters(values)
        try:
            cursor.execute(form.sql, parameters)
            return form.row(cursor.fetchone()) if self.returns else None
        except connection.dialect.loaded_dbapi.Error as error:
            _failed(connection, cursor, form.sql, parameters, error)
        finally:
            cursor.close()

    def many(self, session: Session, rows: list[dict[str, Any]]) -> None:
        """Run once per row, in one call to the driver (no result)."""
        if not rows:
            return
        connection = session.connection()
        form = self._form(connection.dialect, rows[0])
        cursor, parameters = connection.connection.cursor(), [form.parameters(r) for r in rows]
        try:
            cursor.executemany(form.sql, parameters)
        except connection.dialect.loaded_dbapi.Error as error:
            _failed(connection, cursor, form.sql, parameters, error)
        finally:
            cursor.close()

    def many_returning(self, session: Session, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """Run once per row, in one call to the driver; the row each returned, in order.
        PostgreSQL only (psycopg sends them in its pipeline, one statement prepared once):
        SQLite's driver returns nothing from `executemany`."""
        if not rows:
            return []
        connection = session.connection()
        form = self._form(connection.dialect, rows[0])
        cursor, parameters = connection.connection.cursor(), [form.parameters(r) for r in rows]
        try:
            cursor.executemany(form.sql, parameters, returning=True)  # type: ignore[call-arg]  # psycopg's
            found = []
            while True:
                row = form.row(cursor.fetchone())
                assert row is not None  # an INSERT … RETURNING returns its row
                found.append(row)
                if not cursor.nextset():
                    return found
        except connection.dialect.loaded_dbapi.Error as error:
            _failed(connection, cursor, form.sql, parameters, error)
        finally:
            cursor.close()

    def later(self, session: Session, rows: list[dict[str, Any]]) -> None:
        """Run once per row, without waiting for the answers where the session allows it
        (see the module's text); no result."""
        if not rows:
            return
        connection = session.connection()
        if not (session.info.get(PIPELINED) and connection.dialect.name == "postgresql"):
            self.many(session, rows)
            return
        form = self._form(connection.dialect, rows[0])
        parameters = [form.parameters(r) for r in rows]
        info = connection.connection.info
        if _PIPELINE not in info:
            driver = connection.connection.dbapi_connection
            pipeline = driver.pipeline()  # type: ignore[union-attr]
            pipeline.__enter__()
            info[_PIPELINE] = (pipeline, driver.cursor())  # type: ignore[union-attr]
        cursor = info[_PIPELINE][1]
        try:
            for each in parameters:
                cursor.execute(form.sql, each)
        except connection.dialect.loaded_dbapi.Error as error:
            _forget(connection)  # the transaction is lost: what follows is its rollback
            _failed(connection, cursor, form.sql, parameters, error)

    def _form(self, dialect: Dialect, values: dict[str, Any]) -> _Form:
        key = (dialect.name, frozenset(values))
        form = self._forms.get(key)
        if form is None:
            form = self._forms[key] = self._compile(dialect, values)
        return form

    def _compile(self, dialect: Dialect, values: dict[str, Any]) -> _Form:
        compiled: Compiled = self.statement.compile(dialect=dialect, column_keys=list(values))
        binds = compiled.binds  # type: ignore[attr-defined]  # a SQLCompiler's
        fixed = {name: b.value for name, b in binds.items() if name not in values and b.value is not None}
        missing = set(binds) - set(values) - set(fixed)
        if missing:  # a column default the engine would fill in: give every column instead
            raise ValueError(f"no value for {sorted(missing)} in {compiled}")
        bind = {name: convert for name, b in binds.items()
                if (convert := b.type.dialect_impl(dialect).bind_processor(dialect)) is not None}
        results = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in self.returns)
        order = tuple(compiled.positiontup) if dialect.positional else None  # type: ignore[attr-defined]
        rename = dict(getattr(compiled, "escaped_bind_names", None) or {})
        return _Form(compiled.string, order, fixed, bind, rename, results)


PIPELINED = "gateway_pipelined"  # session.info: statements sent `later` need not wait
_PIPELINE = "gateway_pipeline"   # a connection's info: its open pipeline and cursor


def settle(connection: Connection) -> None:
    """Wait for the answers of what was sent `later` on `connection`, if anything; raises
    the first error among them as the engine would."""
    open_ = _take(connection)
    if open_ is None:
        return
    pipeline, cursor = open_
    try:
        pipeline.__exit__(None, None, None)
    except connection.dialect.loaded_dbapi.Error as error:
        _failed(connection, cursor, "(statements sent in a pipeline)", None, error)
    finally:
        cursor.close()


def _forget(connection: Connection) -> None:
    """The transaction ends without its writes: the pipeline's answers are not wanted."""
    open_ = _take(connection)
    if open_ is not None:
        pipeline, cursor = open_
        with contextlib.suppress(Exception):
            pipeline.__exit__(None, None, None)
        cursor.close()


def _take(connection: Connection) -> tuple[Any, Any] | None:
    """The connection's open pipeline and its cursor, no longer its own; None if none."""
    if connection.closed or connection.invalidated:
        return None
    open_: tuple[Any, Any] | None = connection.connection.info.pop(_PIPELINE, None)
    return open_


def watch(engine: Engine) -> None:
    """Have every statement the engine runs, and every end of a transaction or savepoint,
    wait first for what was sent `later` on its connection."""
    for name in ("before_cursor_execute", "commit", "savepoint", "release_savepoint", "prepare_twophase"):
        event.listen(engine, name, lambda connection, *_args, **_kw: settle(connection))
    for name in ("rollback", "rollback_savepoint"):
        event.listen(engine, name, lambda connection, *_args, **_kw: _forget(connection))


def _failed(connection: Connection, cursor: Any, sql: str, parameters: Any, error: Any) -> NoReturn:
    """Raise the driver's `error` as the engine would have."""
    dialect = connection.dialect
    lost = dialect.is_disconnect(error, connection.connection.dbapi_connection, cursor)
    if lost:
        connection.connection.info.pop(_PIPELINE, None)  # it went with the connection
        connection.invalidate(error)
    raise exc.DBAPIError.instance(sql, parameters, error, dialect.loaded_dbapi.Error,
                                  connection_invalidated=lost, dialect=dialect) from error
