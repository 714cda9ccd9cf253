"""Render one outbound message from templates: (kind, language, context) -> subject, text, HTML.

Templates live in `templates/<language>/<kind>.txt` and `.html`; the text template's first
line is `Subject: ...`. HTML is autoescaped; text is not. Never touches the database.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import jinja2

LANGUAGES = ("fr", "en")
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
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


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


@functools.lru_cache(maxsize=4)
def environment(templates_dir: str, autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir), autoescape=autoescape,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, auto_reload=False)
    env.filters["criticality"] = lambda n, lang: CRITICALITY_NAMES.get(lang, CRITICALITY_NAMES["fr"]).get(n, str(n))
    env.filters["status"] = lambda s, lang: STATUS_NAMES.get(lang, STATUS_NAMES["fr"]).get(s, s)
    env.filters["filesize"] = file_size
    env.filters["date"] = lambda d: d.strftime("%d/%m/%Y %H:%M") if d else ""
    return env


def render(templates_dir: str, kind: str, language: str, context: dict[str, Any]) -> Rendered:
    """Render `kind` in `language` (French when the language has no templates)."""
    lang = language if language in LANGUAGES else "fr"
    ctx = dict(context, lang=lang)
    text = environment(templates_dir, False).get_template(f"{lang}/{kind}.txt").render(ctx)
    first, _, body = text.partition("\n")
    if not first.startswith("Subject:"):
        raise ValueError(f"template {lang}/{kind}.txt must start with a 'Subject:' line")
    html = environment(templates_dir, True).get_template(f"{lang}/{kind}.html").render(ctx)
    return Rendered(clean_header(first.removeprefix("Subject:")), body.lstrip("\n"), html)
