"""`[LICENCES]` (or `[LICENSES]`): the licences of the sender's company, as the old portal's
grid showed them: serial, product, modules, active (green telephone) or inactive (red, with
sales administration's phone and address), end date.

Only active contacts get it, and only for the clients they are an active contact of; anyone
else gets the same refusal, which says nothing about any client. Never commits.
"""
from __future__ import annotations

from gateway import portfolio
from gateway.models import Disposition
from gateway.pipeline.work import Outcome, Problem, Work


def apply(work: Work) -> Outcome:
    me = work.sender_recipient()
    if not work.sender.contacts or me is None:
        return work.refuse([Problem("list_not_allowed", {"command": "licences"})])
    holdings = portfolio.licences(work.session, [c.client for c in work.sender.contacts])
    work.outbox.post("licence_list", [me], context={"holdings": holdings, "limit": portfolio.LIMIT},
                     include_author=True)
    total = sum(h.total for h in holdings)
    return Outcome(Disposition.APPENDED, (f"licence list sent: {total} licence(s)",))
