"""DATA for the SMTP and LMTP door, the message gathered in one buffer.

aiosmtpd 1.4 keeps each line of a message as an object of its own (a 78-byte line of a
base64 file costs about 150 bytes), then joins them: a 25 MB message cost the door about
100 MB. `LeanData.smtp_DATA` is aiosmtpd's own, step for step (the same answers, limits
and states, dot-stuffing undone the same way), but appends each line to one `bytearray`,
which the handler receives as the message (`envelope.original_content`).
"""
from __future__ import annotations

import asyncio
import logging

from aiosmtpd.smtp import MISSING, SMTP, _DataState, syntax

log = logging.getLogger(__name__)


class LeanData(SMTP):
    """aiosmtpd's SMTP server with `smtp_DATA` gathering the message in one buffer."""

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
        (None: the connection is gone)."""
        content = bytearray()
        size, limit = 0, self.data_size_limit
        fragments: list[bytes] = []
        state = _DataState.NOMINAL
        while self.transport is not None:  # pragma: nobranch
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.CancelledError:
                log.info("Connection lost during DATA")
                self._writer.close()
                raise
            except asyncio.LimitOverrunError as e:  # a line longer than the stream's limit
                state = _DataState.TOO_LONG if state == _DataState.NOMINAL else state
                content.clear()
                line = await self._reader.read(e.consumed)
            if not fragments and line == b".\r\n":
                return content, state
            size += len(line)
            if state == _DataState.NOMINAL and limit and size > limit:
                state = _DataState.TOO_MUCH
                content.clear()
            fragments.append(line)
            if line.endswith(b"\r\n"):
                if state == _DataState.NOMINAL:
                    whole = b"".join(fragments) if len(fragments) > 1 else line
                    if len(whole) > self.line_length_limit:
                        state = _DataState.TOO_LONG
                        content.clear()
                    else:
                        content += memoryview(whole)[1:] if whole.startswith(b".") else whole
                fragments.clear()
        return content, None
