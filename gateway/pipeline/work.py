"""The values passed between pipeline stages and to the rules: the unit of work, the
sender, a problem, the outcome."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import cases
from gateway.config import Settings
from gateway.models import Agent, Case, Contact, Disposition
from gateway.outbound.outbox import STRANGER, Outbox, Recipient, StoredFile
from gateway.pipeline import example
from gateway.pipeline.grammar import Request
from gateway.pipeline.parse import ParsedMail
from gateway.pipeline.proof import Verdict
from gateway.pipeline.reference import OurMail, Reference, find_case, mail_ids, our_mails


@dataclass(frozen=True)
class Claimed:
    """What the pipeline reads of a stored message (the row itself is written once, at the end)."""
    id: int
    envelope_from: str | None
    envelope_to: list[str]
    duplicate_of: int | None


@dataclass(frozen=True)
class Sender:
    address: str | None
    name: str
    agent: Agent | None     # an agent's address in From: a name, not a proof (see Work.proof)
    contacts: tuple[Contact, ...]  # active contacts with this address, one per client
    language: str
    auth: Verdict = Verdict()  # what our trusted MTA said of the message

    def contact_of(self, client_id: int) -> Contact | None:
        return next((c for c in self.contacts if c.client_id == client_id), None)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a message, named by a code the refusal template explains."""
    code: str
    params: dict[str, Any] = field(default_factory=dict)

    def reason(self) -> str:
        details = ", ".join(f"{k}={v}" for k, v in self.params.items() if isinstance(v, (str, int)))
        return f"{self.code}: {details}" if details else self.code


@dataclass(frozen=True)
class Outcome:
    outcome: str
    reasons: tuple[str, ...] = ()
    case_id: int | None = None
    release: int | None = None  # a held message this one confirmed: processed next, as proven


@dataclass
class Work:
    session: Session
    settings: Settings
    now: dt.datetime
    inbound: Claimed
    parsed: ParsedMail
    request: Request
    sender: Sender
    outbox: Outbox

    found: Reference | None = None  # the case the message refers to, once looked for
    mine: dict[str, OurMail] | None = None  # the gateway's own mails it names, once looked for

    def reference(self) -> Reference:
        """The case the message refers to (found once; the case row is then locked)."""
        if self.found is None:
            self.found = find_case(self.session, self.settings, self.parsed, self.request,
                                   self.inbound, self.sender, self.ours())
        return self.found

    def ours(self) -> dict[str, OurMail]:
        """The gateway's own mails among the message's Message-ID and those it refers to,
        by Message-ID (one look-up for the loop check and the case reference)."""
        if self.mine is None:
            self.mine = our_mails(self.session, mail_ids(self.parsed))
        return self.mine

    @property
    def case(self) -> Case | None:
        return self.reference().case

    def event(self, case: Case, kind: str, text: str, internal: bool = False) -> int | None:
        """Add an event by the sender to the case's timeline; its id, which only `files`
        needs: None when the message has no files (nobody then waits for the row)."""
        return cases.event(self.session, case, kind, author=self.sender.address or "", text=text,
                           now=self.now, inbound_id=self.inbound.id, internal=internal,
                           wanted=bool(self.parsed.attachments))

    def files(self, case: Case, event_id: int | None) -> list[StoredFile]:
        """Keep the message's files on `event_id`; what the outbox needs to carry them."""
        return cases.store_files(self.session, case, event_id, self.parsed.attachments)

    @property
    def has_content(self) -> bool:
        """Whether the message says anything on a case: text or a file. A customer's priority
        line is a request, not text; an agent's message never loses a line."""
        used = () if self.sender.agent is not None else ("priority",)
        return bool(self.request.body(used) or self.parsed.attachments)

    def agents(self) -> list[Recipient]:
        """The active agents, as recipients of a notice (in the support's language)."""
        return agent_recipients(active_agents(self.session), self.settings.support.language)

    def sender_recipient(self) -> Recipient | None:
        if not self.sender.address:
            return None
        return Recipient(self.sender.address, self.sender.name, self.sender.language)

    def refuse(self, problems: list[Problem], case: Case | None = None,
               kind: str = "refusal", extra: dict[str, Any] | None = None) -> Outcome:
        """Answer the sender with what was wrong and how to write it; never says more
        about a case than the sender may know (the caller passes `case` only then)."""
        reasons = tuple(p.reason() for p in problems)
        me = self.sender_recipient()
        if me is None:
            return Outcome(Disposition.REFUSED, reasons + ("no valid sender address to answer",))
        if not self.outbox.answers_left(me.address):
            return Outcome(Disposition.REFUSED, reasons + ("answer suppressed: too many answers this hour",))
        silence = self.stranger_silence()
        if silence:
            return Outcome(Disposition.REFUSED, reasons + (f"answer suppressed: {silence}",))
        context = dict(extra or {}, problems=problems, request=self.request,
                       original_subject=self.parsed.subject, sender=self.sender,
                       example=example.for_sender(self.session, self.sender, self.request))
        self.outbox.post(kind, [me], case=case, context=context, include_author=True,
                         audience=STRANGER if self.is_stranger() else "")
        return Outcome(Disposition.REFUSED, reasons, case.id if case else None)

    def is_stranger(self) -> bool:
        """Neither a contact nor an agent: perhaps a forged From, so answers are bounded."""
        return not self.sender.contacts and self.sender.agent is None

    def stranger_silence(self) -> str | None:
        """Why a stranger gets no answer: their domain failed our MTA's authentication, or
        the hour's ceiling of answers to strangers is reached (backscatter stays bounded)."""
        if not self.is_stranger():
            return None
        domain = (self.sender.address or "").rpartition("@")[2]
        if self.sender.auth.known and not self.sender.auth.passes_for(domain, spf=True):
            return "the sender's domain is not authenticated by our MTA"
        if self.outbox.strangers_answered() >= self.settings.support.stranger_answers_per_hour:
            return f"{self.settings.support.stranger_answers_per_hour} answers to unknown senders this hour already"
        return None

    def no_access(self) -> Outcome:
        """The one refusal for a case the sender may not touch, existing or not: the same
        mail byte for byte but for the number they wrote, so it tells nothing."""
        number = self.request.case_number
        return self.refuse([Problem("case_not_found", {"number": number} if number else {})])


def contact_recipient(contact: Contact) -> Recipient:
    return Recipient(contact.email, contact.name, contact.language or contact.client.language or "fr")


def case_recipients(case: Case) -> tuple[list[Recipient], list[Recipient]]:
    """(To, Cc) for a case: the main contact, then the distribution list."""
    to = [contact_recipient(case.main_contact)]
    cc = [contact_recipient(e.contact) for e in case.distribution if e.contact_id != case.main_contact_id]
    return to, cc


def agent_recipients(agents: list[Agent], language: str) -> list[Recipient]:
    return [Recipient(a.email, a.name, language) for a in agents if a.active]


def active_agents(session: Session) -> list[Agent]:
    """The active agents, read once per transaction (a backlog batch shares them)."""
    agents = session.info.get("active_agents")
    if agents is None:
        agents = session.info["active_agents"] = list(
            session.scalars(select(Agent).where(Agent.active.is_(True)).order_by(Agent.id)))
    return agents
