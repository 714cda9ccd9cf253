"""Hostile input costs bounded time: parse, the grammar and the whole pipeline finish on any
message within a bound and end with an outcome, and what was read only in part is said in
the outcome's reasons (`gateway inbound list`).

Times are the CPU time of the test's thread (`time.thread_time`), so that other work on
the machine does not make a bounded message look slow. The bounds are twice what the
slowest message takes on this project's slower machine (25 MB of short lines: about a
second of parsing there, 0.7 s on a faster one): wide enough for a slow machine, far too
narrow for work that grows faster than the message.
"""
from __future__ import annotations

import json
import string
import time
from collections.abc import Callable
from typing import Any

import pytest
from harness import CLAIRE, SUPPORT
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from test_cli import Cli, write_config

from gateway import intake
from gateway.config import Settings
from gateway.db import session_scope
from gateway.models import Disposition, InboundMessage
from gateway.pipeline import run
from gateway.pipeline.grammar import parse_request
from gateway.pipeline.parse import parse

PARSE_SECONDS = 2.0

HEAD = f"From: {CLAIRE}\r\nTo: {SUPPORT}\r\nMessage-ID: <{{n}}@hostile.example>\r\nMIME-Version: 1.0\r\n"
OPEN = "[CLIENT C10042] [SERIE SN-7F3A-2291] [CRITICITE haute]"
URL = "https://example.com/" + "a" * 100_000


def message(subject: str, body: str, headers: str = "", ctype: str = "text/plain; charset=utf-8",
            n: object = None) -> bytes:
    n = n if n is not None else time.perf_counter_ns()
    return (HEAD.format(n=n) + f"Subject: {subject}\r\nContent-Type: {ctype}\r\n{headers}\r\n{body}").encode(
        "utf-8", "surrogateescape")


def multipart(subject: str, parts: list[str]) -> bytes:
    return message(subject, "".join(f"--b\r\n{p}\r\n" for p in parts) + "--b--\r\n",
                   ctype="multipart/mixed; boundary=b")


def nested(depth: int) -> bytes:
    body = "".join(f"--n{i}\r\nContent-Type: multipart/mixed; boundary=n{i + 1}\r\n\r\n" for i in range(depth))
    body += f"--n{depth}\r\nContent-Type: text/plain\r\n\r\nau fond\r\n--n{depth}--\r\n"
    body += "".join(f"--n{i}--\r\n" for i in reversed(range(depth)))
    return message(f"{OPEN} Imbrication", body, ctype="multipart/mixed; boundary=n0")


HOSTILE: dict[str, Callable[[], bytes]] = {
    "20 MB subject of bracketed words": lambda: message(
        " ".join(f"[{string.ascii_lowercase[i % 26]}]" for i in range(5_000_000)), "Bonjour\r\n"),
    "100,000 tags": lambda: message(" ".join(f"[CLIENT C{i}]" for i in range(100_000)) + " Titre", "Bonjour\r\n"),
    "one tag of 100,000 words": lambda: message("[" + " ".join("mot" for _ in range(100_000)) + "] x", "Bonjour\r\n"),
    "10,000 MIME parts": lambda: multipart(f"{OPEN} Parties", [
        f"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=f{i}.bin\r\n\r\nxx"
        for i in range(10_000)]),
    "a line of 100 kB": lambda: message("[Dossier #1] Lien", URL + "\r\n"),
    "an HTML link of 100 kB": lambda: message("[Dossier #1] Lien", f'<a href="{URL}">{URL}</a>',
                                              ctype="text/html; charset=utf-8"),
    "100 levels of nesting": lambda: nested(100),
    "1,000,000 header lines": lambda: message("x", "Bonjour\r\n", "".join(f"X-H{i}: v\r\n" for i in range(1_000_000))),
    "a Cc of 100,000 addresses": lambda: message("x", "Bonjour\r\n", "Cc: " + ", ".join(
        f"p{i}@x.example" for i in range(100_000)) + "\r\n"),
    "25 MB of short lines": lambda: multipart("x", ["Content-Type: text/plain\r\n\r\n" + "a\r\n" * 8_000_000]),
    "1 MB of unclosed HTML tags": lambda: message("x", "<a " * 330_000, ctype="text/html"),
    "a Content-Type of 100,000 parameters": lambda: message("x", "Bonjour\r\n", ctype="text/plain" + "; a=1" * 100_000),
    "a field line of 1 MB of blanks": lambda: message("[INTERLOCUTEUR AJOUT]", "Email : x" + " " * 1_000_000 + "y\r\n"),
}


def thread_seconds(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.thread_time()
    result = call()
    return result, time.thread_time() - started


@pytest.mark.parametrize("name", HOSTILE)
def test_parse_and_the_grammar_take_a_bounded_time(name: str) -> None:
    raw = HOSTILE[name]()
    parsed, seconds = thread_seconds(lambda: parse(raw))
    _, grammar_seconds = thread_seconds(lambda: parse_request(parsed.subject, parsed.new_text))
    assert seconds + grammar_seconds < PARSE_SECONDS, f"{name}: parse {seconds:.2f} s, grammar {grammar_seconds:.2f} s"


def deliver(engine: Engine, settings: Settings, raw: bytes) -> tuple[str, list[str], float]:
    """Store then process `raw` as a door does: (outcome, reasons, CPU seconds to process)."""
    stored = intake.store(engine, raw, "smtp", CLAIRE, [SUPPORT])
    _, seconds = thread_seconds(lambda: run.process(engine, settings, stored.id))
    with session_scope(engine) as session:
        row = session.get(InboundMessage, stored.id)
        return row.outcome, list(row.reasons), seconds


@pytest.mark.parametrize("name", ["20 MB subject of bracketed words", "10,000 MIME parts", "100 levels of nesting",
                                  "an HTML link of 100 kB", "a line of 100 kB", "a Cc of 100,000 addresses"])
def test_the_pipeline_ends_each_hostile_message_with_an_outcome_within_a_bound(loaded, settings, name) -> None:
    deliver(loaded, settings, message(f"{OPEN} Dossier de départ", "Bonjour\r\n"))  # case 1, for the replies
    outcome, reasons, seconds = deliver(loaded, settings, HOSTILE[name]())
    assert outcome not in (Disposition.PENDING, Disposition.HELD), reasons
    assert seconds < 2.0, f"{name}: {seconds:.2f} s"


def test_what_was_read_in_part_is_in_the_reasons_of_inbound_list(loaded, settings, tmp_path) -> None:
    deliver(loaded, settings, HOSTILE["10,000 MIME parts"]())
    deliver(loaded, settings, HOSTILE["100 levels of nesting"]())
    deliver(loaded, settings, message("[" * 3000 + "x" * 5000, "Bonjour\r\n"))
    cli = Cli(write_config(tmp_path / "gateway.toml", settings.database.url))
    listed = "\n".join(r for m in json.loads(cli.ok("inbound", "list", "--json").output) for r in m["reasons"])
    assert "10,001 MIME parts: the first 500 read; the raw message keeps all" in listed
    assert "MIME parts nested deeper than 60 levels: not read; the raw message keeps them" in listed
    assert "subject of 8,000 characters: the first 1,000 read; the raw message keeps all" in listed


# -- property: any message, built to hurt --------------------------------------------------

CHARSETS = ["utf-8", "iso-8859-1", "windows-1252", "utf-16", "x-unknown", 'x"\x00y', "", "utf-7", "gb2312"]
ODD = st.lists(st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(
    ["\x00", "\r", "\n", "[", "]", ":", "=?utf-8?B?", "?=", "<", ">", "&", "\ufeff", "\u202e"]),
    max_size=60).map("".join)


@st.composite
def subjects(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["odd", "brackets", "tags", "prefixes", "encoded", "tag words"]))
    n = draw(st.integers(1, 60_000))
    if kind == "brackets":
        return " ".join(f"[{string.ascii_lowercase[i % 26]}]" for i in range(n))
    if kind == "tags":
        return " ".join(f"[SERIE SN-{i}]" for i in range(n // 10 + 1)) + " x"
    if kind == "prefixes":
        return "RE: " * n + "x"
    if kind == "encoded":
        return " ".join(f"=?{draw(st.sampled_from(CHARSETS))}?B?w6k=?=" for _ in range(n // 20 + 1))
    if kind == "tag words":
        return "[" + " ".join("de" for _ in range(n // 3 + 1)) + "] x"
    return draw(ODD).replace("\r", " ").replace("\n", " ")


@st.composite
def texts(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["odd", "long line", "many lines", "quotes", "field lines", "blanks"]))
    n = draw(st.integers(1, 300_000))
    if kind == "long line":
        return "https://example.com/" + "a" * n
    if kind == "many lines":
        return "ligne\r\n" * (n // 4)
    if kind == "quotes":
        return "Réponse\r\n" + "".join(">" * (i % 40) + " citation\r\n" for i in range(n // 30))
    if kind == "field lines":
        return "Client : " + "C" * n + "\r\nCriticité :" + " " * n + "haute\r\n"
    if kind == "blanks":
        return " " * n + "x"
    return draw(ODD)


@st.composite
def leaves(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["text", "html", "file", "base64 text"]))
    charset = draw(st.sampled_from(CHARSETS))
    if kind == "html":
        n = draw(st.integers(1, 50_000))
        markup = draw(st.sampled_from(["<a ", "<div>", "<!--", "<![", "&amp;", "<head>", "<li>", '<a href="https://x/">']))
        return f"Content-Type: text/html; charset=\"{charset}\"\r\n\r\n{markup * n}"
    if kind == "file":
        name = draw(ODD).replace("\r", "").replace("\n", "")
        return f'Content-Type: application/x\x00y\r\nContent-Disposition: attachment; filename="{name}"\r\n\r\ndata'
    if kind == "base64 text":
        return f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: base64\r\n\r\n{draw(ODD)}"
    return f"Content-Type: text/plain; charset=\"{charset}\"\r\n\r\n{draw(texts())}"


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, str]:
    """(Content-Type, body) of a MIME structure: one part, many parts, a deep chain, a tree."""
    kind = draw(st.sampled_from(["one", "many", "deep", "tree"]))
    if kind == "one":
        leaf = draw(leaves())
        head, _, body = leaf.partition("\r\n\r\n")
        return head.removeprefix("Content-Type: "), body
    if kind == "many":
        leaf = draw(leaves())
        return "multipart/mixed; boundary=b", f"--b\r\n{leaf}\r\n" * draw(st.integers(1, 3_000)) + "--b--\r\n"
    if kind == "deep":
        depth = draw(st.integers(1, 150))
        body = "".join(f"--d{i}\r\nContent-Type: multipart/alternative; boundary=d{i + 1}\r\n\r\n" for i in range(depth))
        body += f"--d{depth}\r\n{draw(leaves())}\r\n--d{depth}--\r\n" + "".join(f"--d{i}--\r\n" for i in reversed(range(depth)))
        return "multipart/mixed; boundary=d0", body
    parts = draw(st.lists(leaves(), min_size=1, max_size=5))
    inner = "".join(f"--i\r\n{p}\r\n" for p in parts) + "--i--\r\n"
    rfc822 = f"--t\r\nContent-Type: message/rfc822\r\n\r\nFrom: a@b.c\r\nSubject: {draw(subjects())[:500]}\r\n\r\nx\r\n"
    return "multipart/mixed; boundary=t", (f"--t\r\nContent-Type: multipart/related; boundary=i\r\n\r\n{inner}\r\n"
                                           + draw(st.sampled_from(["", rfc822])) + "--t--\r\n")


@st.composite
def header_fields(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["none", "many lines", "references", "cc", "precedence", "odd"]))
    n = draw(st.integers(1, 20_000))
    if kind == "many lines":
        return "".join(f"Received: from h{i}\r\n" for i in range(n))
    if kind == "references":
        return "References: " + " ".join(f"<r{i}@x>" for i in range(n)) + "\r\n"
    if kind == "cc":
        return "Cc: " + ", ".join(f"p{i}@x.example" for i in range(n)) + "\r\n"
    if kind == "precedence":
        return "Precedence: normal\r\nPrecedence: bulk\r\nX-Auto-Response-Suppress: OOF\r\n"
    if kind == "odd":
        return f"X-Odd: {draw(ODD)}\r\n".replace("\n", "").replace("\r", "") + "\r\n"
    return ""


@st.composite
def hostile_messages(draw: st.DrawFn) -> bytes:
    ctype, body = draw(bodies())
    subject = draw(subjects())
    message_id = draw(st.sampled_from(["<{n}@x.example>", "<{n}\x00@x.example>", "<" + "m" * 400 + "{n}@x>", ""]))
    sender = draw(st.sampled_from([CLAIRE, "x" * 400 + "@x.example", "", "a@b, c@d", "=?utf-8?B?w6k=?= <e@x.example>"]))
    n = time.perf_counter_ns()
    head = (f"From: {sender}\r\nTo: {SUPPORT}\r\nMessage-ID: {message_id.format(n=n)}\r\n"
            f"Subject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: {ctype}\r\n{draw(header_fields())}")
    return (head + "\r\n" + body).encode("utf-8", "surrogateescape")


@hypothesis_settings(max_examples=40, deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                            HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(raw=hostile_messages())
def test_any_message_is_parsed_and_processed_within_a_bound(loaded, settings, raw) -> None:
    parsed, seconds = thread_seconds(lambda: parse(raw))
    _, grammar_seconds = thread_seconds(lambda: parse_request(parsed.subject, parsed.new_text))
    assert seconds + grammar_seconds < PARSE_SECONDS, f"parse {seconds:.2f} s, grammar {grammar_seconds:.2f} s"
    outcome, reasons, process_seconds = deliver(loaded, settings, raw)
    assert outcome not in (Disposition.PENDING, Disposition.HELD), reasons
    assert process_seconds < 2.0, f"process {process_seconds:.2f} s"
