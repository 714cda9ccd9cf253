"""The content key of a message is hashed a chunk at a time (a 25 MB message is not copied
to be hashed) and says exactly what hashing the whole body, line ends as LF and trailing
whitespace removed, would say: wherever the chunks fall."""
from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import keys


@settings(max_examples=300)
@given(body=st.binary().map(lambda b: bytes(b"ab\r\n \t"[x % 6] for x in b)), start=st.integers(0, 40),
       chunk=st.integers(1, 9))
def test_the_body_is_hashed_as_a_whole_would_be(body: bytes, start: int, chunk: int) -> None:
    start = min(start, len(body))
    whole = hashlib.sha256(body[start:].replace(b"\r\n", b"\n").rstrip()).hexdigest()
    saved, keys._CHUNK = keys._CHUNK, chunk
    try:
        chunked = hashlib.sha256()
        keys.update_body(chunked, body, start)
    finally:
        keys._CHUNK = saved
    assert chunked.hexdigest() == whole


def test_a_big_message_has_the_key_of_its_content() -> None:
    body = b"x" * (3 << 20) + b"\r\n" * 1000 + b"end \r\n\r\n"
    raw = b"From: a@b.example\r\nSubject: s\r\n\r\n" + body
    same = b"From: a@b.example\nSubject: s\n\n" + body.replace(b"\r\n", b"\n")
    assert keys.content_key(raw) == keys.content_key(same)
