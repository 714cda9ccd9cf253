"""Keep only what the author of a message wrote: drop quoted history and signature.

Pure, never raises, about 0.4 ms for a 2 KB body. The knowledge of how French,
English and German mail clients introduce a quote comes from the
`mail-parser-reply` library: its own clean-up of the text and its header and
signature patterns, compiled once here. Its `read()` is not used: it runs
findall() over the whole quoted history, splits on an inner group of its French
pattern (a text that opens with "Le ... a écrit :" gives the reply "Le"), and
deletes "disclaimers" anywhere in the text, including a customer's own sentence
such as "Warning: the mail server refuses ...". What the library misses is added
below, each addition with its reason.
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

# Lines that introduce a forwarded message (Gmail, Thunderbird, Apple Mail).
_FORWARD = re.compile(
    r"^(?:-{2,} ?(?:Forwarded message|Message transf\u00e9r\u00e9|Weitergeleitete Nachricht) ?-{2,}"
    r"|(?:Begin forwarded message|D\u00e9but du message r\u00e9exp\u00e9di\u00e9"
    r"|Anfang der weitergeleiteten Nachricht) ?:)$",
    re.MULTILINE | re.IGNORECASE,
)
_BLANK_RUN = re.compile(r"\n{3,}")
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
    stripped of surrounding blanks, as the library does), followed by any
    message they forward. A body that is nothing but a quote gives "".
    Never raises.
    """
    if not text.strip():
        return ""
    text = text.replace("\r\n", "\n").replace("\xa0", " ").replace("\u202f", " ")
    try:
        # The library's clean-up: line endings, blanks around lines, Outlook rules.
        normalised = EmailMessage(text=text, languages=list(_LANGUAGES)).text
        own, forwarded = _split_forward(normalised)
        kept = _BLANK_RUN.sub("\n\n", "\n\n".join(filter(None, (_own_words(own), forwarded))))
    except Exception:  # a third-party heuristic must never cost us the message
        return text.strip()
    # Stripping must not swallow a message silently: if nothing is left, keep
    # whatever is not a quote or a reply header.
    return kept or _drop_quote_lines(_HEADER.sub("", normalised))


def _split_forward(text: str) -> tuple[str, str]:
    """Split off a forwarded message: (the author's part, the forward or "").

    A forward is content the author chose to send, not history: the library
    would take its "From: / Date:" block for a reply header and drop it. Only a
    forward that comes before any reply header counts (not one inside a quote).
    """
    forward = _FORWARD.search(text)
    if forward is None:
        return text, ""
    header = _HEADER.search(text, 0, forward.start())
    if header is not None:
        return text, ""
    return text[: forward.start()], text[forward.start() :].strip()


def _own_words(text: str) -> str:
    """The first reply of `text` without its signature or a trailing quote."""
    reply = _first_reply(text)
    return _drop_trailing_quote(reply[: _signature_start(reply)].strip())


def _first_reply(text: str) -> str:
    """The text before the first reply header (the library's `replies[0]`).

    When the text opens with a header (a reply that only quotes), the first
    reply is what follows that header, up to the next one.
    """
    header = _HEADER.search(text)
    if header is None:
        return text.strip()
    if text[: header.start()].strip():
        return text[: header.start()].strip()
    following = _HEADER.search(text, header.end())
    return text[header.end() : following.start() if following else len(text)].strip()


def _signature_start(text: str) -> int:
    """Where the signature at the end of `text` starts; len(text) if there is none.

    The library's pattern runs to the end of the text; a match that does not
    start a signature is skipped and the search goes on from its next line.
    """
    position = 0
    while match := _SIGNATURE.search(text, position):
        first_char = len(text) - len(text[match.start() :].lstrip())
        if _starts_signature(text, first_char):
            return match.start()
        position = text.find("\n", first_char)
        if position < 0:
            break
    return len(text)


def _starts_signature(text: str, start: int) -> bool:
    """True when the line at `start` closes the message rather than says something.

    A delimiter ("--") always does. A closing formula must be a short line of its
    own, not a sentence that goes on ("Thanks, but it still fails") nor the
    wrapped end of the sentence above ("... je vous souhaite une\nbonne journée.").
    """
    end = text.find("\n", start)
    line = text[start : end if end >= 0 else len(text)].lstrip("> ").strip()
    if not line or line.startswith(("--", "__")):
        return True
    opens_line = line[0].isupper() or start == 0 or text[:start].endswith("\n\n")
    return opens_line and len(line) <= _LONGEST_CLOSING_LINE and not _SENTENCE_GOES_ON.search(line)


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
