"""Render one outbound message from templates: (kind, language, context) -> subject, text, HTML.

Templates live in `templates/<language>/<kind>.txt` and `.html`; the text template's first
line is `Subject: ...`. HTML is autoescaped; text is not. Every context has `settings`,
`lang` and `case_tag`, the case tag in the reader's language (`support.case_tag` in French,
`Case` in English; gateway/pipeline/grammar.py understands both). The `date` and `day`
filters show stored times (naive UTC) in the `[jobs] timezone` in the language's format,
`zone_label()` names that zone, and `described` reads a timeline event for the templates
(gateway/timeline.py). `shown` gives what a mail shows of a text a person wrote: at most
`MAIL_TEXT` characters (the `usertext` macros of `_common` add the note that says the case
keeps it whole); `number` writes a count the reader's way.
Never touches the database.
"""
from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import jinja2

from gateway import timeline

LANGUAGES = ("fr", "en")
# The case tag English readers see ([Case #123]); French readers see `support.case_tag`.
ENGLISH_CASE_TAG = "Case"
CRITICALITY_NAMES = {
    "fr": {1: "bloquante", 2: "haute", 3: "normale", 4: "basse"},
    "en": {1: "blocking", 2: "high", 3: "normal", 4: "low"},
}
STATUS_NAMES = {
    "fr": {"nouveau": "nouveau", "en_cours": "en cours", "attente_client": "en attente de votre réponse",
           "resolu": "résolu", "clos": "clos"},
    "en": {"nouveau": "new", "en_cours": "in progress", "attente_client": "waiting for your answer",
           "resolu": "resolved", "clos": "closed"},
}
# Characters of a text a person wrote that one mail shows (about 50 pages; a link of 100 kB
# stays whole). With the HTML part repeating it, a mail stays far under the relay's limit;
# outbox.py fits the files beside it.
MAIL_TEXT = 150_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# English dates spell the month: "03/05/2026" reads as March to some and May to others.
_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Shown:
    """What a mail shows of a text: `text` (trimmed), and `total`, the length of the whole."""
    text: str
    total: int

    @property
    def cut(self) -> bool:
        return len(self.text) < self.total


def shown(value: str | None, limit: int = MAIL_TEXT) -> Shown:
    """At most `limit` characters of `value`, cut at a line end when one is near the limit."""
    whole = (value or "").strip()
    if len(whole) <= limit:
        return Shown(whole, len(whole))
    end = whole.rfind("\n", limit - limit // 10, limit)
    return Shown(whole[: end if end > 0 else limit].rstrip(), len(whole))


def number(value: int, lang: str) -> str:
    """A count as people of `lang` write it: 100 000 in French, 100,000 in English."""
    return f"{value:,}".replace(",", "\u202f") if lang == "fr" else f"{value:,}"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def clean_header(value: str) -> str:
    """One line, no control characters: nothing can be injected into a header."""
    return " ".join(_CONTROL.sub(" ", value).split())[:900]


def file_size(size: int, lang: str) -> str:
    """A size as people read it: "850 octets", "12 Ko", "2,4 Mo" (English: bytes, KB, MB)."""
    units = ("octets", "Ko", "Mo", "Go") if lang == "fr" else ("bytes", "KB", "MB", "GB")
    value, unit = float(size), 0
    while value >= 1024 and unit < len(units) - 1:
        value, unit = value / 1024, unit + 1
    text = f"{value:.0f}" if unit == 0 or value >= 10 else f"{value:.1f}"
    return f"{text.replace('.', ',') if lang == 'fr' else text} {units[unit]}"


class _Environment(jinja2.Environment):
    """Each template's globals a plain dict copied when it loads: jinja2's `ChainMap` over the
    environment's was read whole at every render and every import (about 35 µs of a mail's
    250 or so). `environment` sets every global before the first template loads."""

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        return {**self.globals, **(d or {})}


@functools.lru_cache(maxsize=4)
def environment(templates_dir: str, autoescape: bool) -> jinja2.Environment:
    # cache_size=-1: every template kept in a plain dict (a few hundred at most); the default
    # LRU cache's lock and queue took twice as long at each look-up (five or more a mail).
    env = _Environment(
        loader=jinja2.FileSystemLoader(templates_dir), autoescape=autoescape,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, auto_reload=False, cache_size=-1)
    env.filters["criticality"] = lambda n, lang: CRITICALITY_NAMES.get(lang, CRITICALITY_NAMES["fr"]).get(n, str(n))
    env.filters["status"] = lambda s, lang: STATUS_NAMES.get(lang, STATUS_NAMES["fr"]).get(s, s)
    env.filters["filesize"] = file_size
    env.filters["date"] = _date_filter
    env.filters["day"] = _day_filter
    env.filters["described"] = timeline.describe
    env.filters["shown"] = shown
    env.filters["number"] = number
    env.globals["zone_label"] = _zone_label_global
    return env


def format_day(day: dt.date, lang: str) -> str:
    """A calendar day as people of `lang` write it: 30/11/2026, 30 Nov 2026."""
    if lang == "en":
        return f"{day.day} {_MONTHS_EN[day.month - 1]} {day.year}"
    return day.strftime("%d/%m/%Y")


def in_zone(moment: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """`moment` (naive UTC, as stored, or aware) as an aware time in `zone`."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    return aware.astimezone(zone)


def format_time(moment: dt.datetime, lang: str, zone: ZoneInfo) -> str:
    """`moment` as a local date and time in `zone`: 30/11/2026 14:05, 30 Nov 2026 14:05."""
    local = in_zone(moment, zone)
    return f"{format_day(local.date(), lang)} {local:%H:%M}"


def zone_label(key: str, lang: str) -> str:
    """The zone `key` as a reader says it: "heure de Paris", "Paris time" for Europe/Paris;
    the key itself for a zone without a city ("heure UTC", "UTC time")."""
    if "/" not in key or key.startswith("Etc/"):
        return f"heure {key}" if lang == "fr" else f"{key} time"
    city = key.rsplit("/", 1)[1].replace("_", " ")
    if lang == "fr":
        return f"heure d'{city}" if city[0] in "AEIOUYH" else f"heure de {city}"
    return f"{city} time"


def _zone(ctx: Any) -> ZoneInfo:
    return ZoneInfo(ctx["settings"].jobs.timezone)


@jinja2.pass_context
def _date_filter(ctx: Any, moment: dt.datetime | dt.date | None) -> str:
    """A stored time as local date and time; a plain day as a day."""
    if not moment:
        return ""
    if not isinstance(moment, dt.datetime):
        return format_day(moment, ctx["lang"])
    return format_time(moment, ctx["lang"], _zone(ctx))


@jinja2.pass_context
def _day_filter(ctx: Any, day: dt.datetime | dt.date | None) -> str:
    """A day; a stored time gives its local day."""
    if not day:
        return ""
    if isinstance(day, dt.datetime):
        day = in_zone(day, _zone(ctx)).date()
    return format_day(day, ctx["lang"])


@jinja2.pass_context
def _zone_label_global(ctx: Any) -> str:
    return zone_label(ctx["settings"].jobs.timezone, ctx["lang"])


def case_tag(case_tag_setting: str, language: str) -> str:
    """The case tag a reader of `language` sees: the configured one, or `Case` in English."""
    return ENGLISH_CASE_TAG if language == "en" else case_tag_setting


def case_subject(case_tag_setting: str, language: str, number: int, title: str) -> str:
    """`[Dossier #N] title`, or `[Case #N] title` for an English reader."""
    return clean_header(f"[{case_tag(case_tag_setting, language)} #{number}] {title}")


def render(templates_dir: str, kind: str, language: str, context: dict[str, Any]) -> Rendered:
    """Render `kind` in `language` (French when the language has no templates)."""
    lang = language if language in LANGUAGES else "fr"
    ctx = dict(context, lang=lang, case_tag=case_tag(context["settings"].support.case_tag, lang))
    text = environment(templates_dir, False).get_template(f"{lang}/{kind}.txt").render(ctx)
    first, _, body = text.partition("\n")
    if not first.startswith("Subject:"):
        raise ValueError(f"template {lang}/{kind}.txt must start with a 'Subject:' line")
    html = environment(templates_dir, True).get_template(f"{lang}/{kind}.html").render(ctx)
    return Rendered(clean_header(first.removeprefix("Subject:")), body.lstrip("\n"), html)
