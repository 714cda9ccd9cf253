"""Delays in days, counted on the calendar or in business days (no weekends, no public
holidays), in the gateway's time zone. Pure: never touches the database or the clock."""
from __future__ import annotations

import datetime as dt
import functools
from zoneinfo import ZoneInfo

from gateway import apart

SPAN = range(-1, 11)    # years looked up at once, around the year asked for


class Holidays:
    """The public holidays of `spec`, a country code with an optional subdivision: "FR",
    "FR-57", as dates, a span of years at a time (`SPAN` around the year asked for).

    They come from the holidays library, which loads every country's rules to answer for
    one (about 17 MB that would stay in the process, and in each worker `serve` forks): a
    process that runs no other thread asks it in a forked child and keeps only the dates."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.years: dict[int, frozenset[dt.date]] = {}

    def __contains__(self, day: object) -> bool:
        if not isinstance(day, dt.date):
            return False
        if day.year not in self.years:
            self.years.update(_dates(self.spec, [day.year + i for i in SPAN]))
        return day in self.years[day.year]


@functools.lru_cache(maxsize=8)
def public_holidays(spec: str) -> Holidays:
    """`Holidays(spec)`, checked: NotImplementedError when the library knows no such
    country or subdivision."""
    table = Holidays(spec)
    _ = dt.date.today() in table
    return table


def _dates(spec: str, years: list[int]) -> dict[int, frozenset[dt.date]]:
    try:
        dates: dict[int, frozenset[dt.date]] = apart.call(_look_up, spec, years, keeps_out="holidays")
    except apart.Unavailable:
        return _look_up(spec, years)
    return dates


def _look_up(spec: str, years: list[int]) -> dict[int, frozenset[dt.date]]:
    import holidays
    country, _, subdivision = spec.partition("-")
    found = holidays.country_holidays(country, subdiv=subdivision or None, years=years)
    return {year: frozenset(day for day in found if day.year == year) for year in years}


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
