"""Delays in days, counted on the calendar or in business days (no weekends, no public
holidays), in the gateway's time zone. Pure: never touches the database or the clock."""
from __future__ import annotations

import datetime as dt
import functools
from zoneinfo import ZoneInfo

import holidays


@functools.lru_cache(maxsize=8)
def public_holidays(spec: str) -> holidays.HolidayBase:
    """The public holidays of `spec`, a country code with an optional subdivision: "FR",
    "FR-57". Years are added as they are asked for."""
    country, _, subdivision = spec.partition("-")
    return holidays.country_holidays(country, subdiv=subdivision or None)


def is_business_day(day: dt.date, spec: str = "FR") -> bool:
    return day.weekday() < 5 and day not in public_holidays(spec)


def to_local(moment: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    """A naive UTC timestamp as an aware local one."""
    return moment.replace(tzinfo=dt.UTC).astimezone(tz)


def to_utc(moment: dt.datetime) -> dt.datetime:
    """An aware timestamp as naive UTC, the way every timestamp is stored."""
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def local_midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    """The start of a local day, as naive UTC."""
    return to_utc(dt.datetime.combine(day, dt.time(), tzinfo=tz))


def add_days(start: dt.datetime, days: int, tz: ZoneInfo, business: bool = False,
             spec: str = "FR") -> dt.datetime:
    """`start` (naive UTC) plus `days`. In business days, each day counted is the next
    weekday that is not a public holiday, at the same local time of day: three business
    days after Friday 17:00 is Wednesday 17:00."""
    if not business:
        return start + dt.timedelta(days=days)
    local = to_local(start, tz)
    day, counted = local.date(), 0
    while counted < days:
        day += dt.timedelta(days=1)
        counted += is_business_day(day, spec)
    return to_utc(dt.datetime.combine(day, local.time(), tzinfo=tz))
