"""Fill a gateway database with years of history, in bulk, in a minute or two.

`fill(url, History(cases=1_000_000), now)` adds, beside the reference data already imported
(the corpus's clients keep theirs and get history too): 20,000 clients with a contract,
two licences and three contacts each, one client with `big_client_cases` cases (the
`[SUIVI]` figure), and per case five timeline events, two inbound messages, two outbound
messages with one delivery each. One case in ten has a colleague on its distribution
list, a small file and a priority point debited; one in fifty had a reminder; one in a
hundred brought an agent's confirmation, a registration request, a refusal on an inactive
licence. Cases open at an even pace over three years up to a day ago, except those
waiting for the customer: one in a hundred since ten days (the reminders job finds them
due), one in a hundred since a day (not due yet). 3 % are `en_cours`, 1 % `nouveau`,
1 % `resolu`, the rest closed.

Each table is written by one `INSERT … SELECT` over `generate_series` (PostgreSQL) or a
recursive CTE (SQLite), with the secondary indexes dropped meanwhile and rebuilt after.
Row counts and index depths are those of a busy desk's years; texts are short, so the
byte volume is not. A NOT NULL column this module does not know (the schema moved on) is
filled with a neutral value and named in the result, so the figure still comes out.
"""
from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, create_engine, inspect, text

SUPPORT = "support@editeur.example"
CLIENTS_PER_CASES = 50          # one history client per 50 cases
DUE, NOT_DUE = 0, 1             # case % 100: waiting since ten days / since one day
BIG_CONTACT = "suivi@hbig.example"   # the first contact of the client with many cases


@dataclass(frozen=True)
class History:
    """How much history to write; the proportions per case are fixed (see the module)."""
    cases: int
    big_client_cases: int = 1000

    @property
    def clients(self) -> int:
        return max(self.cases // CLIENTS_PER_CASES, 10)

    @property
    def due(self) -> int:
        """Cases the reminders job finds due: those numbered DUE modulo 100."""
        return self.cases // 100


@dataclass
class Filled:
    """What `fill` wrote: rows per table, seconds, and columns it had to guess."""
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    guessed: list[str] = field(default_factory=list)
    big_client_contact: str = ""


class Dialect:
    """The few expressions SQLite and PostgreSQL write differently."""

    def __init__(self, name: str, start: dt.datetime) -> None:
        self.name = name
        self.start = start.strftime("%Y-%m-%d %H:%M:%S")
        self.epoch = int(start.replace(tzinfo=dt.UTC).timestamp())

    def series(self, count: int) -> tuple[str, str]:
        """(prefix, from-clause) giving the numbers 1..count as `g.n`."""
        if self.name == "sqlite":
            return (f"WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {count}) ",
                    "g")
        return "", f"generate_series(1, {count}) AS g(n)"

    def at(self, seconds: str) -> str:
        """The history's start plus `seconds` (an integer expression), as a stored timestamp."""
        if self.name == "sqlite":
            # SQLAlchemy stores SQLite timestamps as text with microseconds; comparisons are textual.
            return f"strftime('%Y-%m-%d %H:%M:%S.000000', {self.epoch} + ({seconds}), 'unixepoch')"
        return f"(timestamp '{self.start}' + ({seconds}) * interval '1 second')"

    def true(self, condition: str) -> str:
        return f"(CASE WHEN {condition} THEN 1 ELSE 0 END)" if self.name == "sqlite" else f"({condition})"

    def json(self, expression: str) -> str:
        return expression if self.name == "sqlite" else f"CAST({expression} AS json)"

    @property
    def crlf(self) -> str:
        return "(char(13) || char(10))" if self.name == "sqlite" else "(chr(13) || chr(10))"

    def blob(self, expression: str) -> str:
        return f"CAST({expression} AS BLOB)" if self.name == "sqlite" else f"convert_to({expression}, 'UTF8')"


class Plan:
    """The SQL expressions of one history: case numbers to clients, times and statuses."""

    def __init__(self, d: Dialect, history: History, now: dt.datetime, start: dt.datetime,
                 clients: int) -> None:
        self.d, self.h, self.clients = d, history, clients
        # Cases open up to a day ago (none within the hourly limits' windows), the same
        # number every day: the last week's mail is there for the loop check to read.
        span = int((now - start).total_seconds()) - 86400
        self.step = max(span // history.cases, 1)
        self.due_at = int((now - start).total_seconds()) - 10 * 86400
        self.recent_at = int((now - start).total_seconds()) - 86400

    def k(self, case: str) -> str:
        """The row of `bench_map` (one per client) a case belongs to; the big client is last."""
        case = f"({case})"
        return f"(CASE WHEN {case} <= {self.h.big_client_cases} THEN {self.clients - 1} " \
               f"ELSE {case} % {self.clients - 1} END)"

    def opened(self, case: str) -> str:
        """Seconds from the start to the opening of a case."""
        case = f"({case})"
        return (f"(CASE WHEN {case} % 100 = {DUE} THEN {self.due_at} + {case} % 1000 "
                f"WHEN {case} % 100 = {NOT_DUE} THEN {self.recent_at} + {case} % 1000 "
                f"ELSE {case} * {self.step} END)")

    def at(self, case: str, hours: int) -> str:
        return self.d.at(f"{self.opened(case)} + {hours * 3600}")

    def status(self, case: str) -> str:
        """A case's status: the share of each is fixed by the case's number modulo 100."""
        case = f"({case})"
        return (f"(CASE WHEN {case} % 100 IN ({DUE}, {NOT_DUE}) THEN 'attente_client' "
                f"WHEN {case} % 100 IN (2, 3, 4) THEN 'en_cours' WHEN {case} % 100 = 5 THEN 'nouveau' "
                f"WHEN {case} % 100 = 6 THEN 'resolu' ELSE 'clos' END)")

    def closed(self, case: str) -> str:
        return f"(({case}) % 100 >= 7)"


def _reference(p: Plan, base: dict[str, int]) -> list[tuple[str, int, str, dict[str, str]]]:
    """(table, rows, join clause, column -> expression of g.n) for the history's clients;
    the last one is the big client, whose first contact is BIG_CONTACT."""
    d, n = p.d, "g.n"
    bc = base["clients"]
    hc = p.h.clients + 1
    return [
        ("clients", hc, "", {
            "id": f"{bc} + {n}",
            "code": f"CASE WHEN {n} = {hc} THEN 'HBIG' ELSE 'H' || {n} END",
            "code_key": f"CASE WHEN {n} = {hc} THEN 'hbig' ELSE 'h' || {n} END",
            "name": f"'Client historique ' || {n}", "language": "'fr'"}),
        ("contracts", hc, "", {
            "id": f"{base['contracts']} + {n}", "client_id": f"{bc} + {n}",
            "level": f"CASE {n} % 3 WHEN 0 THEN 'standard' WHEN 1 THEN 'privilege' ELSE 'excellence' END",
            "points": f"{n} % 5"}),
        ("licences", 2 * hc, "", {
            "id": f"{base['licences']} + {n}", "serial": f"'HS-' || {n}", "serial_key": f"'hs' || {n}",
            "client_id": f"{bc} + ({n} + 1) / 2", "product": "'Gestion Commerciale 100'",
            "modules": d.json("'[\"Ventes\", \"Achats\"]'"), "active": d.true("1 = 1")}),
        ("contacts", 3 * hc, "", {
            "id": f"{base['contacts']} + {n}", "client_id": f"{bc} + ({n} + 2) / 3",
            "name": f"'Contact ' || {n}",
            "email": f"CASE WHEN {n} = {3 * hc - 2} THEN '{BIG_CONTACT}' "
                     f"ELSE 'c' || {n} || '@h' || (({n} + 2) / 3) || '.example' END",
            "phone": "''", "status": "'active'"}),
    ]


def _history(p: Plan, base: dict[str, int]) -> list[tuple[str, int, str, dict[str, str]]]:
    """The cases and everything hanging from them, once `bench_map` exists."""
    d, h, n = p.d, p.h, "g.n"
    bi, bo, be = base["inbound_messages"], base["outbound_messages"], base["case_events"]
    per_map = " JOIN bench_map m ON m.k = {k}"
    case2, slot2 = f"(({n} + 1) / 2)", f"(({n} - 1) % 2)"
    case5, slot5 = f"(({n} - 1) / 5 + 1)", f"(({n} - 1) % 5)"
    closed = p.closed(n)
    return [
        ("cases", h.cases, per_map.format(k=p.k(n)), {
            "id": n, "client_id": "m.client_id", "licence_id": "m.licence_id",
            "criticality": f"1 + {n} % 4", "priority": d.true(f"{n} % 10 = 0"),
            "title": f"'Historique ' || {n}", "status": p.status(n), "main_contact_id": "m.contact_id",
            "thread_id": f"'<hin-' || (2 * {n} - 1) || '@h.example>'",
            "opened_at": p.at(n, 0), "updated_at": p.at(n, 4),
            "closed_at": f"CASE WHEN {closed} THEN {p.at(n, 4)} END",
            "first_agent_at": p.at(n, 2), "last_customer_at": p.at(n, 1),
            "waiting_since": f"CASE WHEN {n} % 100 IN ({DUE}, {NOT_DUE}) THEN {p.at(n, 3)} END"}),
        ("inbound_messages", 2 * h.cases, per_map.format(k=p.k(case2)), {
            "id": f"{bi} + {n}", "received_at": p.d.at(f"{p.opened(case2)} + {slot2} * 3600"),
            "door": "'smtp'", "envelope_from": "m.email", "envelope_to": d.json(f"'[\"{SUPPORT}\"]'"),
            "raw": d.blob(f"'Message-ID: <hin-' || {n} || '@h.example>' || {d.crlf} || 'From: ' || m.email "
                          f"|| {d.crlf} || 'Subject: Historique ' || {case2} || {d.crlf} || {d.crlf} "
                          f"|| 'Bonjour.' || {d.crlf}"),
            "size": "120", "digest": f"'h' || {n}", "message_id": f"'<hin-' || {n} || '@h.example>'",
            "dedupe_key": f"'<hin-' || {n} || '@h.example>'", "sender": "m.email",
            "subject": f"'Historique ' || {case2}",
            "outcome": f"CASE WHEN {slot2} = 0 THEN 'created' ELSE 'appended' END",
            "reasons": d.json("'[]'"), "case_id": case2,
            "processed_at": p.d.at(f"{p.opened(case2)} + {slot2} * 3600"), "attempts": "1"}),
        ("case_events", 5 * h.cases, per_map.format(k=p.k(case5)), {
            "id": f"{be} + {n}", "case_id": case5,
            "kind": f"CASE {slot5} WHEN 0 THEN 'opened' WHEN 1 THEN 'customer_message' "
                    f"WHEN 2 THEN 'agent_message' WHEN 3 THEN 'status_change' "
                    f"ELSE CASE WHEN {p.closed(case5)} THEN 'closed' ELSE 'note' END END",
            "author": f"CASE WHEN {slot5} < 2 THEN m.email WHEN {slot5} = 2 "
                      f"THEN 'agent' || ({case5} % 20) || '@editeur.example' ELSE '{SUPPORT}' END",
            "at": p.d.at(f"{p.opened(case5)} + {slot5} * 3600"),
            "text": f"'Message ' || {n} || ' : bonjour, voici une précision sur le dossier.'",
            "internal": d.true(f"{slot5} = 4 AND NOT {p.closed(case5)}"),
            "inbound_id": f"CASE WHEN {slot5} < 2 THEN {bi} + 2 * {case5} - 1 + {slot5} END"}),
        ("outbound_messages", 2 * h.cases, per_map.format(k=p.k(case2)), {
            "id": f"{bo} + {n}", "created_at": p.d.at(f"{p.opened(case2)} + {slot2} * 7200"),
            "kind": f"CASE WHEN {slot2} = 0 THEN 'case_opened' ELSE 'agent_message' END",
            "case_id": case2, "inbound_id": f"{bi} + 2 * {case2} - 1",
            "message_id": f"'<hout-' || {n} || '@editeur.example>'",
            "in_reply_to": f"'<hin-' || (2 * {case2} - 1) || '@h.example>'",
            "references": f"'<hin-' || (2 * {case2} - 1) || '@h.example>'",
            "auto_submitted": f"CASE WHEN {slot2} = 0 THEN 'auto-replied' ELSE '' END",
            "audience": "''", "author": "m.email",
            "to_header": d.json("'[[\"\", \"' || m.email || '\"]]'"), "cc_header": d.json("'[]'"),
            "subject": f"'[Dossier #' || {case2} || '] Historique ' || {case2}",
            "text": "'Bonjour, votre dossier est bien enregistré.'",
            "html": "'<p>Bonjour, votre dossier est bien enregistré.</p>'"}),
        ("deliveries", 2 * h.cases, per_map.format(k=p.k(case2)), {
            "id": f"{base['deliveries']} + {n}", "message_id": f"{bo} + {n}", "recipient": "m.email",
            "token": "''", "created_at": p.d.at(f"{p.opened(case2)} + {slot2} * 7200"), "status": "'sent'",
            "attempts": "1", "next_attempt_at": p.d.at(f"{p.opened(case2)} + {slot2} * 7200"),
            "sent_at": p.d.at(f"{p.opened(case2)} + {slot2} * 7200")}),
        ("case_distribution", h.cases // 10, per_map.format(k=p.k(f"10 * {n}")) + " AND m.contact2_id <> m.contact_id", {
            "case_id": f"10 * {n}", "contact_id": "m.contact2_id"}),
        ("attachments", h.cases // 10, "", {
            "case_id": f"10 * {n}", "event_id": f"{be} + 5 * (10 * {n} - 1) + 2",
            "filename": f"'capture-' || {n} || '.png'", "content_type": "'image/png'", "size": "64",
            "sha256": f"'h' || {n}", "data": d.blob("'PNG historique, soixante-quatre octets à peu près.'"),
            "inline": d.true("1 = 0")}),
        ("case_reminders", h.cases // 50, "", {
            "case_id": f"50 * {n} - 43", "period": p.at(f"(50 * {n} - 43)", 3), "number": "1",
            "at": p.at(f"(50 * {n} - 43)", 3 + 72)}),
        ("points_ledger", h.cases // 10, per_map.format(k=p.k(f"10 * {n}")) + " AND m.contract_id IS NOT NULL", {
            "contract_id": "m.contract_id", "delta": "-1", "balance": "0", "reason": "'priorité'",
            "debit_case_id": f"10 * {n}", "at": p.at(f"(10 * {n})", 0)}),
        ("confirmations", h.cases // 100, "", {
            "inbound_id": f"{bi} + 2 * (100 * {n} - 50)", "address": f"'agent' || {n} % 20 || '@editeur.example'",
            "kind": "'agent'", "case_id": f"100 * {n} - 50", "created_at": p.at(f"(100 * {n} - 50)", 1),
            "expires_at": p.at(f"(100 * {n} - 50)", 73), "confirmed_at": p.at(f"(100 * {n} - 50)", 2)}),
        ("registration_requests", h.cases // 100, per_map.format(k=p.k(f"100 * {n}")), {
            "email": f"'new' || {n} || '@' || substr(m.email, instr(m.email, '@') + 1)"
            if d.name == "sqlite" else f"'new' || {n} || '@' || split_part(m.email, '@', 2)",
            "client_code": f"'h' || {n}", "at": p.at(f"(100 * {n})", 0)}),
        ("licence_refusals", h.cases // 100, per_map.format(k=p.k(f"100 * {n} - 20")), {
            "licence_id": "m.licence_id", "inbound_id": f"{bi} + 2 * (100 * {n} - 20) - 1",
            "at": p.at(f"(100 * {n} - 20)", 0), "sender": "m.email", "subject": f"'Historique ' || {n}",
            "request": "'open'"}),
    ]


def _map_sql(d: Dialect) -> list[str]:
    """`bench_map`: one row per client, numbered from 0, with a licence and two contacts."""
    return [
        "DROP TABLE IF EXISTS bench_map",
        "CREATE TABLE bench_map (k INTEGER PRIMARY KEY, client_id INTEGER, licence_id INTEGER, "
        "contact_id INTEGER, contact2_id INTEGER, email VARCHAR(320), contract_id INTEGER)",
        "INSERT INTO bench_map SELECT row_number() OVER (ORDER BY c.id) - 1, c.id, "
        "(SELECT min(l.id) FROM licences l WHERE l.client_id = c.id), "
        "(SELECT min(t.id) FROM contacts t WHERE t.client_id = c.id), "
        "(SELECT max(t.id) FROM contacts t WHERE t.client_id = c.id), "
        "(SELECT t.email FROM contacts t WHERE t.client_id = c.id ORDER BY t.id LIMIT 1), "
        "(SELECT min(k.id) FROM contracts k WHERE k.client_id = c.id) "
        "FROM clients c WHERE EXISTS (SELECT 1 FROM licences l WHERE l.client_id = c.id) "
        "AND EXISTS (SELECT 1 FROM contacts t WHERE t.client_id = c.id)",
    ]


def _neutral(d: Dialect, column: dict) -> str:  # type: ignore[type-arg]
    """A value for a NOT NULL column this module does not know, by its type."""
    kind = type(column["type"]).__name__.upper()
    if "JSON" in kind:
        return d.json("'[]'")
    if "BOOL" in kind:
        return d.true("1 = 0")
    if "INT" in kind or "NUMERIC" in kind or "FLOAT" in kind:
        return "0"
    if "DATETIME" in kind or "TIMESTAMP" in kind:
        return d.at("0")
    if "DATE" in kind:
        return "'2000-01-01'"
    if "BINARY" in kind or "BLOB" in kind or "BYTEA" in kind:
        return d.blob("''")
    return "''"


def _insert(connection: Connection, d: Dialect, table: str, count: int, join: str,
            columns: dict[str, str], filled: Filled) -> None:
    known = {c["name"]: c for c in inspect(connection).get_columns(table)}
    gone = sorted(set(columns) - set(known))
    if gone:
        raise RuntimeError(f"bench/history.py is behind the schema: {table} has no column {', '.join(gone)}")
    columns = dict(columns)
    for name, column in known.items():
        if name not in columns and name != "id" and not column["nullable"] and column.get("default") is None:
            columns[name] = _neutral(d, column)
            filled.guessed.append(f"{table}.{name}")
    prefix, source = d.series(count)
    names = ", ".join(f'"{c}"' for c in columns)
    sql = f"{prefix}INSERT INTO {table} ({names}) SELECT {', '.join(columns.values())} FROM {source}{join}"
    rows = connection.execute(text(sql)).rowcount
    if d.name == "sqlite":  # the sqlite3 module gives no row count for a WITH … INSERT
        rows = connection.execute(text("SELECT changes()")).scalar_one()
    filled.rows[table] = rows
    connection.commit()


def _indexes(connection: Connection, tables: list[str]) -> list[tuple[str, str]]:
    """(DROP, CREATE) statements of the indexes on `tables` that can go during the load:
    every index but the primary keys (PostgreSQL: unique constraints too; SQLite's cannot)."""
    if connection.dialect.name == "sqlite":
        rows = connection.execute(text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            f"AND tbl_name IN ({', '.join(repr(t) for t in tables)})")).all()
        return [(f'DROP INDEX "{name}"', sql) for name, sql in rows]
    rows = connection.execute(text(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename = ANY(:tables) AND indexname NOT IN (SELECT conname FROM pg_constraint)"),
        {"tables": tables}).all()
    out = [(f'DROP INDEX "{name}"', sql) for name, sql in rows]
    rows = connection.execute(text(
        "SELECT conname, conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contype = 'u' AND connamespace = current_schema()::regnamespace "
        "AND conrelid::regclass::text = ANY(:tables)"), {"tables": tables}).all()
    out += [(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"',
             f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}') for name, table, definition in rows]
    return out


def _bases(connection: Connection, tables: list[str]) -> dict[str, int]:
    return {t: connection.execute(text(f"SELECT coalesce(max(id), 0) FROM {t}")).scalar_one() for t in tables}


def _engine(url: str) -> Engine:
    if url.startswith("postgresql"):
        # Foreign-key checks are triggers: off for this session's bulk load (needs a superuser).
        return create_engine(url, connect_args={
            "options": "-c session_replication_role=replica -c synchronous_commit=off "
                       "-c maintenance_work_mem=512MB"})
    return create_engine(url)


def _prepare(connection: Connection) -> None:
    if connection.dialect.name == "sqlite":
        # Nobody else uses the file while it is filled: no journal, no fsync, no key checks.
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-400000", "foreign_keys=OFF"):
            connection.exec_driver_sql(f"PRAGMA {pragma}")


def _finish(connection: Connection, tables: list[str], indexes: list[tuple[str, str]]) -> None:
    connection.execute(text("DROP TABLE bench_map"))
    for _drop, create in indexes:
        connection.execute(text(create))
    if connection.dialect.name == "postgresql":
        for table in tables:
            connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                    f"(SELECT coalesce(max(id), 1) FROM {table}))"))
    connection.commit()
    if connection.dialect.name == "sqlite":
        # No ANALYZE: the gateway never runs it, so a real SQLite file has no statistics.
        connection.exec_driver_sql("PRAGMA journal_mode=WAL")
    else:
        # A database that grew over years has been vacuumed and analysed; without this,
        # autovacuum would do it during the measurement, and first reads would set hint bits.
        connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")


REFERENCE = ["clients", "contracts", "licences", "contacts"]
HISTORY = ["cases", "inbound_messages", "case_events", "outbound_messages", "deliveries",
           "case_distribution", "attachments", "case_reminders", "points_ledger", "confirmations",
           "registration_requests", "licence_refusals"]


def fill(url: str, history: History, now: dt.datetime) -> Filled:
    """Write `history` into the (upgraded, reference data imported, case-less) database at
    `url`, ending before `now` (naive UTC). Returns what it wrote."""
    t0 = time.perf_counter()
    start = now - dt.timedelta(days=3 * 365)
    filled = Filled(big_client_contact=BIG_CONTACT)
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            d = Dialect(connection.dialect.name, start)
            if _bases(connection, ["cases"])["cases"]:
                raise RuntimeError("the database already holds cases: history goes in first")
            _prepare(connection)
            indexes = _indexes(connection, HISTORY)
            for drop, _create in indexes:
                connection.execute(text(drop))
            connection.commit()
            base = _bases(connection, REFERENCE + HISTORY)
            for table, count, join, columns in _reference(Plan(d, history, now, start, 0), base):
                _insert(connection, d, table, count, join, columns, filled)
            for sql in _map_sql(d):
                connection.execute(text(sql))
            plan = Plan(d, history, now, start, connection.execute(text("SELECT count(*) FROM bench_map")).scalar_one())
            connection.commit()
            for table, count, join, columns in _history(plan, base):
                _insert(connection, d, table, count, join, columns, filled)
            _finish(connection, REFERENCE + HISTORY, indexes)
    finally:
        engine.dispose()
    filled.seconds = time.perf_counter() - t0
    return filled
