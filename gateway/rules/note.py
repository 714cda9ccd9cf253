"""An agent's `[NOTE]` (or `[INTERNE]`) on a case: kept on the timeline as an internal note,
with its files, and never sent to anyone. Never commits.
"""
from __future__ import annotations

from gateway.models import Disposition
from gateway.pipeline.work import Outcome, Work


def apply(work: Work) -> Outcome:
    case = work.case
    assert case is not None
    work.files(case, work.event(case, "note", work.request.body(), internal=True))
    case.updated_at = work.now
    return Outcome(Disposition.APPENDED, ("internal note",), case.id)
