"""Open a case from a message without a case reference.

Checks, in order: the fields are there, the sender is an active contact of the client,
the serial is one of that client's licences (never saying whose it is otherwise), the
licence is active, the module is one of the licence's. Then the case, its first event,
attachments, distribution list from Cc, priority, the acknowledgement and the agents'
notice. Never commits.
"""
from __future__ import annotations

import unicodedata

from sqlalchemy.orm.attributes import set_committed_value

from gateway import cases
from gateway.models import Case, Client, Contact, Disposition, DistributionEntry, Licence, reference_key
from gateway.outbound.outbox import NOTICE, new_message_id
from gateway.pipeline import known
from gateway.pipeline.grammar import BODY_FIELDS, split_addresses
from gateway.pipeline.work import Outcome, Problem, Work, contact_recipient
from gateway.rules import handover, priority
from gateway.rules.licence import refuse_inactive


def missing_fields(work: Work) -> list[Problem]:
    request, problems = work.request, []
    for name in ("client", "serial", "criticality"):
        if not request.fields.get(name):
            problems.append(Problem(f"missing_{name}"))
    value = request.fields.get("criticality")
    if value and request.criticality() is None:
        problems.append(Problem("bad_criticality", {"value": value}))
    if not request.title:
        problems.append(Problem("missing_title"))
    if not request.body(BODY_FIELDS) and not work.parsed.attachments:
        problems.append(Problem("missing_details"))
    return problems


def _fold(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text)
    return "".join(c for c in folded if not unicodedata.combining(c)).casefold().strip()


def apply(work: Work) -> Outcome:
    problems = missing_fields(work)
    if problems:
        return work.refuse(problems)
    session, request = work.session, work.request
    code, serial = request.fields["client"].strip(), request.fields["serial"].strip()
    # The sender's contacts come with their client: no look-up of the code itself.
    contact = next((c for c in work.sender.contacts if c.client.code_key == reference_key(code)), None)
    if contact is None:
        # A stranger gets the same answer whether the code exists or not: nothing to probe.
        # A registered contact is told the codes of their own clients.
        return work.refuse([Problem("not_a_contact", {
            "client": code, "own_codes": [c.client.code for c in work.sender.contacts]})])
    client = contact.client
    # The client's licences are read once per batch (pipeline/known.py).
    licence = next((lic for lic in known.licences(session, client.id) if lic.serial_key == reference_key(serial)),
                   None)
    if licence is None:
        return work.refuse([Problem("unknown_serial", {"serial": serial, "client": client.code})])
    if not licence.active:
        return refuse_inactive(work, licence, "open")
    module = request.fields.get("module")
    if module:
        match = next((m for m in licence.modules if _fold(m) == _fold(module)), None)
        if match is None:
            return work.refuse([Problem("unknown_module", {"module": module, "modules": licence.modules})])
        module = match
    # A colleague named as the main contact gets the case; the sender is then on its list.
    main = handover.choose(work, client, contact)
    if isinstance(main, Outcome):
        return main
    return _create(work, client, main, licence, module, contact)


def _create(work: Work, client: Client, contact: Contact, licence: Licence, module: str | None,
            author: Contact) -> Outcome:
    session, request, now = work.session, work.request, work.now
    criticality = request.criticality()
    assert criticality is not None  # missing_fields refused the message otherwise
    case = cases.open_case(session, client=client, contact=contact, licence=licence, module=module,
                           criticality=criticality, title=request.title, now=now,
                           thread_id=work.parsed.message_id or new_message_id(work.settings))
    details = request.body(BODY_FIELDS)
    files = work.files(case, work.event(case, "opened", details))
    distribution, not_added = _distribution_from_cc(work, case, client, contact, author)
    # The new case's list is known: the templates read it without asking the database.
    set_committed_value(case, "distribution", distribution)
    wanted = "priority" in request.flags
    granted = priority.grant(work, case, client) if wanted else None
    to, cc = [contact_recipient(contact)], [contact_recipient(e.contact) for e in distribution]
    context = {"not_added": not_added, "priority_wanted": wanted, "priority": granted,
               "details": details, "licence": licence, "author": work.sender}
    work.outbox.post("case_opened", to, cc, case=case, context=context, include_author=True, files=files,
                     audience=NOTICE)
    work.outbox.post("agent_new_case", work.agents(),
                     case=case, context=context, files=files, audience=NOTICE)
    reasons = [f"case {case.id} opened"] + [f"not added to distribution: {a}" for a in not_added]
    if granted is not None:
        reasons.append(f"priority: {granted.status}")
    return Outcome(Disposition.CREATED, tuple(reasons), case.id)


def _distribution_from_cc(work: Work, case: Case, client: Client, main: Contact,
                          author: Contact) -> tuple[list[DistributionEntry], list[str]]:
    """Add the Cc addresses that are active contacts of the client (and the author, when
    they named someone else as the main contact); list the others."""
    not_added: list[str] = []
    added: dict[int, DistributionEntry] = {}
    # Cc addresses, and those a [DIFFUSION +a@x.fr] tag adds, join the distribution list.
    extra = [a for sign, a in split_addresses(work.request.fields.get("distribution", "")) if sign == "+"]
    for address in dict.fromkeys([author.email] + list(work.parsed.cc) + extra):
        if address == main.email or work.settings.support.mailbox.matches(address):
            continue
        contact = next((c for c in known.contacts(work.session, address) if c.client_id == client.id), None)
        if contact is None:
            not_added.append(address)
        elif contact.id not in added:
            added[contact.id] = DistributionEntry(case_id=case.id, contact_id=contact.id, contact=contact)
            work.session.add(added[contact.id])
    return list(added.values()), not_added
