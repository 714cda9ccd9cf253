"""The email grammar: tags in the subject and `Name : value` lines at the top of the body.

Pure functions from text to a typed `Request`; nothing here knows about the database.
Linear in the text: a tag's name is looked for in its first words only, and a field line
is at most 500 characters.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field

# Normalised tag name -> field. Names ignore case, accents, spaces, "_", "-", apostrophes,
# a leading "N°" and the small words "de", "du", "of" (see `normalise`).
NAMES: dict[str, str] = {
    "client": "client", "codeclient": "client", "clientcode": "client", "customer": "client",
    "numeroclient": "client", "customercode": "client", "customernumber": "client",
    "serie": "serial", "numeroserie": "serial", "serial": "serial", "serialnumber": "serial",
    "sn": "serial",
    "criticite": "criticality", "niveaucriticite": "criticality", "crit": "criticality",
    "criticality": "criticality", "severity": "criticality",
    "module": "module",
    "priorite": "priority", "priority": "priority",
    "diffusion": "distribution", "cc": "distribution", "distribution": "distribution",
    "cloture": "close", "cloturer": "close", "close": "close",
    "info": "info", "demandeinformation": "info",
    "suivi": "follow", "status": "follow", "follow": "follow",
    "inscription": "register", "register": "register",
    "interlocuteur": "contact", "contact": "contact",
    "contactprincipal": "main_contact", "maincontact": "main_contact",
    "interlocuteurprincipal": "main_contact",
    "attente": "waiting", "waiting": "waiting",
    "resolu": "resolved", "resolved": "resolved",
    "clos": "closed", "closed": "closed",
    "note": "note", "interne": "note",
    "case": "case",
    "licences": "licences", "licenses": "licences",
    "interlocuteurs": "contacts", "contacts": "contacts",
    "nom": "name", "name": "name",
}
# The fields a `Name : value` line at the top of the body may give.
BODY_FIELDS = ("client", "serial", "criticality", "module", "distribution", "priority", "main_contact")
# A body line `Interlocuteur :` (or `Contact principal :`) names the case's main contact, by
# address or name; `Contact :` too, with an address only (else it is text: "Contact : 04 72…").
# The subject tag `[INTERLOCUTEUR adresse]` does too; `[INTERLOCUTEUR AJOUT]` is a command.
COMMANDS = ("close", "info", "follow", "register", "contact", "licences", "contacts")
# Read from the body like BODY_FIELDS, but opening a case leaves their lines in its text:
# only the rule that uses one (the registration's name) takes it out.
OTHER_BODY_FIELDS = ("name",)
AGENT_COMMANDS = ("waiting", "resolved", "closed", "note")

CRITICALITY: dict[str, int] = {
    "1": 1, "bloquante": 1, "bloquant": 1, "critique": 1, "critical": 1, "blocking": 1,
    "2": 2, "haute": 2, "haut": 2, "majeure": 2, "majeur": 2, "high": 2, "major": 2,
    "3": 3, "normale": 3, "normal": 3, "moyenne": 3, "moyen": 3, "medium": 3,
    "4": 4, "basse": 4, "bas": 4, "mineure": 4, "mineur": 4, "low": 4, "minor": 4,
}

_TAG = re.compile(r"\[([^\[\]]{1,200})\]")
_PREFIX = re.compile(
    r"^\s*(?:(?:re|r[ée]f|ref|tr|fw|fwd|aw|wg|sv|vs|antw|rif|res)\.?\s*(?:\[\d+\]|\(\d+\))?\s*:\s*)+",
    re.IGNORECASE)
_FIELD_LINE = re.compile(r"^\s*([^:=\n]{1,40}?)\s*[:=]\s*(.*?)\s*$")
_LONGEST_FIELD_LINE = 500  # a longer line is text, not a field
_TOP_LINES = 1_000
_CASE_NUMBER = re.compile(r"^#?\s*(\d{1,12})$")
# The longest tag name, in words ("numéro de série", "niveau de criticité"); the case tag
# may be configured longer.
_NAME_WORDS = 8


_LEADING_NUMBER = re.compile(r"^(?:n\s*[°º]|no\.?(?=\s)|n\.)\s*")
_SMALL_WORDS = frozenset({"de", "du", "d", "of"})
_CACHED = 100  # characters of the longest name whose folding is kept


def normalise(name: str) -> str:
    """Fold a field name: no accents, case, spaces, '_', '-', '.', apostrophes, leading
    'N°' (or 'No', 'N.'), nor the small words 'de', 'du', 'of'.

    "N° de série", "No de serie", "Numéro de série" and "SERIE" all fold to a key of
    `NAMES`; an unknown name folds to a key that is not there.
    """
    return _folded(name) if len(name) <= _CACHED else _folded.__wrapped__(name)


@functools.lru_cache(maxsize=4096)  # the same few names, met in message after message
def _folded(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name)
    folded = "".join(c for c in folded if not unicodedata.combining(c)).lower().strip()
    folded = _LEADING_NUMBER.sub("", folded)
    words = re.split(r"[\s_\-.]+|(?<=\bd)['’]", folded)
    return "".join(w for w in words if w not in _SMALL_WORDS).replace("'", "").replace("’", "")


@dataclass(frozen=True)
class FieldLine:
    """A `Name : value` line at the top of the body whose name is a known field."""
    field: str
    value: str
    line: int  # its index among the text's lines


@dataclass
class Request:
    """What a message asks for, as written; the rules decide what it may do."""
    fields: dict[str, str] = field(default_factory=dict)  # client, serial, criticality, module, distribution…
    flags: set[str] = field(default_factory=set)            # priority and the commands present
    command_values: dict[str, str] = field(default_factory=dict)  # e.g. follow -> "CLOS"
    case_number: int | None = None
    title: str = ""
    unknown_tags: list[str] = field(default_factory=list)
    text: str = ""                                          # the new text, every line as written
    field_lines: list[FieldLine] = field(default_factory=list)

    def criticality(self) -> int | None:
        value = self.fields.get("criticality")
        return parse_criticality(value) if value is not None else None

    def body(self, used: Collection[str] = ()) -> str:
        """The text without the field lines of the fields in `used`: a rule removes only
        what it acted on, so a field it does not use stays in the customer's words."""
        drop = {f.line for f in self.field_lines if f.field in used}
        if not drop:
            return self.text.strip()
        last = max(drop)  # the field lines are at the top: the rest is not split
        lines = self.text.split("\n", last + 1)
        return "\n".join([line for i, line in enumerate(lines[: last + 1]) if i not in drop]
                         + lines[last + 1:]).strip()


def parse_criticality(value: str) -> int | None:
    key = normalise(value)
    return CRITICALITY.get(key)


@functools.lru_cache(maxsize=8)
def _names(case_tag: str) -> dict[str, str]:
    return {**NAMES, normalise(case_tag): "case"}


def _split_tag(content: str, case_tag: str) -> tuple[str, str] | None:
    """(field, value) for a recognised tag, or None."""
    names = _names(case_tag)
    m = re.match(r"^\s*([^:=]+?)\s*[:=]\s*(.*?)\s*$", content)
    if m and normalise(m.group(1)) in names:
        return names[normalise(m.group(1))], m.group(2)
    words = content.split()
    for cut in range(min(len(words), _NAME_WORDS), 0, -1):
        name = normalise(" ".join(words[:cut]))
        if name in names:
            return names[name], " ".join(words[cut:])
    return None


def parse_subject(subject: str, case_tag: str = "Dossier") -> Request:
    """Read every tag of a subject and the title left once tags and reply prefixes go."""
    request = Request()
    kept: list[str] = []
    pos = 0
    for m in _TAG.finditer(subject):
        split = _split_tag(m.group(1), case_tag)
        if split is None:
            request.unknown_tags.append(m.group(0))
            continue
        kept.append(subject[pos:m.start()])
        pos = m.end()
        _record(request, *split)
    kept.append(subject[pos:])
    title = " ".join("".join(kept).split())
    while True:
        stripped = _PREFIX.sub("", title).strip(" -:")
        if stripped == title:
            break
        title = stripped
    request.title = title
    return request


def _record(request: Request, name: str, value: str) -> None:
    value = value.strip()
    if name == "contact" and "@" in value:
        name = "main_contact"
    if name == "case":
        m = _CASE_NUMBER.match(value)
        if m and request.case_number is None:
            request.case_number = int(m.group(1))
    elif name in COMMANDS or name in AGENT_COMMANDS or name == "priority":
        request.flags.add(name)
        if value:
            request.command_values.setdefault(name, value)
    elif name not in request.fields:
        request.fields[name] = value


def read_body_fields(request: Request, text: str) -> None:
    """Read the `Name : value` lines of the body's first paragraph whose name is a known
    field; the subject keeps precedence. The text itself is kept whole in `request.text`:
    `Request.body` removes the lines a rule used, and nothing else."""
    request.text = text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    # The first paragraph ends at the first blank line; its first 1,000 lines are read.
    for index, line in enumerate(request.text.split("\n", _TOP_LINES)):
        if not line.strip():
            break  # the first blank line ends the top of the body
        m = _FIELD_LINE.match(line) if len(line) <= _LONGEST_FIELD_LINE else None
        key = normalise(m.group(1)) if m else ""
        name = NAMES.get(key)
        if m and name == "contact" and (key != "contact" or "@" in m.group(2)):
            name = "main_contact"
        if m is None or (name not in BODY_FIELDS and name not in OTHER_BODY_FIELDS):
            continue
        value = m.group(2)
        request.field_lines.append(FieldLine(name, value, index))
        if name == "priority":
            if normalise(value) in ("oui", "yes", "1", "true", ""):
                request.flags.add("priority")
        else:
            request.fields.setdefault(name, value)


def parse_request(subject: str, text: str, case_tag: str = "Dossier") -> Request:
    """The whole grammar: subject tags first, then fields at the top of the body."""
    request = parse_subject(subject, case_tag)
    read_body_fields(request, text)
    return request


def split_addresses(value: str) -> list[tuple[str, str]]:
    """`+a@x.fr, -b@y.fr; c@z.fr` -> [("+", "a@x.fr"), ("-", "b@y.fr"), ("+", "c@z.fr")]."""
    out = []
    for item in re.split(r"[,;\s]+", value):
        item = item.strip()
        if not item:
            continue
        sign = "+"
        if item[0] in "+-":
            sign, item = item[0], item[1:].strip()
        out.append((sign, item.strip("<>").lower()))
    return out
