"""The IMAP door: fetch support mail from a mailbox, store it, then flag and move it.

A message is taken by UID and stored through `intake.store` under its source key
`imap:<host>:<user>:<folder>:<uidvalidity>:<uid>`; only once that has committed is it
flagged \\Seen and moved to `processed_folder`. Everything else follows from that order:
a pass cut short leaves the message untouched, and the next pass finds its key already
stored and only files it; two gateways reading one mailbox store it once (the key is
unique) and move it once (a claim on its row). The door does nothing else: `on_stored(id)`
wakes whoever runs the pipeline.

One idea per module:
  connection.py  log in (TLS, STARTTLS), notice a hang-up, cut and close the connection
  door.py        ImapDoor: run_once, or the thread (pass, wait, backoff after an error)
  waiting.py     the wait between passes: IDLE, or poll_seconds
  passes.py      one pass: what to take, storing it, messages too big to take
  keys.py        source keys, and which are stored already
  filing.py      flag \\Seen and move after the commit, claimed so it happens once
  state.py       the status kept for `gateway status` (and the door's memory)
  errors.py      failures in words for the status and the log
"""
from __future__ import annotations

from gateway.receive.imap.connection import connect
from gateway.receive.imap.door import ImapDoor
from gateway.receive.imap.errors import StoreFailed
from gateway.receive.imap.state import Counts, DoorStatus, status

__all__ = ["Counts", "DoorStatus", "ImapDoor", "StoreFailed", "connect", "status"]
