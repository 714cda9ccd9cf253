"""Turn an HTML mail body into plain readable text.

Pure: a string in, a string out, never raises on odd markup. Used by
`gateway.pipeline.parse` for messages that carry no text/plain part
(Outlook, webmail editors). Linear: no pattern here can try a long stretch of
markup once per character (each repeat is bounded, possessive or anchored),
so hostile markup costs what its length costs; `parse` bounds that length.
"""

from __future__ import annotations

import html
import re

import html2text

# Markup that carries no readable text: Outlook puts kilobytes of CSS in <style>,
# conditional comments (<!--[if gte mso 9]><xml>...<![endif]-->) and VML in
# comments, and the <head> holds only the title and meta tags. Unclosed, a
# comment, style or script runs to the end (as in a browser); a head ends at
# <body> at the latest, so that a missing </head> cannot hide the message.
_INVISIBLE = re.compile(
    r"<!--.*?(?:-->|\Z)|<(style|script|title)\b[^>]{0,2000}>.*?(?:</\1\s*>|\Z)"
    r"|<!\[[^\]>]{0,60}\]>|(?P<head><head\b[^>]{0,2000}>)",
    re.IGNORECASE | re.DOTALL,
)
_HEAD_END = re.compile(r"</head\s*>|<body\b", re.IGNORECASE)
# html2text writes nothing between <head>, <style> or <script> and their end tag,
# and counts: a stray end tag or an unclosed <head> would silence the rest of the
# message. Those left after the clean-up above go, with Outlook's <o:p> tags
# (paragraphs that only hold &nbsp; spacers).
_SILENCING_TAGS = re.compile(r"</?(?:head|style|script|o:p)\b[^>]{0,2000}>", re.IGNORECASE)
# html2text glues adjacent table cells together when tables are ignored.
_CELL_END = re.compile(r"</t[dh]\s*>", re.IGNORECASE)
# A link whose visible text is not its address: the address is worth keeping, but
# as "text (url)" rather than the Markdown "[text](url)" html2text would write.
# Its text stops at the next <a> or </a>, so that unclosed links stay cheap; the address is
# taken whole (possessive), so that a long one is not tried again at every length.
_LINK = re.compile(
    r"""<a\s[^<>]{0,2000}?href\s*=\s*["']?(https?://[^"'\s<>]++)[^<>]{0,2000}>((?:[^<]|<(?!/?a\b)){0,2000}?)</a\s*>""",
    re.IGNORECASE | re.DOTALL,
)
# An address written between angle brackets ("<https://…>", as in plain text) is text, not
# a tag: html2text would drop it, and with it a message that is only a link.
_AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^<>\s\"']++)>", re.IGNORECASE)
_TAG = re.compile(r"<[^<>]{0,2000}>")
# A tag of more than 1,000 characters (an image inlined as a data: URL, thousands of
# attributes) keeps its name only: the parser reads attributes one by one.
_LONG_TAG = re.compile(r"<(/?[a-zA-Z][\w:-]{0,30})[^<>]{1000,}+>")
# A "<" that no ">" closes before the next "<" starts no tag: it is text. Left as it is,
# Python's HTML parser (3.11) goes over the rest of the markup again for each one.
_OPEN_BRACKET = re.compile(r"<(?=[^<>]*+(?:<|\Z))")
# Such text brackets cross html2text as private-use characters (as entities, each would
# cost it an event) and are put back in the text it returns.
_TEXT_LT, _TEXT_GT = "\ue000", "\ue001"
# html2text escapes what Markdown would read as markup ("1\. ", "\- ", "\\*");
# in plain text those backslashes are noise. Undone in this order: list markers,
# then doubled backslashes.
_ESCAPED_LIST_MARKER = re.compile(r"(?<=\d)\\(?=\.\s)|\\(?=[-+](?:\s|-))")
_ESCAPED_BACKSLASH = re.compile(r"\\(?=\\[`*_{}\[\]()#+\-.!])")
_HEADING = re.compile(r"^#{1,6} ", re.MULTILINE)
_TRAILING_SPACE = re.compile(r"(?<![ \t])[ \t]++$", re.MULTILINE)
_BLANK_RUN = re.compile(r"\n{3,}")


def html_to_text(markup: str) -> str:
    """Return the readable text of an HTML document.

    Drops styles, scripts, the head, comments and Office-only tags; keeps link
    addresses as "text (url)"; no Markdown emphasis, images or tables; at most
    one blank line in a row. Returns "" for markup without text.
    """
    markup = _visible(markup)
    markup = _OPEN_BRACKET.sub(_TEXT_LT, _AUTOLINK.sub(rf"{_TEXT_LT}\1{_TEXT_GT}", markup))
    markup = _SILENCING_TAGS.sub("", markup)
    markup = _CELL_END.sub(lambda m: " " + m.group(0), markup)
    markup = _LONG_TAG.sub(r"<\1>", _LINK.sub(_spell_out_link, markup))
    try:
        text = _converter().handle(markup)
    except Exception:  # html2text is a hand-written parser: a crash must not lose the body
        text = html.unescape(_TAG.sub(" ", markup))
    return _tidy(text).replace(_TEXT_LT, "<").replace(_TEXT_GT, ">")


def _visible(markup: str) -> str:
    """The markup without what `_INVISIBLE` matches, first match first. A head ends at
    </head> or, at the latest, at <body>; one with neither after it stays. The end found
    for one head serves the heads before it, so many unclosed heads cost one search."""
    pieces, position = [], 0
    head_end: re.Match[str] | None = None
    no_end_after = len(markup) + 1
    while found := _INVISIBLE.search(markup, position):
        pieces.append(markup[position : found.start()])
        position = found.end()
        if found.lastgroup != "head":
            continue
        if head_end is None or head_end.start() < found.end():
            head_end = _HEAD_END.search(markup, found.end()) if found.end() < no_end_after else None
            no_end_after = found.end() if head_end is None else no_end_after
        if head_end is None:
            pieces.append(found.group())  # no end: the text after it is the message
        else:
            position = head_end.end() if head_end.group().startswith("</") else head_end.start()
    return "".join(pieces) + markup[position:]


def _converter() -> html2text.HTML2Text:
    """A fresh html2text converter (it keeps state, so one per document)."""
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_links = True
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.ignore_tables = True
    converter.unicode_snob = True  # keep "’", "é" and "€" instead of ASCII stand-ins
    return converter


def _spell_out_link(match: re.Match[str]) -> str:
    """Write a link as "text (url)", or just its text when that already is the url."""
    url, inner = match.group(1), match.group(2)
    visible = html.unescape(_TAG.sub("", inner)).strip()
    bare = html.unescape(url).split("://", 1)[-1].rstrip("/")
    if not visible or visible.split("://", 1)[-1].rstrip("/") in bare:
        return inner
    return f"{inner} ({url})"


def _tidy(text: str) -> str:
    """Plain-text clean-up of html2text's output."""
    text = _ESCAPED_LIST_MARKER.sub("", text)
    text = _ESCAPED_BACKSLASH.sub("", text)
    text = text.replace("\xa0", " ").replace("\u200b", "")
    text = _HEADING.sub("", text)
    text = _TRAILING_SPACE.sub("", text)
    return _BLANK_RUN.sub("\n\n", text).strip()
