"""Keep only what the author of a message wrote: drop quoted history and signature.

Pure and fast (about a tenth of a millisecond for a 2 KB body). Built on the
`mail-parser-reply` library, which knows how French, English and German mail
clients introduce a quote; this module reuses its patterns with a few repairs and
additions, each explained where it is made.
"""

from __future__ import annotations

import re

from mailparser_reply.parser import EmailMessage

_LANGUAGES = ("fr", "en", "de")

# Common separators the library misses (it only knows "-----Original Message-----").
_EXTRA_HEADERS = "|".join((
    # Outlook and Thunderbird in French and German, and English variants.
    r"^-{2,} ?(?:Message d['\u2019]origine|Message original|Original Message"
    r"|Urspr\u00fcngliche Nachricht|Originalnachricht) ?-{2,}$",
    # Outlook "De: / Envoyé:" without the space before the colon (Mac, web).
    r"^[* ]*De ?:[^\n]*\n[* ]*(?:Envoy\u00e9|Date) ?:[^\n]*$",
    # Gmail wraps a long French attribution over two lines.
    r"^(?:> ?)*Le\s[^\n]{0,200}(?:\sa\n(?:> ?)*|\n(?:> ?)*[^\n]{0,200}\sa )\u00e9crit ?:$",
))

_ATTRIBUTION_END = re.compile(r"(?:wrote|\u00e9crit|schrieb)\s*:$", re.IGNORECASE)
# A closing formula that goes on as a sentence ("Thanks, but it still fails") is
# the author's text, not the start of a signature.
_SENTENCE_GOES_ON = re.compile(r"[,;:]\s*[a-z\u00e0-\u00ff]|:$")
_LONGEST_CLOSING_LINE = 60


def _library_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """Compile the library's reply-header and signature patterns once, made faster.

    The library compiles them again for every message. Every alternative of both
    can only start at a line start or a newline (the library strips every line
    first); saying so up front lets the regex engine skip all other positions,
    which makes the searches three to four times faster. `(.|\\s)*`, which
    captures the rest of the text one character at a time, becomes `[\\s\\S]*`.
    Hyphen lists ("- step one") are not taken for signatures.
    """
    probe = EmailMessage(text="", languages=list(_LANGUAGES), keep_hyphen_lists=True)
    header = probe.HEADER_REGEX.pattern
    signature = probe.SIGNATURE_REGEX.pattern.replace(r"(.|\s)*", r"[\s\S]*")
    flags = re.MULTILINE | re.IGNORECASE
    return (
        re.compile(rf"(?=^|\n)(?:{header}|{_EXTRA_HEADERS})", flags),
        re.compile(rf"(?=^|\n)(?:{signature})", flags),
    )


_HEADER, _SIGNATURE = _library_patterns()


def strip_reply(text: str) -> str:
    """Return the new part of a message body: no quoted history, no signature.

    Takes the whole body as text; returns the author's own words (each line
    stripped of surrounding blanks, as the library does). A body that is nothing
    but a quote gives "". Never raises.
    """
    if not text.strip():
        return ""
    text = text.replace("\r\n", "\n").replace("\xa0", " ").replace("\u202f", " ")
    try:
        # The library's clean-up: line endings, blanks around lines, Outlook rules.
        normalised = EmailMessage(text=text, languages=list(_LANGUAGES)).text
        reply = _first_reply(normalised)
        reply = reply.replace(_signature(reply), "").strip() if reply else ""
        reply = _drop_trailing_quote(reply)
    except Exception:  # a third-party heuristic must never cost us the message
        return text.strip()
    # Stripping must not swallow a message silently: if nothing is left, keep
    # whatever is not a quote or a reply header.
    return reply or _drop_quote_lines(_HEADER.sub("", normalised))


def _first_reply(text: str) -> str:
    """The text before the first reply header (the library's `replies[0]`).

    When the text opens with a header (a forward without comment), the first
    reply is what follows that header, up to the next one.
    """
    header = _HEADER.search(text)
    if header is None:
        return text.strip()
    if text[: header.start()].strip():
        return text[: header.start()].strip()
    following = _HEADER.search(text, header.end())
    return text[header.end() : following.start() if following else len(text)].strip()


def _signature(text: str) -> str:
    """The signature at the end of `text` (from its first line to the end), or ""."""
    position = 0
    while match := _SIGNATURE.search(text, position):
        if _starts_signature(match.group()):
            return match.group()
        position = text.find("\n", match.start() + len(match.group()) - len(match.group().lstrip()))
        if position < 0:
            break
    return ""


def _starts_signature(candidate: str) -> bool:
    """True when the first line of `candidate` closes a message rather than saying something."""
    first = candidate.strip().split("\n", 1)[0].lstrip("> ").strip()
    if not first or first.startswith(("--", "__")):
        return True
    return len(first) <= _LONGEST_CLOSING_LINE and not _SENTENCE_GOES_ON.search(first)


def _drop_trailing_quote(body: str) -> str:
    """Remove a block of ">" lines that ends the body, with an attribution line above it.

    The library only splits on a recognised attribution; a bare quote (or one
    introduced by "X wrote:") left at the bottom is history all the same. Quotes
    followed by answers (inline replies) are kept.
    """
    lines = body.split("\n")
    end = len(lines)
    while end and (lines[end - 1].startswith(">") or not lines[end - 1].strip()):
        end -= 1
    if end == len(lines) or not any(line.startswith(">") for line in lines[end:]):
        return body
    if end and _ATTRIBUTION_END.search(lines[end - 1]):
        end -= 1
    return "\n".join(lines[:end]).strip()


def _drop_quote_lines(text: str) -> str:
    """The text without any line that starts with ">"."""
    lines = (line for line in text.split("\n") if not line.lstrip().startswith(">"))
    return "\n".join(lines).strip()
