"""DATA for the SMTP and LMTP door, the message gathered in one buffer.

aiosmtpd 1.4 keeps each line of a message as an object of its own (a 78-byte line of a
base64 file costs about 150 bytes), then joins them: a 25 MB message cost the door about
100 MB. `LeanData.smtp_DATA` is aiosmtpd's own, step for step (the same answers, limits
and states, dot-stuffing undone the same way), but reads the message in chunks and appends
their lines to one `bytearray`, which the handler receives as the message
(`envelope.original_content`). `tests/test_smtp_data.py` holds aiosmtpd's own reader as the
reference.

The address of MAIL FROM and RCPT TO is read the same way: aiosmtpd parses it with the
e-mail package's header parser (and defines a class at each call), a seventh of the door's
processor under load; `LeanData._getaddr` reads the form nearly every MTA sends
(`<local@domain>`, both dot-atoms of ASCII characters) with one regular expression and
gives anything else to aiosmtpd's (`tests/test_smtp_data.py` compares the two).
"""
from __future__ import annotations

import asyncio
import logging
import re

from aiosmtpd.smtp import MISSING, SMTP, _DataState, syntax

log = logging.getLogger(__name__)
DATA_BUFFER = 1 << 16   # the stream's limit while DATA is read (it holds up to twice that)
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@{_ATOM}(?:\.{_ATOM})*)>")


class LeanData(SMTP):
    """aiosmtpd's SMTP server with `smtp_DATA` gathering the message in one buffer, and
    plain addresses read without the header parser."""

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """(address, the rest of the command), as aiosmtpd's own gives them."""
        plain = _PLAIN_ADDRESS.match(arg)
        rest = arg[plain.end():] if plain is not None else ""
        if plain is None or rest[:1] == "(":  # a comment after it: aiosmtpd's parser
            return super()._getaddr(arg)
        if rest[:1] in (" ", "\t"):
            rest = rest.lstrip()  # the parser's folding white space, as it strips it
            if rest[:1] == "(":
                return super()._getaddr(arg)
        address = plain.group(1)
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, rest

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's name
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        content, state = await self._gather()
        if state is None:
            return
        if state != _DataState.NOMINAL:
            if state == _DataState.TOO_LONG:
                await self.push("500 Line too long (see RFC5321 4.5.3.1.6)")
            else:
                await self.push("552 Error: Too much mail data")
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        # The handler takes the bytes and lets the buffer go (receive/smtp.py, _raw).
        self.envelope.content = self.envelope.original_content = content  # type: ignore[assignment]
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)

    async def _gather(self) -> tuple[bytearray, _DataState | None]:
        """The message up to the lone dot, dot-stuffing undone, and the state it ended in
        (None: the connection is gone).

        Read in chunks that end at the next ".\\r\\n" (a line ending in a dot, or the end),
        not line by line: each line read on its own cost a coroutine step, and with the
        stream's limit at the longest command line the transport was paused every 2 KB. While
        DATA lasts the stream's limit is `DATA_BUFFER` (asyncio pauses the transport past
        twice that: 128 KB a session at most); the lines of each chunk are checked against
        `line_length_limit` and unstuffed together."""
        reader = self._reader
        reader._limit = max(reader._limit, DATA_BUFFER)  # type: ignore[attr-defined]  # asyncio's own
        try:
            return await self._chunks(reader)
        finally:
            reader._limit = self.line_length_limit  # type: ignore[attr-defined]

    async def _chunks(self, reader: asyncio.StreamReader) -> tuple[bytearray, _DataState | None]:
        content = bytearray()
        size, limit, longest = 0, self.data_size_limit, self.line_length_limit - 2  # a line without CRLF
        state = _DataState.NOMINAL
        carry = b""         # a line begun: what follows the last CRLF read
        before = b"\r\n"    # the last two bytes read: DATA begins at a line's start
        while self.transport is not None:  # pragma: nobranch
            try:
                chunk = await reader.readuntil(b".\r\n")
            except asyncio.CancelledError:
                log.info("Connection lost during DATA")
                self._writer.close()
                raise
            except asyncio.LimitOverrunError as e:  # no ".\r\n" within the stream's limit
                chunk = await reader.read(e.consumed)
            seen = before + chunk[-5:]
            end = seen.endswith(b"\r\n.\r\n")
            before = seen[-2:]
            if end:
                chunk = chunk[:-3]
            size += len(chunk)
            if state == _DataState.NOMINAL and limit and size > limit:
                state = _DataState.TOO_MUCH
            if state == _DataState.NOMINAL:
                text = carry + chunk
                last = text.rfind(b"\r\n")
                lines, carry = (text[:last + 2], text[last + 2:]) if last >= 0 else (b"", text)
                if len(carry) > longest + 1 or (lines and max(map(len, lines.split(b"\r\n"))) > longest):
                    state = _DataState.TOO_LONG
                else:
                    content += lines[1:].replace(b"\r\n.", b"\r\n") if lines.startswith(b".") \
                        else lines.replace(b"\r\n.", b"\r\n")
            if state != _DataState.NOMINAL:
                content.clear()
                carry = b""
            if end:
                return content, state
        return content, None
