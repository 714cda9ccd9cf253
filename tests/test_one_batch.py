"""A batch decided in one transaction (a backlog, `ingest`, the door's pipeline) ends as if
each message had had a transaction of its own: every message sees what the ones before it
changed (a new case, its distribution list, a closed case), although the case changes of a
batch are written by Core statements (rows.write_cases) and the unit of work seldom runs.
The same story is told both ways, and both must end the same, on what the recipients and
the operator see: outcomes, reasons, cases, the outbox's mails and their recipients."""
from __future__ import annotations

import pytest
from harness import CLAIRE, GREGOIRE, MATHILDE, PAUL, mail
from sqlalchemy import select

from gateway import intake
from gateway.db import read_scope
from gateway.models import Case, Delivery, InboundMessage, OutboundMessage
from gateway.pipeline import run

OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute] Factures impossibles"


def story() -> list[bytes]:
    """Claire opens a case with Paul in Cc; Paul adds a line; Claire asks for news, closes
    it, writes on it again, then opens a second case and asks for the list."""
    return [m.as_bytes() for m in (
        mail(CLAIRE, OPEN, "L'édition s'arrête.\n", cc=[PAUL]),
        mail(PAUL, "Re: [Dossier #1] Factures impossibles", "Chez moi aussi, depuis lundi.\n"),
        mail(CLAIRE, "[SUIVI #1]", ""),
        mail(CLAIRE, "[Dossier #1] [CLOTURE]", "Réglé, merci.\n"),
        mail(CLAIRE, "[Dossier #1] Encore une chose", "Le problème revient.\n"),
        mail(CLAIRE, OPEN + " encore", "Autre souci.\n"),
        mail(CLAIRE, "[SUIVI]", ""),
    )]


STORY_OUTCOMES = [
    ("created", ["case 1 opened"], 1), ("appended", ["information added"], 1),
    ("appended", ["case 1 details sent"], 1), ("appended", ["case closed by the customer"], 1),
    ("appended", ["information added", "case reopened"], 1), ("created", ["case 2 opened"], 2),
    ("appended", ["follow-up list sent: 2 case(s)"], None)]


def seen(engine) -> dict[str, list[object]]:
    with read_scope(engine) as session:
        messages = [(m.outcome, m.reasons, m.case_id) for m in
                    session.scalars(select(InboundMessage).order_by(InboundMessage.id))]
        cases = [(c.id, c.status, c.closed_at is not None, [d.contact.email for d in c.distribution])
                 for c in session.scalars(select(Case).order_by(Case.id))]
        mails = [(o.kind, o.case_id, sorted(session.scalars(select(Delivery.recipient).where(
            Delivery.message_id == o.id)))) for o in session.scalars(select(OutboundMessage).order_by(OutboundMessage.id))]
    return {"messages": messages, "cases": cases, "mails": mails}


@pytest.mark.parametrize("together", [True, False], ids=["one-transaction", "one-per-message"])
def test_a_batch_in_one_transaction_ends_as_one_per_message(loaded, settings, together) -> None:
    ids = [s.id for s in intake.store_many(loaded, story(), "pipe")]
    commits: list[int] = []
    run.process_many(loaded, settings, ids, pace=run.Pace(pause=lambda: not together,
                                                          committed=lambda: commits.append(1)))
    assert len(commits) == (1 if together else len(ids))
    got = seen(loaded)
    assert got["messages"] == STORY_OUTCOMES
    assert got["cases"] == [(1, "nouveau", False, [PAUL]), (2, "nouveau", False, [])]
    agents = [GREGOIRE, MATHILDE]
    assert got["mails"] == [
        ("case_opened", 1, [CLAIRE, PAUL]), ("agent_new_case", 1, agents),
        ("case_message", 1, [CLAIRE]), ("case_message", 1, agents),  # Paul wrote: Claire is told
        ("follow_case", 1, [CLAIRE]),
        ("case_closed", 1, [CLAIRE, PAUL]), ("case_closed", 1, agents),
        ("case_message", 1, [PAUL]), ("case_message", 1, agents),  # the list, from the first message
        ("case_opened", 2, [CLAIRE]), ("agent_new_case", 2, agents),
        ("follow_list", None, [CLAIRE])]


REFUSE_DELIVERY = ("deliveries", "(SELECT subject FROM outbound_messages WHERE id = NEW.message_id)",
                   "Factures impossibles 2")
REFUSE_CASE_CHANGE = ("cases", "OLD.title", "Factures impossibles 0")


@pytest.mark.parametrize("refusal", [REFUSE_DELIVERY, REFUSE_CASE_CHANGE], ids=["a-delivery", "at-the-commit"])
def test_a_write_that_fails_after_its_message_holds_that_message_alone(loaded, settings, refusal) -> None:
    """The database refuses a write of one message of the batch (a trigger): on PostgreSQL
    it was sent in the pipeline, and the error comes back at a later message or, for the
    last message's case change, at the commit. That message is held with the database's
    error; the others are decided as usual."""
    table, value, refuse = refusal
    first = intake.store(loaded, mail(CLAIRE, f"{OPEN} 0", "L'édition s'arrête.\n").as_bytes(), "pipe").id
    assert run.process(loaded, settings, first).outcome == "created"  # case 1
    raws = [mail(CLAIRE, f"{OPEN} {i}", "L'édition s'arrête.\n").as_bytes() for i in range(1, 4)]
    raws.append(mail(CLAIRE, "[Dossier #1] Encore une chose", "Le problème revient.\n").as_bytes())
    ids = [s.id for s in intake.store_many(loaded, raws, "pipe")]
    when = ("UPDATE" if table == "cases" else "INSERT")
    with loaded.begin() as connection:
        if loaded.dialect.name == "postgresql":
            connection.exec_driver_sql(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF position('{refuse}' in {value}) > 0 "
                "THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$")
            connection.exec_driver_sql(f"CREATE TRIGGER refuse BEFORE {when} ON {table} "
                                       "FOR EACH ROW EXECUTE FUNCTION refuse()")
        else:
            connection.exec_driver_sql(
                f"CREATE TRIGGER refuse BEFORE {when} ON {table} WHEN instr({value}, '{refuse}') > 0 "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
    try:
        outcomes = run.process_many(loaded, settings, ids)
    finally:
        with loaded.begin() as connection:
            connection.exec_driver_sql("DROP TRIGGER refuse" + (f" ON {table}" if loaded.dialect.name
                                                                == "postgresql" else ""))
            if loaded.dialect.name == "postgresql":
                connection.exec_driver_sql("DROP FUNCTION refuse()")
    refused = 1 if table == "deliveries" else 3
    expected = ["held" if i == refused else ("appended" if i == 3 else "created") for i in range(4)]
    assert [o.outcome for o in outcomes] == expected
    assert "refused by the test" in outcomes[refused].reasons[0]
    got = seen(loaded)
    assert [m[0] for m in got["messages"][1:]] == expected
    assert len(got["cases"]) == 4 - (refused == 1) and got["messages"][1 + refused][2] is None


def test_a_batch_reads_the_cases_its_replies_name_at_once(loaded, settings) -> None:
    """The cases a batch's messages refer to (by tag, by a message of the case, by one of the
    gateway's own mails) are read in one statement before its first message; a reply to a
    case a message of the same batch opens still finds it."""
    from sqlalchemy import event
    first = [mail(CLAIRE, OPEN, "L'édition s'arrête.\n", cc=[PAUL]), mail(CLAIRE, OPEN + " aussi", "Autre souci.\n")]
    run.process_many(loaded, settings, [s.id for s in intake.store_many(loaded, [m.as_bytes() for m in first],
                                                                         "pipe")])
    with read_scope(loaded) as session:
        acknowledgement = session.scalar(select(OutboundMessage.message_id).where(
            OutboundMessage.case_id == 1, OutboundMessage.kind == "case_opened"))
    third = mail(CLAIRE, OPEN + " encore", "Un troisième.\n")
    second = [
        mail(PAUL, "Re: Factures impossibles", "Chez moi aussi.\n", headers={"In-Reply-To": first[0]["Message-ID"]}),
        mail(CLAIRE, "[Dossier #2] Précision", "Depuis la mise à jour.\n"),
        mail(CLAIRE, "Re: accusé", "Merci.\n", headers={"In-Reply-To": acknowledgement}),
        third,
        mail(CLAIRE, "Re: un troisième", "Et encore ceci.\n", headers={"In-Reply-To": third["Message-ID"]}),
    ]
    ids = [s.id for s in intake.store_many(loaded, [m.as_bytes() for m in second], "pipe")]
    case_reads: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        if "FROM cases LEFT OUTER JOIN" in statement:
            case_reads.append(statement)
    event.listen(loaded, "before_cursor_execute", count)
    try:
        run.process_many(loaded, settings, ids)
    finally:
        event.remove(loaded, "before_cursor_execute", count)
    with read_scope(loaded) as session:
        got = [(m.outcome, m.case_id) for m in session.scalars(
            select(InboundMessage).where(InboundMessage.id.in_(ids)).order_by(InboundMessage.id))]
    assert got == [("appended", 1), ("appended", 2), ("appended", 1), ("created", 3), ("appended", 3)]
    # One read ahead for the batch, one for the reply to the case opened in it.
    assert len(case_reads) == 2, case_reads


def test_a_batch_a_door_interrupts_reads_ahead_for_what_it_decides(loaded, settings) -> None:
    """While a door waits to store (the pace pauses after each message), each transaction
    claims and reads ahead for twice as many messages as the one before decided, not for
    the whole rest of the batch; once the door is served, twice as many again. The story
    ends as it does in one transaction."""
    from sqlalchemy import event
    ids = [s.id for s in intake.store_many(loaded, story(), "pipe")]
    claims: list[int] = []

    def count(_conn, _cursor, statement, _parameters, context, _many) -> None:
        if statement.startswith("SELECT inbound_messages.id, inbound_messages.envelope_from"):
            claims.append(sum(name.startswith("ids_") for name in context.compiled_parameters[0]))
    commits: list[int] = []
    event.listen(loaded, "before_cursor_execute", count)
    try:
        run.process_many(loaded, settings, ids, pace=run.Pace(pause=lambda: len(commits) < 3,
                                                              committed=lambda: commits.append(1)))
    finally:
        event.remove(loaded, "before_cursor_execute", count)
    assert claims == [7, 2, 2, 2, 2]  # the code before: 7, 6, 5, 4
    assert seen(loaded)["messages"] == STORY_OUTCOMES
