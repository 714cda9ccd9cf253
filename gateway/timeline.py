"""What the gateway itself writes on a case's timeline, and how a mail reads any event back.

Events written by a person (an opening, a message, a note, a customer's closing words) keep
their text as written. Events the gateway writes itself (a status change, priority, a
distribution change, a reminder, an escalation, an automatic closure, a removal request
without words) store a small JSON object instead of a sentence, so that mails can put them
in words in the reader's language: `{"from": "en_cours", "to": "resolu"}`. A reopening, or a
closing without words, stores no text: its kind and author say it all.

`describe` turns a stored event into a `Description` for the templates, and also reads the
English sentences that databases written before this format hold ("reminder 1/2 sent").
Pure: never touches the database.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Kinds whose text is always the gateway's: never shown as written, whatever it holds.
GATEWAY_KINDS = frozenset({"status_change", "priority", "distribution_change", "reminder", "escalation",
                           "reopened", "criticality_change", "module_change", "main_contact_change"})


@dataclass(frozen=True)
class Description:
    """What a mail shows of an event. `code` is "text" (`params["text"]`, as written), "none"
    (nothing beyond the event's kind and author) or one of the gateway's own: "status"
    (from, to), "priority" (points_left), "distribution" (added, removed), "reminder"
    (number, of), "closed_resolved" (days), "closed_no_answer" (reminders), "escalation"
    (hours), "remove_contact" (contact), "criticality" (from, to: numbers), "module" (from, to:
    names, "" for none), "main_contact" (from, to: addresses)."""
    code: str
    params: Mapping[str, Any] = field(default_factory=dict)


NOTHING = Description("none")


# -- writing ---------------------------------------------------------------------------------

def _dump(**values: Any) -> str:
    return json.dumps(values, ensure_ascii=False, separators=(", ", ": "))


def status_change(old: str, new: str) -> str:
    return _dump(**{"from": old, "to": new})


def priority_granted(points_left: int) -> str:
    return _dump(points_left=points_left)


def distribution_change(added: list[str], removed: list[str]) -> str:
    return _dump(added=added, removed=removed)


def criticality_change(old: int, new: int) -> str:
    return _dump(**{"from": old, "to": new})


def module_change(old: str | None, new: str | None) -> str:
    return _dump(**{"from": old or "", "to": new or ""})


def main_contact_change(old: str, new: str) -> str:
    return _dump(**{"from": old, "to": new})


def reminder(number: int, of: int) -> str:
    return _dump(number=number, of=of)


def escalated(lead: str, hours: int) -> str:
    return _dump(lead=lead, hours=hours)


def closed_resolved(days: int) -> str:
    """An automatic closure of a case resolved `days` ago."""
    return _dump(auto="resolved", days=days)


def closed_no_answer(reminders: int) -> str:
    """An automatic closure after `reminders` reminders without an answer."""
    return _dump(auto="no_answer", reminders=reminders)


def contact_removal(contact: str) -> str:
    """The opening of a case asking to remove `contact`, when the customer wrote no words."""
    return _dump(request="remove_contact", contact=contact)


# -- reading ---------------------------------------------------------------------------------

def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_addresses(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


# For each kind, the JSON shapes it may hold: (keys and checks, fixed values, description code).
_Shape = tuple[dict[str, Callable[[Any], bool]], dict[str, str], str]
_SHAPES: dict[str, list[_Shape]] = {
    "status_change": [({"from": _is_str, "to": _is_str}, {}, "status")],
    "priority": [({"points_left": _is_int}, {}, "priority")],
    "distribution_change": [({"added": _is_addresses, "removed": _is_addresses}, {}, "distribution")],
    "reminder": [({"number": _is_int, "of": _is_int}, {}, "reminder")],
    "escalation": [({"lead": _is_str, "hours": _is_int}, {}, "escalation")],
    "closed": [({"days": _is_int}, {"auto": "resolved"}, "closed_resolved"),
               ({"reminders": _is_int}, {"auto": "no_answer"}, "closed_no_answer")],
    "opened": [({"contact": _is_str}, {"request": "remove_contact"}, "remove_contact")],
    "criticality_change": [({"from": _is_int, "to": _is_int}, {}, "criticality")],
    "module_change": [({"from": _is_str, "to": _is_str}, {}, "module")],
    "main_contact_change": [({"from": _is_str, "to": _is_str}, {}, "main_contact")],
}


def _from_json(kind: str, text: str) -> Description | None:
    """The description a stored JSON object gives, when it has exactly one of the kind's shapes."""
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    for checks, fixed, code in _SHAPES.get(kind, []):
        if set(data) == set(checks) | set(fixed) and all(data[k] == v for k, v in fixed.items()) \
                and all(check(data[k]) for k, check in checks.items()):
            return Description(code, {k: data[k] for k in checks})
    return None


_LEGACY: dict[str, list[tuple[re.Pattern[str], Callable[[re.Match[str]], Description]]]] = {
    "status_change": [(re.compile(r"(\w+) -> (\w+)"),
                       lambda m: Description("status", {"from": m[1], "to": m[2]}))],
    "priority": [(re.compile(r"priority granted, (\d+) point\(s\) left"),
                  lambda m: Description("priority", {"points_left": int(m[1])}))],
    "reminder": [(re.compile(r"reminder (\d+)/(\d+) sent"),
                  lambda m: Description("reminder", {"number": int(m[1]), "of": int(m[2])}))],
    "escalation": [(re.compile(r"escalated to (\S*): no agent answer within (\d+) h"),
                    lambda m: Description("escalation", {"lead": m[1], "hours": int(m[2])}))],
    "closed": [(re.compile(r"closed automatically: resolved (\d+) day\(s\) ago"),
                lambda m: Description("closed_resolved", {"days": int(m[1])})),
               (re.compile(r"closed automatically: no answer after (\d+) reminder\(s\)"),
                lambda m: Description("closed_no_answer", {"reminders": int(m[1])}))],
    "opened": [(re.compile(r"remove contact (\S+)"),
                lambda m: Description("remove_contact", {"contact": m[1]}))],
}


def _legacy_distribution(text: str) -> Description | None:
    """"+a@x.fr, -b@y.fr", as written before the JSON form."""
    items = [item.strip() for item in text.split(",")]
    if not items or not all(len(i) > 1 and i[0] in "+-" and " " not in i for i in items):
        return None
    return Description("distribution", {"added": [i[1:] for i in items if i[0] == "+"],
                                        "removed": [i[1:] for i in items if i[0] == "-"]})


def _legacy(kind: str, text: str, author: str) -> Description | None:
    """The description an English sentence of an older database gives, if it is one."""
    if kind in ("closed", "reopened") and text == f"{kind} by {author}":
        return NOTHING
    if kind == "distribution_change":
        return _legacy_distribution(text)
    for pattern, make in _LEGACY.get(kind, []):
        m = pattern.fullmatch(text)
        if m:
            return make(m)
    return None


def describe(event: Any) -> Description:
    """What a mail shows of `event` (anything with `kind`, `text` and `author`): the gateway's
    own events as a Description to put in words, a person's text as written. A gateway
    event whose text cannot be read shows nothing rather than internal text."""
    kind, text, author = event.kind, (event.text or "").strip(), event.author or ""
    if not text:
        return NOTHING
    found = _from_json(kind, text) or _legacy(kind, text, author)
    if found is not None:
        return found
    return NOTHING if kind in GATEWAY_KINDS else Description("text", {"text": event.text})


def person_text(kind: str, text: str) -> str:
    """`text` when a person wrote it, else "" (for mails that quote an event's words)."""
    return text if describe(_Event(kind, text)).code == "text" else ""


def plain(kind: str, text: str, author: str = "") -> str:
    """An event as the operator reads it (`gateway cases show`): a person's text as written,
    the gateway's own as `name: value` words, e.g. "from: 3, to: 1", never its stored JSON."""
    found = describe(_Event(kind, text, author))
    if found.code == "text":
        return str(found.params["text"])
    return ", ".join(f"{key}: {_word(value)}" for key, value in found.params.items())


def _word(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value) or "-"
    return "-" if value in (None, "") else str(value)


@dataclass(frozen=True)
class _Event:
    kind: str
    text: str
    author: str = ""
