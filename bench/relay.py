"""The relay stand-in: an aiosmtpd server the gateway's outbound mail goes to.

    python -m bench.relay PORT LOG

Accepts every message and appends one JSON line per message to LOG, flushed at once:
`t` (time.monotonic() when the end of DATA arrived: one clock for every process of the
machine on Linux), `rcpt`, `in_reply_to`, `subject`, `size`. Runs until SIGTERM. It reads
the header block only, so it costs the machine little while the gateway is measured.
"""
from __future__ import annotations

import json
import signal
import sys
import threading
import time
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import IO, Any

from aiosmtpd.controller import Controller


class Recorder:
    """aiosmtpd handler: note each message, answer 250."""

    def __init__(self, log: IO[str]) -> None:
        self.log = log
        self.parser = BytesHeaderParser(policy=compat32)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        t = time.monotonic()
        raw = envelope.original_content or b""
        end = raw.find(b"\r\n\r\n")
        headers = self.parser.parsebytes(raw[:end if end >= 0 else len(raw)])
        self.log.write(json.dumps({
            "t": t, "rcpt": [r.lower() for r in envelope.rcpt_tos],
            "in_reply_to": (headers.get("In-Reply-To") or "").strip(),
            "subject": str(headers.get("Subject") or ""), "size": len(raw)}) + "\n")
        self.log.flush()
        return "250 2.0.0 Ok"


def main() -> int:
    port, path = int(sys.argv[1]), sys.argv[2]
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with open(path, "a", encoding="utf-8") as log:
        controller = Controller(Recorder(log), hostname="127.0.0.1", port=port, decode_data=False,
                                data_size_limit=64 * 1024 * 1024)
        controller.start()
        try:
            while not done.wait(0.5):
                pass
        finally:
            controller.stop()
    return 0


def read(path: str) -> list[dict[str, Any]]:
    """What the relay received so far (a line being written is left for later)."""
    try:
        with open(path, encoding="utf-8") as log:
            lines = log.read().split("\n")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines[:-1] if line]


if __name__ == "__main__":
    sys.exit(main())
