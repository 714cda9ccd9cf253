"""`[INTERLOCUTEURS]` (or `[CONTACTS]`): the interlocuteurs of the sender's company with
their name, address, phone, state (active, pending confirmation, failing address) and the
open cases each is main contact of.

Only active contacts get it, and only for the clients they are an active contact of; anyone
else gets the same refusal, which says nothing about any client. `[INTERLOCUTEUR AJOUT]`
and its siblings (one contact, singular) are gateway/rules/contacts.py. Never commits.
"""
from __future__ import annotations

from gateway import portfolio
from gateway.models import Disposition
from gateway.pipeline.work import Outcome, Problem, Work


def apply(work: Work) -> Outcome:
    me = work.sender_recipient()
    if not work.sender.contacts or me is None:
        return work.refuse([Problem("list_not_allowed", {"command": "contacts"})])
    holdings = portfolio.contacts(work.session, [c.client for c in work.sender.contacts])
    work.outbox.post("contact_list", [me], context={"holdings": holdings, "limit": portfolio.LIMIT},
                     include_author=True)
    total = sum(h.total for h in holdings)
    return Outcome(Disposition.APPENDED, (f"contact list sent: {total} contact(s)",))
