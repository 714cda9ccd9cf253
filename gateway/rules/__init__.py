"""The rules: what each kind of message does, as a table read from top to bottom.

`decide` walks `TABLE` and applies the first row whose condition holds. Each rule is one
module with one public `apply(work) -> Outcome`; adding a command is one module and one
row. A rule writes the case, its timeline and the outbox in the caller's transaction and
never commits. The safety checks that come before any rule (duplicates, automatic mail,
mail from the support address) are in gateway/pipeline/run.py.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.pipeline import loops
from gateway.pipeline.work import Outcome, Problem, Work
from gateway.rules import (
    answer,
    change,
    close,
    confirmation,
    contact_list,
    contacts,
    distribution,
    follow,
    handover,
    info,
    licence,
    licence_list,
    message,
    note,
    open_case,
    priority,
    registration,
    reopen,
)

Condition = Callable[[Work], bool]
Rule = Callable[[Work], Outcome]


@dataclass(frozen=True)
class Row:
    when: str            # the message this row is about, in words
    applies: Condition
    rule: Rule


def flag(*names: str) -> Condition:
    """The message carries one of these tags ([CLOTURE], [INFO]…)."""
    return lambda work: bool(work.request.flags.intersection(names))


def both(*conditions: Condition) -> Condition:
    return lambda work: all(condition(work) for condition in conditions)


def agent(work: Work) -> bool:
    return work.sender.agent is not None


def on_case(work: Work) -> bool:
    return work.case is not None


def not_theirs(work: Work) -> bool:
    """A customer writing on a case of a client they are not an active contact of."""
    return work.case is not None and work.sender.contact_of(work.case.client_id) is None


def empty(work: Work) -> bool:
    return not work.has_content


def distribution_given(work: Work) -> bool:
    return "distribution" in work.request.fields


def case_number_given(work: Work) -> bool:
    return work.request.case_number is not None


def no_access(work: Work) -> Outcome:
    return work.no_access()


def own_mail(work: Work) -> Outcome:
    return loops.ignore(work)


def empty_message(work: Work) -> Outcome:
    return work.refuse([Problem("empty_message")], case=work.case)


def agent_without_case(work: Work) -> Outcome:
    return work.refuse([Problem("agent_needs_case")])


def needs_case(work: Work) -> Outcome:
    command = next(c for c in ("close", "closed", "info") if c in work.request.flags)
    return work.refuse([Problem("needs_case", {"command": command})])


TABLE: tuple[Row, ...] = (
    Row("a reply through the token of a confirmation mail", confirmation.given, confirmation.release),
    Row("the gateway's own mail coming back (forwarded)", loops.came_back, own_mail),
    Row("a registration code, or a reply to the code mail", registration.code_given, registration.confirm),
    Row("[INSCRIPTION]", flag("register"), registration.apply),
    # Agents: a From naming an agent proves nothing (confirmation.py says what does).
    Row("an agent's message on a case, without proof", both(agent, on_case, confirmation.unproven),
        confirmation.ask_agent),
    Row("an agent's [NOTE] on a case", both(agent, on_case, flag("note")), note.apply),
    Row("an agent's [INTERLOCUTEUR adresse] on a case: a handover", both(agent, on_case, handover.wanted),
        handover.apply),
    Row("an agent's [CRITICITE]/[MODULE] changing a case", both(agent, on_case, change.wanted), change.apply),
    Row("an agent's [CLOS] on a case, with no text or file", both(agent, on_case, flag("closed"), empty),
        close.by_agent),
    Row("an agent's message on a case, with no text, file or status tag",
        both(agent, on_case, empty, lambda w: not flag("waiting", "resolved", "closed")(w)), empty_message),
    Row("an agent's answer on a case ([ATTENTE], [RESOLU], [CLOS] set the status)", both(agent, on_case),
        answer.apply),
    Row("an agent's message naming a case that is not there", both(agent, case_number_given), no_access),
    Row("an agent's message without a case", agent, agent_without_case),
    # Customers.
    Row("[SUIVI]", flag("follow"), follow.apply),
    Row("[LICENCES]: the company's licences", flag("licences"), licence_list.apply),
    Row("[INTERLOCUTEURS]: the company's contacts", flag("contacts"), contact_list.apply),
    Row("[INTERLOCUTEUR AJOUT|MODIF|SUPPRESSION]", flag("contact"), contacts.apply),
    Row("a case the sender may not touch", not_theirs, no_access),
    Row("[CLOTURE] on a case", both(on_case, flag("close", "closed")), close.apply),
    Row("[DIFFUSION] on a case", both(on_case, distribution_given), distribution.apply),
    Row("a request on a case whose licence is inactive", both(on_case, licence.inactive), licence.apply),
    Row("[INTERLOCUTEUR adresse] on a case: a handover", both(on_case, handover.wanted), handover.apply),
    Row("a case closed longer ago than cases.reopen_days", both(on_case, reopen.too_late), reopen.apply),
    Row("[CRITICITE]/[MODULE] changing a case", both(on_case, change.wanted), change.apply),
    Row("[PRIORITE] on a case", both(on_case, flag("priority")), priority.apply),
    Row("a message on a case with no text and no file", both(on_case, empty), empty_message),
    Row("[INFO] on a case", both(on_case, flag("info")), info.apply),
    Row("a message on a case", on_case, message.apply),
    Row("a case number that finds no case", case_number_given, no_access),
    Row("[CLOTURE] or [INFO] without a case", flag("close", "closed", "info"), needs_case),
    Row("a message without a case: a new case", lambda work: True, open_case.apply),
)


def decide(work: Work) -> Outcome:
    """Apply the first rule whose condition holds."""
    row = next(row for row in TABLE if row.applies(work))
    return row.rule(work)
