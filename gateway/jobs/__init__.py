"""Scheduled work as plain functions: reminders, auto-close, escalation, the
sales-administration digest and licence expiry (PRODUCT.md, "Scheduled work").

Each job is a pair of functions of (settings, session, now): `find` says what is due,
reading only; `act` does one thing in the caller's transaction and never commits. The
runner (`runner.py`) gives each thing its own short transaction, so a run that dies
half-way leaves what it finished done and the rest to the next run; a unique row per
reminder, escalation, digest and expiry makes a second gateway's attempt fail instead of
sending twice. Only `gateway serve` (scheduler.py) and `gateway jobs run` read the clock.
"""
from __future__ import annotations

# In the order `gateway jobs run all` runs them.
NAMES = ("licence-expiry", "escalation", "reminders", "autoclose", "adv-digest")
