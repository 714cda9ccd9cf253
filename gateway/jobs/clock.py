"""The two times of a job run: the job's clock, which decides what is due and dates the
job's own records, and the real time, which dates the mail and the changes to cases.

Also the reach of an explicit clock (`gateway jobs run --now`): a century either side of
the real time. Pure: never reads the wall clock itself.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# Wide enough to replay any missed run or look far ahead, narrow enough that every delay
# added to or taken from the clock (days, hours, the local day in any time zone) stays
# inside the calendar Python and the databases can hold.
REACH_YEARS = 100


@dataclass(frozen=True)
class Clock:
    """`at`: the job's clock (naive UTC). It decides what is due, and dates the job's own
    records (a reminder's, an escalation's, a digest's, an expiry's row), from which the
    next steps count: a run again with the same clock finds nothing left to do.
    `now`: the real time of the run (naive UTC). It dates what people see: the mail, due
    at once and dated now, and the case's changes (timeline events, closed_at, updated_at),
    so a case's history reads in the order it happened. With the scheduler both are now."""
    at: dt.datetime
    now: dt.datetime


def out_of_reach(at: dt.datetime, now: dt.datetime) -> str | None:
    """Why the clock `at` cannot be used while it is really `now` (both naive UTC), or None."""
    if abs(at.year - now.year) < REACH_YEARS:
        return None
    return (f"{at.isoformat()} is too far from the real time ({now.date().isoformat()}): "
            f"give a time less than {REACH_YEARS} years away")
