"""One Message-ID per message: intake keys a message with the id the parser gives it, so
that a second delivery is recognised by the same id its replies are threaded by, whatever
its header looks like (a bare id without angle brackets, a byte order mark, a line that is
no field). Both read it with `gateway.raw.message_id`."""
from __future__ import annotations

from harness import CLAIRE, SUPPORT
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import select
from test_hostile_fields import OPEN, inbound, raw_mail
from test_rules import deliver

from gateway import intake
from gateway.db import session_scope
from gateway.models import InboundMessage
from gateway.pipeline.parse import parse

BARE = "20261130.42.bare@client.example"
SECOND_MX = b"Received: from mx2.example by gw; Mon, 30 Nov 2026 10:00:02 +0100\r\n"


def first_inbound(engine) -> InboundMessage:
    with session_scope(engine) as session:
        return session.scalars(select(InboundMessage).order_by(InboundMessage.id).limit(1)).one()


def test_a_bare_message_id_is_one_id_for_intake_and_parse_and_its_copy_is_a_duplicate(loaded, settings) -> None:
    raw = raw_mail(OPEN, message_id=BARE)
    outcome, reasons, number = deliver(loaded, settings, raw)
    assert outcome == "created", reasons
    assert first_inbound(loaded).message_id == parse(raw).message_id == f"<{BARE}>"
    # The same message by a second MX host: recognised by its id and content.
    again = deliver(loaded, settings, SECOND_MX + raw)
    assert again[:2] == ("ignored", [f"duplicate of message {first_inbound(loaded).id}"])
    # A reply names the id between angle brackets, as mail clients write it.
    reply = raw_mail("RE: Factures impossibles", "Une précision.\r\n", message_id="<r@client.example>",
                     headers=f"In-Reply-To: <{BARE}>\r\n")
    assert deliver(loaded, settings, reply)[::2] == ("appended", number)


def test_a_byte_order_mark_hides_the_message_id_from_neither(loaded) -> None:
    raw = (f"\ufeffMessage-ID: <bom@client.example>\r\nFrom: {CLAIRE}\r\nTo: {SUPPORT}\r\n"
           f"Subject: {OPEN}\r\n\r\nBonjour\r\n").encode()
    stored = intake.store(loaded, raw, "pipe")
    assert inbound(loaded, stored.id).message_id == parse(raw).message_id == "<bom@client.example>"


def test_a_message_id_after_a_line_that_is_no_field_is_one_id(loaded) -> None:
    raw = raw_mail(OPEN, message_id="<after@client.example>").replace(b"Message-ID", b"not a field\r\nMessage-ID", 1)
    stored = intake.store(loaded, raw, "pipe")
    assert inbound(loaded, stored.id).message_id == parse(raw).message_id == "<after@client.example>"
    assert intake.store(loaded, SECOND_MX + raw, "pipe").duplicate


_LINES = st.sampled_from([
    b"From: claire@client.example", b"Subject: x", b"not a field", b"Message-ID: <a@b.example>",
    b"Message-ID: bare.token@b.example", b"Message-ID:\r\n <folded@b.example>", b"Message-ID: <\xc3\xa9@b>",
    b"Message-ID : <spaced@b.example>", b"message-id:<lower@b.example>", b"\tcontinued", b"\xef\xbb\xbfX: y",
    b"Message-ID: " + b"m" * 300, b"Message-ID: <a\x00b@c>", b"", b"Received: from h",
])


@hypothesis_settings(max_examples=200, deadline=None, derandomize=True, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bom=st.booleans(), lines=st.lists(_LINES, max_size=8), ends=st.sampled_from([b"\r\n", b"\n"]))
def test_intake_and_parse_read_the_same_message_id_from_any_header(engine, bom, lines, ends) -> None:
    raw = (b"\xef\xbb\xbf" if bom else b"") + ends.join(lines) + ends + ends + b"Bonjour" + ends
    stored = intake.store(engine, raw, "pipe")
    assert inbound(engine, stored.id).message_id == parse(raw).message_id


def _first_blank_line(raw: bytes) -> tuple[int, int]:
    """Where the header block ends, by its definition: the first of an LF LF or an LF CR LF,
    the CR before it left with the header's end."""
    found = []
    for blank in (b"\n\n", b"\n\r\n"):
        at = raw.find(blank)
        if at >= 0:
            found.append((at - 1 if at and raw[at - 1] == 13 else at, at + len(blank)))
    return min(found) if found else (len(raw), len(raw))


@hypothesis_settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(raw=st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b": ", b"\n\r\n", b"\n\n"]),
                    max_size=16).map(b"".join))
def test_the_header_block_ends_at_the_first_blank_line_however_lines_end(raw) -> None:
    from gateway.raw import header_end
    assert header_end(raw) == _first_blank_line(raw)
