"""`[Dossier #N] [CRITICITE 1]` and `[MODULE Banque]` (or the same `Name : value` lines at the
top of the body) on an open case: change its criticality or its module, validated as at
opening. Each change is an event on the timeline; the sender gets a confirmation and the
agents an announcement. The escalation delay then counts from the change, with the new
criticality (`Case.criticality_changed_at`, read by gateway/jobs/escalation.py).

A tag that says what the case already says changes nothing and is not this rule's (a reply
to the opening mail still carries its tags). What else the message says ([PRIORITE], text,
files) follows as it would without the change. Never commits.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from gateway import timeline
from gateway.models import Disposition, Status
from gateway.outbound.outbox import NOTICE
from gateway.pipeline.grammar import parse_criticality
from gateway.pipeline.work import Outcome, Problem, Work
from gateway.rules import answer, info, message, priority

USED = ("criticality", "module", "priority")


@dataclass(frozen=True)
class Changed:
    field: str        # "criticality" or "module"
    before: int | str | None
    after: int | str | None


def _fold(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text)
    return "".join(c for c in folded if not unicodedata.combining(c)).casefold().strip()


def wanted(work: Work) -> bool:
    """The message asks for a criticality or a module other than the case's."""
    case, fields = work.case, work.request.fields
    assert case is not None
    criticality, module = fields.get("criticality", "").strip(), fields.get("module", "").strip()
    return bool((criticality and parse_criticality(criticality) != case.criticality)
                or (module and _fold(module) != _fold(case.module or "")))


def apply(work: Work, used: tuple[str, ...] = USED) -> Outcome:
    """`used`: the fields whose lines are taken out of the text that follows the change."""
    case = work.case
    assert case is not None
    fields = work.request.fields
    if case.status == Status.CLOSED:
        return work.refuse([Problem("change_case_closed", {"number": case.id})], case=case)
    criticality = parse_criticality(fields.get("criticality", "").strip() or str(case.criticality))
    if criticality is None:
        return work.refuse([Problem("bad_criticality", {"value": fields["criticality"]})], case=case)
    module = case.module
    if fields.get("module", "").strip() and _fold(fields["module"]) != _fold(case.module or ""):
        module = next((m for m in case.licence.modules if _fold(m) == _fold(fields["module"])), None)
        if module is None:
            return work.refuse([Problem("unknown_module", {"module": fields["module"].strip(),
                                                           "modules": case.licence.modules})], case=case)
    changes = []
    if criticality != case.criticality:
        changes.append(Changed("criticality", case.criticality, criticality))
        work.event(case, "criticality_change", timeline.criticality_change(case.criticality, criticality))
        case.criticality, case.criticality_changed_at = criticality, work.now
    if module != case.module:
        changes.append(Changed("module", case.module, module))
        work.event(case, "module_change", timeline.module_change(case.module, module))
        case.module = module
    case.updated_at = work.now
    _announce(work, changes)
    reasons = tuple(f"{c.field}: {c.before} -> {c.after}" for c in changes)
    more = _then(work, used)
    return Outcome(more.outcome if more else Disposition.APPENDED, reasons + (more.reasons if more else ()), case.id)


def _announce(work: Work, changes: list[Changed]) -> None:
    case = work.case
    assert case is not None
    context = {"changes": changes, "author": work.sender, "details": priority.opening_text(work)}
    me = work.sender_recipient()
    if me is not None and work.sender.agent is None:
        work.outbox.post("case_changed", [me], case=case, context=context, include_author=True)
    work.outbox.post("agent_case_changed", work.agents(), case=case, context=context, audience=NOTICE,
                     include_author=work.sender.agent is not None)


def _then(work: Work, used: tuple[str, ...]) -> Outcome | None:
    """What else the message asks, once the case is changed: priority, an answer, a message."""
    if work.sender.agent is None and "priority" in work.request.flags:
        return priority.apply(work, used=used)
    if not (work.request.body(used) or work.parsed.attachments):
        return None
    if work.sender.agent is not None:
        return answer.apply(work)
    return (info.apply if "info" in work.request.flags else message.apply)(work, used=used)
